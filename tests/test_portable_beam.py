"""The DAG's Beam components on Beam's portable runner with an EXTERNAL SDK worker pool.

The same contract as the Flink preset's worker-pool sidecar, offline: the test
starts ``apache_beam.runners.worker.worker_pool_main`` itself and runs the tiny
DAG with ``pipeline.beam_worker_pool`` pointing at it (ImageExampleGen,
StatisticsGen and the Evaluator run as portable Beam jobs; Transform runs in
place without Beam). The results must equal the direct runner's run of the
same config (the session's ``tiny_runs``): split counts, statistics, metrics.
"""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def portable_run(worker_pool: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from visiontfx.pipeline.local_runner import run_pipeline

    root = tmp_path_factory.mktemp("portable_pipeline")
    config = tiny_config(root, f"pipeline.beam_worker_pool={worker_pool}")
    return {"config": config, "result": run_pipeline(config)}


def statistics(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """split -> example count and, per feature, its non-missing count and numeric mean."""
    import tensorflow_data_validation as tfdv

    run = metadata.load_run(result["metadata_path"], result["pipeline_name"], result["run_id"])
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
    result = portable_run["result"]
    assert set(result["components"].values()) == {"COMPLETE"}


def test_portable_results_equal_the_direct_runners(
    portable_run: dict[str, Any], tiny_runs: dict[str, Any]
) -> None:
    portable, direct = portable_run["result"], tiny_runs["first"]
    assert portable["splits"] == direct["splits"] == {"train": 600, "eval": 100, "test": 200}
    assert portable["ingested"] == direct["ingested"] and portable["rejected"] == direct["rejected"]
    portable_stats, direct_stats = statistics(portable), statistics(direct)
    assert portable_stats == direct_stats
    assert portable_stats["Split-train"]["examples"] == 600
    assert portable["evaluated_examples"] == direct["evaluated_examples"] == 200
    assert portable["accuracy"] == pytest.approx(direct["accuracy"], abs=1e-6)
    assert portable["blessed"] == direct["blessed"]
