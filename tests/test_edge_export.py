"""TFLite export (issue 14): the pushed version's float16 and int8 models, checked independently.

The tiny DAG (conftest ``tiny_runs``) runs EdgeExport and pushes its folder into
the version. Here every test image goes through the served SavedModel and through
each TFLite model in the interpreter: the accuracies must equal what EdgeExport
recorded, its verdict must follow the parity goals, and each TFLite model must
agree with the SavedModel on nearly every image.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from visiontfx.components.edge_export.parity import verdict
from visiontfx.contracts import edge

GOALS = {edge.FLOAT16: 0.3, edge.INT8: 1.5}  # accuracy points, from the issue
# Top-1 agreement with the SavedModel on the tiny model's 200 test images.
MIN_AGREEMENT = {edge.FLOAT16: 0.97, edge.INT8: 0.85}


def _version(tiny_runs: dict[str, Any]) -> Path:
    return Path(tiny_runs["first"]["pushed_to"])


def _test_split(tiny_runs: dict[str, Any]) -> list[tuple[bytes, int]]:
    from visiontfx.pipeline import metadata

    first = tiny_runs["first"]
    run = metadata.load_run(first["metadata_path"], tiny_runs["config"].pipeline.name, first["run_id"])
    files = tf.io.gfile.glob(str(Path(run.uri("ImageExampleGen", "examples")) / "Split-test" / "*"))
    examples = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, "GZIP")]
    return [
        (
            e.features.feature["image/encoded"].bytes_list.value[0],
            e.features.feature["label"].int64_list.value[0],
        )
        for e in examples
    ]


@pytest.mark.integration
def test_tflite_models_load_and_meet_the_parity_goals(tiny_runs: dict[str, Any]) -> None:
    from visiontfx.components.edge_export.tflite_model import TFLiteClassifier
    from visiontfx.components.transform.preprocessing import decode_and_resize

    folder = _version(tiny_runs) / edge.PUSHED_EDGE_DIR
    assert sorted(p.name for p in folder.iterdir()) == sorted(edge.EDGE_FILES)
    parity = json.loads((folder / edge.PARITY_FILE).read_text())
    labels = (folder / edge.LABELS_FILE).read_text().splitlines()
    assert labels == parity["class_names"] and len(labels) == 10

    served = tf.saved_model.load(str(_version(tiny_runs))).signatures["serving_default"]
    models = {variant: TFLiteClassifier(str(folder / edge.MODEL_FILES[variant])) for variant in edge.VARIANTS}
    assert models[edge.FLOAT16].input_dtype == np.float32 and models[edge.INT8].input_dtype == np.uint8
    examples = _test_split(tiny_runs)
    truth = np.array([label for _, label in examples])
    reference = np.concatenate(
        [
            served(image_bytes=tf.constant([data for data, _ in examples[i : i + 64]]))[
                "probabilities"
            ].numpy()
            for i in range(0, len(examples), 64)
        ]
    ).argmax(axis=1)
    assert len(examples) == parity["images"] == 200
    assert parity["savedmodel_accuracy"] == pytest.approx((reference == truth).mean())
    for variant, model in models.items():
        pixels = [decode_and_resize(tf.constant(data), model.image_size).numpy() for data, _ in examples]
        predicted = np.array([model.probabilities(p).argmax() for p in pixels])
        accuracy = (predicted == truth).mean()
        recorded = parity["variants"][variant]
        assert recorded["accuracy"] == pytest.approx(accuracy)
        assert recorded["agreement_with_savedmodel"] == pytest.approx((predicted == reference).mean())
        drop = 100 * ((reference == truth).mean() - accuracy)
        print(
            f"{variant}: {accuracy:.2%} vs SavedModel {(reference == truth).mean():.2%} ({drop:+.2f} points)"
        )
        print(f"{variant}: agreement with the SavedModel {(predicted == reference).mean():.2%}")
        # One of the 200 test images is 0.5 points, more than float16's 0.3-point goal: whether
        # a barely trained tiny model meets the goals varies run to run (the demo's 2,000-image
        # parity is in docs/benchmarks.md). What must hold: the verdict follows the numbers,
        # and the TFLite model computes the same function (it agrees on nearly every image).
        assert recorded["max_drop_points"] == GOALS[variant]
        assert recorded["recommended"] is bool(drop <= GOALS[variant] + 1e-9)
        assert (predicted == reference).mean() >= MIN_AGREEMENT[variant], f"{variant} is another model"
        assert recorded["bytes"] == (folder / edge.MODEL_FILES[variant]).stat().st_size
        assert recorded["latency_ms"]["median"] > 0
    sizes = {variant: parity["variants"][variant]["bytes"] for variant in edge.VARIANTS}
    assert sizes[edge.INT8] < sizes[edge.FLOAT16] < parity["savedmodel_bytes"]


def test_the_verdict_is_the_accuracy_drop_against_the_goal() -> None:
    assert verdict(0.90, 0.898, 0.3) == (pytest.approx(0.2), True)
    assert verdict(0.90, 0.885, 1.5) == (pytest.approx(1.5), True)  # exactly at the goal passes
    assert verdict(0.90, 0.88, 1.5) == (pytest.approx(2.0), False)
    assert verdict(0.50, 0.52, 0.3) == (pytest.approx(-2.0), True)  # better than the SavedModel


@pytest.mark.integration
def test_predict_tflite_runs_each_variant_and_warns_when_not_recommended(
    tiny_runs: dict[str, Any], tmp_path: Path
) -> None:
    from visiontfx.tools import cli

    version = tmp_path / "1"
    shutil.copytree(_version(tiny_runs), version)
    image = tmp_path / "shoe.png"
    image.write_bytes(_test_split(tiny_runs)[0][0])
    labels = (version / edge.PUSHED_LABELS).read_text().splitlines()

    def predict(*flags: str) -> tuple[int, dict[str, Any], str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["predict", str(image), "--model-dir", str(version), "--json", *flags])
        return code, json.loads(out.getvalue()) if out.getvalue() else {}, err.getvalue()

    # The verdicts come from the tiny model's measured parity, which can go either
    # way for int8; the warning is what is under test, so set them both ways here.
    parity_file = version / edge.PUSHED_EDGE_DIR / edge.PARITY_FILE
    parity = json.loads(parity_file.read_text())
    for result in parity["variants"].values():
        result["recommended"] = True
    parity_file.write_text(json.dumps(parity))
    for variant in edge.VARIANTS:
        code, answer, err = predict("--tflite", "--tflite-variant", variant)
        assert code == 0 and "NOT recommended" not in err
        assert answer["model"].endswith(edge.MODEL_FILES[variant])
        top = answer["predictions"][0]["top_k"]
        assert len(top) == 3 and {t["class"] for t in top} <= set(labels)
        assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)

    parity["variants"][edge.INT8]["recommended"] = False
    parity_file.write_text(json.dumps(parity))
    code, answer, err = predict("--tflite", "--tflite-variant", edge.INT8)
    assert code == 0 and "is NOT recommended" in err and answer["predictions"]
