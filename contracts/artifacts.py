"""File names inside artifacts that more than one layer reads (no TensorFlow import)."""

from __future__ import annotations

# In the Trainer's ModelRun artifact: the epoch history of every phase (the report's
# curves) and the reference accuracies (random guess, majority class).
HISTORY_FILE = "training_history.json"
BASELINES_FILE = "baselines.json"
