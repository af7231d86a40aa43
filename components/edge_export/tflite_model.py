"""Running an exported TFLite classifier with the interpreter TensorFlow ships.

Shared by the parity check (EdgeExport), ``visiontfx predict --tflite`` and the
benchmarks. The model contract is in ``visiontfx.contracts.edge``: decoded RGB
pixels in [0, 255] at the model's size in, class probabilities out.
"""

from __future__ import annotations

import os
import time

import numpy as np
import tensorflow as tf

from visiontfx.contracts import edge


class TFLiteClassifier:
    """One interpreter; ``probabilities(pixels)`` quantizes and dequantizes as the file says."""

    def __init__(self, model_path: str, num_threads: int | None = None) -> None:
        with tf.io.gfile.GFile(model_path, "rb") as handle:
            self.content = handle.read()
        self.path = model_path
        self.interpreter = tf.lite.Interpreter(model_content=self.content, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        shape = [int(d) for d in self._input["shape"]]
        if len(shape) != 4 or shape[0] != 1 or shape[1] != shape[2] or shape[3] != 3:
            raise ValueError(f"{model_path}: expected an input of shape [1, S, S, 3], got {shape}")
        self.image_size = shape[1]
        self.input_dtype = np.dtype(self._input["dtype"])

    @property
    def size_bytes(self) -> int:
        return len(self.content)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """[S, S, 3] float pixels in [0, 255] → [C] float probabilities."""
        batch = np.asarray(pixels, dtype=np.float32)[None]
        self.interpreter.set_tensor(self._input["index"], _quantize(batch, self._input, self.input_dtype))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self._output["index"])[0], self._output)

    def classes(self, images: np.ndarray) -> np.ndarray:
        """[N, S, S, 3] float pixels → [N] predicted class indices (one invoke per image)."""
        return np.array([self.probabilities(image).argmax() for image in images], dtype=np.int64)

    def latency_ms(self, pixels: np.ndarray, runs: int, warmup: int = 3) -> dict[str, float]:
        """Single-image invoke time (after ``warmup`` runs): median and 90th percentile, in ms."""
        for _ in range(warmup):
            self.probabilities(pixels)
        times = []
        for _ in range(max(1, runs)):
            started = time.perf_counter()
            self.probabilities(pixels)
            times.append((time.perf_counter() - started) * 1000.0)
        return {"median": float(np.median(times)), "p90": float(np.percentile(times, 90)), "runs": len(times)}


def _quantize(values: np.ndarray, details: dict, dtype: np.dtype) -> np.ndarray:
    if not np.issubdtype(dtype, np.integer):
        return values.astype(dtype)
    scale, zero_point = details["quantization"]
    info = np.iinfo(dtype)
    quantized = np.round(values / (scale or 1.0) + zero_point)
    return np.clip(quantized, info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, details: dict) -> np.ndarray:
    if not np.issubdtype(values.dtype, np.integer):
        return values.astype(np.float32)
    scale, zero_point = details["quantization"]
    return (values.astype(np.float32) - zero_point) * scale


def read_labels(folder: str) -> list[str]:
    """The class names beside the TFLite files (line i = output index i)."""
    path = os.path.join(folder, edge.LABELS_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} is missing: the TFLite models need their labels.txt beside them.")
    with tf.io.gfile.GFile(path) as handle:
        return [line for line in handle.read().splitlines() if line]
