"""What the DAG needs from outside itself, gathered by a runner before the wiring.

``dag.create_pipeline`` only wires: the runner looks up the schema file (the
repository's ``schemas/`` locally, the copy inside the pipeline image on a
cluster), the class names of TFRecord inputs (their ``labels.txt``), whether the
data has a test split, and which execution properties become runtime
parameters, and hands them over as one ``DagInputs``.
"""

from __future__ import annotations

import dataclasses
import posixpath
from pathlib import Path
from typing import Any

from visiontfx.pipeline.config import Config, ConfigError

SCHEMA_DIR = str(Path(__file__).resolve().parent.parent / "schemas")
FASHION_MNIST_SCHEMA = "fashion_mnist.pbtxt"
IMAGE_SCHEMA = "image_examples.pbtxt"


@dataclasses.dataclass(frozen=True)
class DagInputs:
    """Everything create_pipeline would otherwise read from disk or patch in afterwards."""

    schema_file: str
    has_test_split: bool
    class_names: tuple[str, ...] = ()  # TFRecord inputs only; ImageExampleGen writes labels.txt
    # Non-empty: the Trainer's custom_config / the Evaluator's eval_config become runtime
    # parameters of that name, defaulting to the config's values (Kubeflow; see kubeflow.py).
    trainer_config_parameter: str = ""
    eval_config_parameter: str = ""


def schema_file(config: Config, schema_dir: str = SCHEMA_DIR) -> str:
    name = FASHION_MNIST_SCHEMA if config.data.source == "fashion_mnist" else IMAGE_SCHEMA
    return posixpath.join(schema_dir, name)


def has_test_split(config: Config, data_root: Any) -> bool:
    """Whether the data brings a test split (a runtime data root cannot be looked at: no)."""
    data = config.data
    if data.source in ("fashion_mnist", "tfds") and data.use_source_test_split:
        return True
    if data.source == "tfrecord":
        import tensorflow as tf

        return isinstance(data_root, str) and tf.io.gfile.isdir(posixpath.join(data_root, "test"))
    return data.splits.test > 0


def tfrecord_class_names(config: Config, data_root: Any) -> list[str]:
    """The vocabulary the Trainer is given: for TFRecord inputs ``data.class_names``, else
    <data_root>/labels.txt; empty for the other sources (ImageExampleGen writes labels.txt)."""
    if config.data.source != "tfrecord":
        return []
    if config.data.class_names:
        return list(config.data.class_names)
    if not isinstance(data_root, str):
        raise ConfigError(
            "TFRecord inputs with a runtime data root (Kubeflow): labels.txt cannot be read when the "
            "pipeline is compiled. Set data.class_names (label i = name i) in the config."
        )
    return read_tfrecord_class_names(data_root)


def read_tfrecord_class_names(data_root: str) -> list[str]:
    """ImportExampleGen inputs bring their vocabulary as <data_root>/labels.txt."""
    import tensorflow as tf

    path = posixpath.join(data_root, "labels.txt")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} is missing: TFRecord inputs need labels.txt (line i = label i).")
    with tf.io.gfile.GFile(path) as handle:
        return [line.strip() for line in handle.read().splitlines() if line.strip()]


def gather_inputs(config: Config, data_root: Any, schema_dir: str = SCHEMA_DIR) -> DagInputs:
    """The DAG's inputs for a run reading ``data_root`` (a path, or a runtime parameter)."""
    return DagInputs(
        schema_file=schema_file(config, schema_dir),
        has_test_split=has_test_split(config, data_root),
        class_names=tuple(tfrecord_class_names(config, data_root)),
    )
