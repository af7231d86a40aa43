"""EdgeExport executor: convert, measure parity on the test split, write the edge folder.

``export_edge`` does the work without TFX artifacts (tests and tools call it directly).
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import json_utils, path_utils

from visiontfx.components.edge_export import convert, parity
from visiontfx.components.edge_export.settings import EdgeSettings
from visiontfx.contracts import edge

MODEL_KEY = "model"
MODEL_RUN_KEY = "model_run"
EXAMPLES_KEY = "examples"
EDGE_MODEL_KEY = edge.EDGE_MODEL_OUTPUT
CUSTOM_CONFIG_KEY = "custom_config"


def export_edge(
    saved_model_dir: str,
    output_dir: str,
    settings: EdgeSettings,
    train_files: Sequence[str],
    test_files: Sequence[str],
    class_names: Sequence[str],
    split: str = "test",
) -> dict[str, Any]:
    """Writes both .tflite files, labels.txt and edge_parity.json into ``output_dir``; returns the parity."""
    if not class_names:
        raise ValueError("EdgeExport needs the class names (labels.txt is written beside the models).")
    tf.io.gfile.makedirs(output_dir)
    models = convert.convert(
        saved_model_dir,
        settings,
        lambda: parity.representative_pixels(train_files, settings.size, settings.representative_images),
    )
    paths = {}
    for variant, content in models.items():
        paths[variant] = os.path.join(output_dir, edge.MODEL_FILES[variant])
        with tf.io.gfile.GFile(paths[variant], "wb") as handle:
            handle.write(content)
    with tf.io.gfile.GFile(os.path.join(output_dir, edge.LABELS_FILE), "w") as handle:
        handle.write("".join(f"{name}\n" for name in class_names))
    report = parity.measure(saved_model_dir, paths, test_files, settings, class_names, split)
    with tf.io.gfile.GFile(os.path.join(output_dir, edge.PARITY_FILE), "w") as handle:
        handle.write(json.dumps(report, indent=2))
    for variant, result in report["variants"].items():
        logging.info(
            "TFLite %s: %.2f%% (SavedModel %.2f%%, drop %.2f points, limit %.2f) %s, %.1f kB, %.2f ms%s",
            variant,
            100 * result["accuracy"],
            100 * report["savedmodel_accuracy"],
            result["drop_points"],
            result["max_drop_points"],
            split,
            result["bytes"] / 1024,
            result["latency_ms"]["median"],
            "" if result["recommended"] else " — NOT RECOMMENDED (parity goal missed)",
        )
    return report


def split_files(examples: types.Artifact, split: str) -> list[str]:
    return sorted(tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*")))


def trained_class_names(model_run_uri: str) -> list[str]:
    """The vocabulary the Trainer recorded (its output index order)."""
    from visiontfx.contracts.artifacts import HISTORY_FILE

    path = os.path.join(model_run_uri, HISTORY_FILE)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as handle:
        return list(json.load(handle).get("class_names") or [])


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        settings = EdgeSettings.from_custom_config(
            json_utils.loads(exec_properties.get(CUSTOM_CONFIG_KEY) or "null")
        )
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        model_run = input_dict.get(MODEL_RUN_KEY) or []
        output = artifact_utils.get_single_instance(output_dict[EDGE_MODEL_KEY])
        class_names = list(settings.class_names) or (
            trained_class_names(model_run[0].uri) if model_run else []
        )
        splits = artifact_utils.decode_split_names(examples.split_names)
        split = "test" if "test" in splits else "eval"
        report = export_edge(
            path_utils.serving_model_path(model.uri),
            output.uri,
            settings,
            split_files(examples, "train"),
            split_files(examples, split),
            class_names,
            split,
        )
        for variant, result in report["variants"].items():
            output.set_float_custom_property(f"{variant}_accuracy", result["accuracy"])
            output.set_int_custom_property(f"{variant}_recommended", int(result["recommended"]))
        output.set_float_custom_property("savedmodel_accuracy", report["savedmodel_accuracy"])
