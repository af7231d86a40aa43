"""The DAG's Beam components on Beam's portable runner with an EXTERNAL SDK worker pool.

The same contract as the Flink preset's worker-pool sidecar, offline: the test
starts ``apache_beam.runners.worker.worker_pool_main`` itself and runs
ImageExampleGen, StatisticsGen and the Evaluator with ``pipeline.beam_worker_pool``
pointing at it, the Evaluator on the model of the session's direct-runner run
(``tiny_runs``; a second training would not give the same weights). Split
counts, statistics and evaluation metrics must equal that direct run's.
(Transform runs in place without Beam in this configuration.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import tiny_config
from trainer_fixtures import free_port

from visiontfx.pipeline import metadata

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An external Beam SDK worker pool on a free local port."""
    port = free_port()
    env = dict(os.environ)
    # The pool starts each worker as plain `python`: without this environment's bin first
    # on PATH the workers fail to start and the pipeline hangs without an error.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log_path = tmp_path_factory.mktemp("worker_pool") / "worker_pool.log"
    with open(log_path, "wb") as log:
        pool = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers share the group, so they end with it
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
                break
            except OSError:
                if pool.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"worker pool did not start:\n{log_path.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.5)
        yield f"localhost:{port}"
    finally:
        os.killpg(pool.pid, signal.SIGTERM)
        pool.wait(timeout=30)


def beam_components_pipeline(config: Any, model_uri: str) -> Any:
    """ExampleGen → StatisticsGen, and the Evaluator on an imported model: the DAG's Beam parts."""
    from tfx import v1 as tfx
    from tfx.types import standard_artifacts

    from visiontfx.components.evaluator.eval_config import build_eval_config
    from visiontfx.pipeline.dag import make_example_gen
    from visiontfx.pipeline.dag_inputs import has_test_split, schema_file
    from visiontfx.pipeline.local_runner import beam_pipeline_args, local_locations

    locations = local_locations(config)
    example_gen = make_example_gen(config, locations.data_root, has_test_split(config, locations.data_root))
    examples = example_gen.outputs["examples"]
    statistics_gen = tfx.components.StatisticsGen(examples=examples)
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file(config))
    model = tfx.dsl.Importer(source_uri=model_uri, artifact_type=standard_artifacts.Model).with_id(
        "DirectModel"
    )
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=model.outputs["result"],
        schema=schema_gen.outputs["schema"],
        eval_config=build_eval_config(config.evaluation.min_accuracy, config.evaluation.max_accuracy_drop),
        example_splits=["test" if has_test_split(config, locations.data_root) else "eval"],
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline.name,
        pipeline_root=locations.pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, model, evaluator],
        enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            locations.metadata_path
        ),
        beam_pipeline_args=beam_pipeline_args(config),
    )


@pytest.fixture(scope="module")
def portable_run(
    worker_pool: str, tiny_runs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    from tfx import v1 as tfx

    from visiontfx.pipeline.local_runner import local_locations

    root = tmp_path_factory.mktemp("portable_pipeline")
    config = tiny_config(root, f"pipeline.beam_worker_pool={worker_pool}")
    locations = local_locations(config)
    os.makedirs(os.path.dirname(locations.metadata_path), exist_ok=True)
    tfx.orchestration.LocalDagRunner().run(beam_components_pipeline(config, tiny_runs["first"]["model_uri"]))
    run = metadata.load_run(locations.metadata_path, config.pipeline.name)
    return {"config": config, "run": run}


def direct_run(tiny_runs: dict[str, Any]) -> metadata.PipelineRun:
    result = tiny_runs["first"]
    return metadata.load_run(result["metadata_path"], result["pipeline_name"], result["run_id"])


def split_counts(run: metadata.PipelineRun) -> dict[str, int]:
    from visiontfx.contracts.features import REPORT_FILE

    report = json.loads(Path(run.uri("ImageExampleGen", "examples"), REPORT_FILE).read_text())
    return {split: body["total"] for split, body in report["splits"].items()}


def statistics(run: metadata.PipelineRun) -> dict[str, dict[str, Any]]:
    """split -> example count and, per feature, its non-missing count and numeric mean."""
    import tensorflow_data_validation as tfdv

    uri = Path(run.uri("StatisticsGen", "statistics"))
    found = {}
    for split_dir in sorted(uri.glob("Split-*")):
        [dataset] = tfdv.load_stats_binary(str(split_dir / "FeatureStats.pb")).datasets
        features = {}
        for feature in dataset.features:
            kind = feature.WhichOneof("stats")
            stats = getattr(feature, kind)
            common = stats.common_stats
            features[feature.path.step[0]] = {
                "non_missing": common.num_non_missing,
                "mean": round(stats.mean, 9) if kind == "num_stats" else None,
            }
        found[split_dir.name] = {"examples": dataset.num_examples, "features": features}
    return found


def test_beam_components_ran_on_the_portable_runner(portable_run: dict[str, Any]) -> None:
    from visiontfx.pipeline.local_runner import beam_pipeline_args

    args = beam_pipeline_args(portable_run["config"])
    assert "--runner=PortableRunner" in args and "--environment_type=EXTERNAL" in args
    states = {node: component.state for node, component in portable_run["run"].components.items()}
    assert states == dict.fromkeys(
        ["ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "DirectModel", "Evaluator"], "COMPLETE"
    )


def test_portable_results_equal_the_direct_runners(
    portable_run: dict[str, Any], tiny_runs: dict[str, Any]
) -> None:
    from visiontfx.components.evaluator import results

    portable, direct = portable_run["run"], direct_run(tiny_runs)
    assert split_counts(portable) == split_counts(direct) == {"train": 600, "eval": 100, "test": 200}
    portable_stats = statistics(portable)
    assert portable_stats == statistics(direct)
    assert portable_stats["Split-train"]["examples"] == 600
    portable_metrics = results.overall_metrics(portable.uri("Evaluator", "evaluation"))
    direct_metrics = results.overall_metrics(direct.uri("Evaluator", "evaluation"))
    assert portable_metrics.keys() == direct_metrics.keys() and "example_count" in portable_metrics
    assert portable_metrics["example_count"] == 200
    for name, value in direct_metrics.items():
        assert portable_metrics[name] == pytest.approx(value, rel=1e-6, abs=1e-6), name
    assert results.is_blessed(portable.uri("Evaluator", "blessing")) == results.is_blessed(
        direct.uri("Evaluator", "blessing")
    )
