"""Names shared by everything that reads ImageExampleGen's output (no TFX import, cheap)."""

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
