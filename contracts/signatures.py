"""The served model's interface: signature, input and output names (no TensorFlow import).

The Trainer exports these signatures, the Evaluator and BulkInferrer call them,
and the serving tools and clients address them.
"""

from __future__ import annotations

import os

IMAGE_INPUT = "image_bytes"
EXAMPLES_INPUT = "inputs"
DEFAULT_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serving_examples"
CLASSIFY_SIGNATURE = "classification"
OUTPUT_KEYS = ("probabilities", "classes", "scores")
CLASSIFY_OUTPUT_KEYS = ("classes", "scores")
CLASSIFY_METHOD = "tensorflow/serving/classify"
WARMUP_IMAGES_DIR = os.path.join("assets.extra", "warmup_images")
