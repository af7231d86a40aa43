"""The data contract: feature names of the stored Examples, of Transform's output, and the
files beside them (no TensorFlow import)."""

# Feature names of the stored tf.train.Examples (the schemas in schemas/ match).
IMAGE_KEY = "image/encoded"
FORMAT_KEY = "image/format"
HEIGHT_KEY = "image/height"
WIDTH_KEY = "image/width"
LABEL_KEY = "label"
LABEL_NAME_KEY = "label_name"
FILENAME_KEY = "filename"

# Files beside the split folders in the Examples artifact.
LABELS_FILE = "labels.txt"
REPORT_FILE = "ingestion_report.json"

# Transform's output features (what the Trainer, signatures and report read).
IMAGE_FEATURE = "image"
LABEL_FEATURE = "label"
