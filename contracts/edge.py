"""Names shared by the edge export, the Pusher, the model card and the tools (no TensorFlow).

The EdgeExport component writes ``EDGE_FILES`` into its artifact; the Pusher
copies that folder into every pushed version as ``assets.extra/edge/`` and writes
the model card beside it. ``visiontfx predict --tflite`` and the report read the
same names.
"""

from __future__ import annotations

# What the TFLite models take and give (the contract a phone app codes against):
# one decoded RGB image resized to the model's square size the way the Transform
# graph resizes (bilinear, antialiased), as [1, S, S, 3] pixels in [0, 255]:
# float32 for float16, uint8 for int8. The backbone's scaling is inside the
# model. Output: [1, C] class probabilities (uint8-quantized for int8).
FLOAT16 = "float16"
INT8 = "int8"
VARIANTS = (FLOAT16, INT8)
MODEL_FILES = {FLOAT16: "model_float16.tflite", INT8: "model_int8.tflite"}
LABELS_FILE = "labels.txt"  # line i = class i, as the model's output index
PARITY_FILE = "edge_parity.json"  # accuracies, sizes, latencies, recommended (see EdgeReport)
EDGE_FILES = (*MODEL_FILES.values(), LABELS_FILE, PARITY_FILE)

# Inside a pushed version (TF Serving ignores assets.extra except its warmup file).
PUSHED_EDGE_DIR = "assets.extra/edge"
MODEL_CARD_MD = "assets.extra/model_card.md"
MODEL_CARD_HTML = "assets.extra/model_card.html"
# Custom properties of the Pusher's PushedModel artifact in ML Metadata.
MODEL_CARD_PROPERTY = "model_card"
EDGE_PROPERTY = "edge_models"

# The DAG node and its output key (the report reads the parity from ML Metadata).
EDGE_EXPORT_ID = "EdgeExport"
EDGE_MODEL_OUTPUT = "edge_model"

# The Model artifact's folder that holds the SavedModel (TFX's convention).
SERVING_MODEL_DIR = "Format-Serving"
# The class names of every pushed version, line i = output index i (local tools read it).
PUSHED_LABELS = "assets.extra/labels.txt"
