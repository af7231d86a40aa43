"""DAG assembly for every source, and a full run on existing TFRecord shards (ImportExampleGen)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_config

from visiontfx.contracts.ids import DRIFT_BASELINE_RESOLVER_ID
from visiontfx.pipeline import metadata
from visiontfx.pipeline.config import Config, from_dict
from visiontfx.pipeline.dag import RunLocations, create_pipeline
from visiontfx.pipeline.dag_inputs import DagInputs, gather_inputs, schema_file
from visiontfx.pipeline.local_runner import beam_pipeline_args

EDGES = {
    ("StatisticsGen", "ExampleValidator"),
    ("ImportSchemaGen", "ExampleValidator"),
    ("ImportSchemaGen", "Transform"),
    ("Transform", "Trainer"),
    ("Trainer", "Evaluator"),
    ("latest_blessed_model_resolver", "Evaluator"),
    ("Evaluator", "Pusher"),
    ("Trainer", "Pusher"),
    ("Trainer", "latest_blessed_model_resolver"),  # the candidate is excluded from the baselines
    ("ImportSchemaGen", "Trainer"),
    ("ImportSchemaGen", "Evaluator"),
    # Drift: this run's statistics against those of the data the last model trained on.
    ("StatisticsGen", "previous_trained_statistics_resolver"),  # the candidate is excluded
    ("StatisticsGen", "DistributionValidator"),
    ("previous_trained_statistics_resolver", "DistributionValidator"),
    ("Trainer", "EdgeExport"),  # TFLite from the trained model …
    ("EdgeExport", "Pusher"),  # … copied into the pushed version
}


def _pipeline(config: Config, locations: RunLocations) -> Any:
    return create_pipeline(config, locations, gather_inputs(config, locations.data_root))


def _edges(pipeline: Any) -> set[tuple[str, str]]:
    return {(up.id, node.id) for node in pipeline.components for up in node.upstream_nodes}


@pytest.mark.parametrize(
    ("source", "example_gen"),
    [
        ("fashion_mnist", "ImageExampleGen"),
        ("folder", "ImageExampleGen"),
        ("tfds", "ImageExampleGen"),
    ],
)
def test_the_dag_reads_like_the_design(tmp_path: Path, source: str, example_gen: str) -> None:
    config = from_dict({"data": {"source": source, "path": str(tmp_path), "tfds_name": "x"}})
    pipeline = _pipeline(
        config, RunLocations(str(tmp_path / "root"), str(tmp_path / "serving"), str(tmp_path / "m.sqlite"))
    )
    ids = [c.id for c in pipeline.components]
    assert ids[0] == example_gen and ids[-1] == "Pusher"
    readers = ("StatisticsGen", "Transform", "Trainer", "Evaluator", "EdgeExport", "Pusher")
    expected = EDGES | {(example_gen, n) for n in readers}
    assert _edges(pipeline) == expected


def test_fashion_mnist_gets_its_curated_schema() -> None:
    assert schema_file(from_dict({})).endswith("schemas/fashion_mnist.pbtxt")
    assert schema_file(from_dict({"data": {"source": "folder", "path": "x"}})).endswith(
        "image_examples.pbtxt"
    )


def test_create_pipeline_wires_what_the_runner_gathered(tmp_path: Path) -> None:
    """No file is read while wiring: a TFRecord root that does not exist, a schema path that
    exists only inside an image, and the Kubeflow runtime parameters all come from DagInputs."""
    from tfx.orchestration import data_types

    config = from_dict({"data": {"source": "tfrecord", "path": str(tmp_path / "absent")}})
    inputs = DagInputs(
        schema_file="/image/schemas/image_examples.pbtxt",
        has_test_split=True,
        class_names=("cat", "dog"),
        trainer_config_parameter="trainer_json",
        eval_config_parameter="eval_json",
    )
    locations = RunLocations(str(tmp_path / "root"), str(tmp_path / "serving"), str(tmp_path / "m.sqlite"))
    nodes = {c.id: c for c in create_pipeline(config, locations, inputs).components}
    assert nodes["ImportSchemaGen"].exec_properties["schema_file"] == inputs.schema_file
    assert nodes["Evaluator"].exec_properties["example_splits"] == '["test"]'
    trainer_config = nodes["Trainer"].exec_properties["custom_config"]
    eval_config = nodes["Evaluator"].exec_properties["eval_config"]
    assert isinstance(trainer_config, data_types.RuntimeParameter) and trainer_config.name == "trainer_json"
    assert json.loads(trainer_config.default)["class_names"] == ["cat", "dog"]
    assert isinstance(eval_config, data_types.RuntimeParameter) and eval_config.name == "eval_json"
    assert "lower_bound" in eval_config.default
    assert not (tmp_path / "absent").exists()
    # Without parameter names the same values are plain execution properties.
    plain = dataclasses.replace(inputs, trainer_config_parameter="", eval_config_parameter="")
    nodes = {c.id: c for c in create_pipeline(config, locations, plain).components}
    assert json.loads(nodes["Trainer"].exec_properties["custom_config"]) == json.loads(trainer_config.default)


def test_tfrecord_inputs_without_labels_fail_while_gathering_not_wiring(tmp_path: Path) -> None:
    config = from_dict({"data": {"source": "tfrecord", "path": str(tmp_path)}})
    with pytest.raises(FileNotFoundError, match=r"labels\.txt"):
        gather_inputs(config, str(tmp_path))
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    (tmp_path / "test").mkdir()
    assert gather_inputs(config, str(tmp_path)).class_names == ("cat", "dog")
    assert gather_inputs(config, str(tmp_path)).has_test_split


def test_beam_args_only_when_not_the_default() -> None:
    assert beam_pipeline_args(from_dict({})) == []
    args = beam_pipeline_args(
        from_dict({"pipeline": {"direct_running_mode": "multi_processing", "direct_num_workers": 2}})
    )
    assert args == ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@pytest.mark.integration
def test_existing_tfrecords_run_through_import_example_gen(tiny_runs: dict[str, Any], tmp_path: Path) -> None:
    first = tiny_runs["first"]
    run = metadata.load_run(first["metadata_path"], tiny_runs["config"].pipeline.name, first["run_id"])
    examples = Path(run.uri("ImageExampleGen", "examples"))
    data = tmp_path / "tfrecords"
    for split in ("train", "eval", "test"):
        shutil.copytree(examples / f"Split-{split}", data / split)
    shutil.copy(examples / "labels.txt", data / "labels.txt")

    from visiontfx.pipeline.local_runner import run_pipeline

    config = tiny_config(
        tmp_path / "run",
        "data.source=tfrecord",
        f"data.path={data}",
        "pipeline.name=tfrecords",
        f"inference.path={data / 'test'}",  # BulkInferrer labels these with the blessed model
    )
    summary = run_pipeline(config)
    assert "ImportExampleGen" in summary["components"] and "ImageExampleGen" not in summary["components"]
    assert set(summary["components"].values()) == {"COMPLETE"}
    assert summary["blessed"] and summary["pushed"]
    assert summary["evaluated_examples"] == 200  # the test split given as input

    # The optional BulkInferrer step: one PredictionLog per record, from the serving_examples signature.
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    bulk = metadata.load_run(summary["metadata_path"], "tfrecords", summary["run_id"])
    logs = tf.io.gfile.glob(str(Path(bulk.uri("BulkInferrer", "inference_result")) / "*.gz"))
    records = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(logs, "GZIP")
    ]
    assert len(records) == 200
    outputs = records[0].predict_log.response.outputs
    assert {"probabilities", "classes", "scores"} <= set(outputs)
    labels = (data / "labels.txt").read_text().splitlines()
    assert outputs["classes"].string_val[0].decode() in labels
    # TFLite from ImportExampleGen inputs too (class names from the Trainer's record).
    edge_folder = Path(summary["pushed_to"]) / "assets.extra" / "edge"
    assert (edge_folder / "labels.txt").read_text().splitlines() == labels


def test_extra_beam_args_are_split_like_a_shell() -> None:
    config = from_dict({"pipeline": {"beam_args": "--runner=DataflowRunner  --labels='a=b c'"}})
    assert beam_pipeline_args(config) == ["--runner=DataflowRunner", "--labels=a=b c"]


def test_tuning_adds_a_tuner_feeding_the_trainer(tmp_path: Path) -> None:
    config = from_dict({"training": {"tune": True, "tune_trials": 2}})
    pipeline = _pipeline(
        config, RunLocations(str(tmp_path / "root"), str(tmp_path / "serving"), str(tmp_path / "m.sqlite"))
    )
    edges = _edges(pipeline)
    assert ("Tuner", "Trainer") in edges and ("Transform", "Tuner") in edges
    trainer = next(c for c in pipeline.components if c.id == "Trainer")
    assert "hyperparameters" in trainer.inputs
    untuned = _pipeline(
        from_dict({}), RunLocations(str(tmp_path / "r2"), str(tmp_path / "s2"), str(tmp_path / "m2.sqlite"))
    )
    assert "Tuner" not in {c.id for c in untuned.components}


def test_drift_fail_gates_the_trainer_and_off_or_clusters_have_no_drift_nodes(tmp_path: Path) -> None:
    def ids_and_edges(overrides: dict[str, Any], metadata_path: str | None) -> tuple[set[str], set[Any]]:
        pipeline = _pipeline(
            from_dict({"drift": overrides}),
            RunLocations(str(tmp_path / "root"), str(tmp_path / "serving"), metadata_path),
        )
        return {c.id for c in pipeline.components}, _edges(pipeline)

    ids, edges = ids_and_edges({"action": "fail"}, str(tmp_path / "m.sqlite"))
    assert ("DistributionValidator", "DriftGate") in edges and ("DriftGate", "Trainer") in edges
    drift_nodes = {"DistributionValidator", "DriftGate", DRIFT_BASELINE_RESOLVER_ID}
    ids, _ = ids_and_edges({"action": "off"}, str(tmp_path / "m.sqlite"))
    assert not ids & drift_nodes
    ids, _ = ids_and_edges({"action": "fail"}, None)  # Kubeflow/Vertex: no custom resolver there
    assert not ids & drift_nodes


def test_edge_export_and_bulk_inference_follow_the_config(tmp_path: Path) -> None:
    locations = RunLocations(str(tmp_path / "root"), str(tmp_path / "serving"), str(tmp_path / "m.sqlite"))
    default = _pipeline(from_dict({}), locations)
    ids = {c.id for c in default.components}
    assert "EdgeExport" in ids and not ids & {"InferenceExampleGen", "BulkInferrer"}
    pusher = next(c for c in default.components if c.id == "Pusher")
    assert {"edge_model", "evaluation", "examples", "model_run"} <= set(pusher.inputs)

    config = from_dict({"edge": {"enabled": False}, "inference": {"path": str(tmp_path / "unlabelled")}})
    pipeline = _pipeline(config, locations)
    edges = _edges(pipeline)
    assert "EdgeExport" not in {c.id for c in pipeline.components}
    bulk = {
        ("InferenceExampleGen", "BulkInferrer"),
        ("Trainer", "BulkInferrer"),
        ("Evaluator", "BulkInferrer"),
    }
    assert bulk <= edges
    inferrer = next(c for c in pipeline.components if c.id == "BulkInferrer")
    assert "serving_examples" in inferrer.exec_properties["model_spec"]


def test_local_run_path_skips_the_tfx_v1_facade_and_its_cloud_extensions() -> None:
    """`tfx.v1` imports google.cloud.aiplatform (~5 s): the cached re-run's budget (bench_dag)."""
    code = (
        "import sys, visiontfx.tools.run_command, visiontfx.pipeline.dag, visiontfx.pipeline.summary\n"
        "from tfx.orchestration.local.local_dag_runner import LocalDagRunner\n"
        "print(sorted(m for m in sys.modules if m == 'tfx.v1' or m.startswith('google.cloud.aiplatform')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
