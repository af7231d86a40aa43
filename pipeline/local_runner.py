"""``visiontfx run``: the DAG on TFX's LocalDagRunner (Beam direct runner, SQLite MLMD)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import Any, Iterator

from visiontfx.pipeline.config import Config, load_config

DEFAULT_BEAM_MODE = ("in_memory", 1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from visiontfx.pipeline.cli import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument(
        "--json", action="store_true", help="print only the summary as JSON on stdout (all else: stderr)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


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


def run_pipeline(config: Config, quiet: bool = True) -> dict[str, Any]:
    """Runs the DAG and returns the summary of this run (with per-component seconds)."""
    from tfx import v1 as tfx

    from visiontfx.pipeline import metadata, progress, summary
    from visiontfx.pipeline.dag import create_pipeline

    locations = local_locations(config)
    os.makedirs(os.path.dirname(locations.metadata_path), exist_ok=True)
    previous_fingerprint = metadata.latest_input_fingerprint(locations.metadata_path)
    pipeline = create_pipeline(config, locations, beam_pipeline_args(config))
    started = time.monotonic()
    reporter = progress.install(len(pipeline.components), quiet)
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
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


def reusable_report(result: dict[str, Any]) -> str:
    """The previous run's report when every component came from the cache.

    Nothing changed, so the page would describe the same data and model; building
    it again (images, predictions) would cost more than the cached run itself.
    """
    from visiontfx.pipeline import metadata

    states = [s for node, s in result["components"].items() if node not in metadata.RESOLVER_IDS]
    if not states or set(states) != {"CACHED"}:
        return ""
    from visiontfx.components.report.builder import REPORTS_DIR, safe_name

    run_ids = metadata.list_run_ids(metadata.open_store(result["metadata_path"]), result["pipeline_name"])
    for run_id in reversed(run_ids[:-1]):
        page = os.path.join(result["pipeline_root"], REPORTS_DIR, safe_name(run_id), "report.html")
        if os.path.isfile(page):
            return page
    return ""


def write_report(config: Config, result: dict[str, Any], quiet: bool) -> str:
    """Builds the run's HTML report; a broken report must not fail a finished run."""
    reused = reusable_report(result)
    if reused:
        return reused
    from visiontfx.components.report.builder import build_report

    try:
        return str(
            build_report(
                result["metadata_path"],
                config.pipeline.name,
                result["run_id"],
                pipeline_root=result["pipeline_root"],
                quiet=quiet,
            )
        )
    except Exception as error:
        print(f"visiontfx: report not written: {error}", file=sys.stderr)
        return ""


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Sends everything written to stdout (Python or native code, e.g. Keras' epoch lines) to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)  # validated before anything heavy runs
    if args.quiet or args.json:
        os.environ["VISIONTFX_QUIET"] = "1"
    from visiontfx.contracts.failures import EXIT_NOT_BLESSED, EXIT_OK
    from visiontfx.pipeline import summary
    from visiontfx.pipeline.dag import has_test_split

    quiet = bool(args.quiet)  # --json keeps the progress lines: they go to stderr
    from visiontfx.contracts.failures import ExpectedFailure

    try:
        with stdout_to_stderr() if args.json else contextlib.nullcontext():
            result = run_pipeline(config, quiet=quiet)
            result["report"] = write_report(config, result, quiet or args.json)
    except ExpectedFailure as error:
        if args.json:  # still JSON on stdout; the command line prints the message to stderr
            print(json.dumps({"error": str(error), "exit_code": error.exit_code}, indent=2))
        raise
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        split = "test" if has_test_split(config, config.data.path) else "eval"
        print(summary.format_summary(result, split))
        print(f"report:     {result['report'] or '(not written)'}")
        print(f"took {result['seconds']:.0f} s; metadata: {result['metadata_path']}")
    return EXIT_OK if result["blessed"] else EXIT_NOT_BLESSED
