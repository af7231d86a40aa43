"""The bottom layer: names, keys, ids and failure kinds shared by every other layer (no TensorFlow)."""
