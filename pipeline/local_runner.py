"""The DAG on TFX's LocalDagRunner (Beam direct runner, SQLite MLMD): locations, Beam options, one run."""

from __future__ import annotations

import os
import time
from typing import Any

from visiontfx.pipeline.config import Config

DEFAULT_BEAM_MODE = ("in_memory", 1)


def beam_pipeline_args(config: Config) -> list[str]:
    """Beam options; none for the default, because any makes TFX package itself per component."""
    import shlex

    mode, workers = config.pipeline.direct_running_mode, config.pipeline.direct_num_workers
    extra = shlex.split(config.pipeline.beam_args)
    if config.pipeline.beam_worker_pool:
        return [*portable_runner_args(config.pipeline.beam_worker_pool, config.kubeflow.image), *extra]
    if (mode, workers) == DEFAULT_BEAM_MODE:
        return extra
    return [f"--direct_running_mode={mode}", f"--direct_num_workers={workers}", *extra]


def portable_runner_args(worker_pool: str, image: str) -> list[str]:
    """Beam's portable runner, its job server embedded, with the EXTERNAL workers at ``worker_pool``.

    The workers were started elsewhere and already have the code, which
    ``--sdk_container_image`` tells TFX (Beam ignores it for EXTERNAL workers):
    without it TFX builds and ships a throwaway sdist of itself per component.
    """
    return [
        "--runner=PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=EXTERNAL",
        f"--environment_config={worker_pool}",
        f"--sdk_container_image={image}",
    ]


def local_locations(config: Config) -> Any:
    from visiontfx.pipeline.dag import RunLocations

    root = os.path.abspath(config.pipeline.root)
    return RunLocations(
        pipeline_root=os.path.join(root, "pipelines", config.pipeline.name),
        serving_dir=os.path.abspath(config.serving.serving_dir),
        metadata_path=os.path.abspath(config.pipeline.metadata_path or os.path.join(root, "metadata.sqlite")),
        data_root=os.path.abspath(config.data.path) if config.data.path else "",
    )


def local_pipeline(config: Config) -> tuple[Any, Any]:
    """(RunLocations, the tfx Pipeline) for a run on this machine; makes the metadata folder."""
    from visiontfx.pipeline.dag import create_pipeline
    from visiontfx.pipeline.dag_inputs import gather_inputs

    locations = local_locations(config)
    os.makedirs(os.path.dirname(locations.metadata_path), exist_ok=True)
    inputs = gather_inputs(config, locations.data_root)
    return locations, create_pipeline(config, locations, inputs, beam_pipeline_args(config))


def run_pipeline(config: Config, quiet: bool = True) -> dict[str, Any]:
    """Runs the DAG and returns the summary of this run (with per-component seconds)."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from visiontfx.pipeline import metadata, progress, summary

    locations, pipeline = local_pipeline(config)
    previous_fingerprint = metadata.latest_input_fingerprint(locations.metadata_path)
    started = time.monotonic()
    reporter = progress.install(len(pipeline.components), quiet)
    try:
        LocalDagRunner().run(pipeline)
    except BaseException:
        reporter.report_failure()
        raise
    finally:
        progress.uninstall(reporter)
    run = metadata.load_run(locations.metadata_path, config.pipeline.name)
    result = summary.build_summary(run)
    result["data_change"] = data_change(run, previous_fingerprint, result["input_fingerprint"])
    result["seconds"] = round(time.monotonic() - started, 1)
    result["component_seconds"] = {k: round(v, 1) for k, v in reporter.durations.items()}
    result["metadata_path"] = locations.metadata_path
    result["pipeline_root"] = locations.pipeline_root
    result["pipeline_name"] = config.pipeline.name
    return result


def data_change(run: Any, previous: str, current: str) -> str:
    """Why ExampleGen ran (or that it came from the cache), for the summary."""
    from visiontfx.components.image_example_gen.spans import describe_change
    from visiontfx.pipeline.summary import EXAMPLE_GEN_IDS

    states = {run.components[n].state for n in EXAMPLE_GEN_IDS if n in run.components}
    if states == {"CACHED"}:
        return "unchanged (ingestion from cache)"
    if not current:
        return ""
    return "re-ingested: " + describe_change(previous, current) if previous else "first ingestion"
