"""Finding the model a local tool runs: the newest pushed version, or a folder the user names."""

from __future__ import annotations

import os

from visiontfx.contracts import edge


class ModelNotFoundError(FileNotFoundError):
    """No SavedModel where the tool looked; the message says where and what to pass."""


def integer_versions(base: str) -> list[int]:
    if not os.path.isdir(base):
        return []
    return sorted(int(name) for name in os.listdir(base) if name.isdigit())


def resolve_saved_model(model_dir: str | None, serving_dir: str, model_name: str) -> str:
    """A SavedModel folder from ``model_dir`` (a version, a model's base folder, or a Trainer
    Model artifact), else the newest version under ``<serving_dir>/<model_name>``."""
    candidates = [model_dir] if model_dir else [os.path.join(serving_dir, model_name)]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "saved_model.pb")):
            return folder
        serving = os.path.join(folder, edge.SERVING_MODEL_DIR)
        if os.path.isfile(os.path.join(serving, "saved_model.pb")):
            return serving
        versions = integer_versions(folder)
        if versions:
            return os.path.join(folder, str(versions[-1]))
    where = model_dir or os.path.join(serving_dir, model_name)
    raise ModelNotFoundError(
        f"No SavedModel in {where}: pass --model-dir (a pushed version, e.g. serving_model/<name>/<version>) "
        "or run the pipeline first so the Pusher writes one (serving.serving_dir, serving.model_name)."
    )


def resolve_tflite(tflite_file: str | None, saved_model_dir: str | None, variant: str) -> str:
    """The .tflite to run: ``tflite_file``, else the pushed version's ``assets.extra/edge/`` file."""
    if tflite_file:
        if not os.path.isfile(tflite_file):
            raise ModelNotFoundError(f"--tflite-file {tflite_file}: no such file")
        return tflite_file
    path = os.path.join(saved_model_dir or "", edge.PUSHED_EDGE_DIR, edge.MODEL_FILES[variant])
    if not os.path.isfile(path):
        raise ModelNotFoundError(
            f"{path} is missing: this version has no TFLite models (edge.enabled was off?); "
            "pass --tflite-file model.tflite (with labels.txt beside it)."
        )
    return path
