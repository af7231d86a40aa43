"""``visiontfx run``: the local runner, then the summary (or JSON) and the HTML report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any, Iterator

from visiontfx.contracts import ids
from visiontfx.pipeline.config import Config, load_config
from visiontfx.pipeline.local_runner import run_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from visiontfx.pipeline.config import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument(
        "--json", action="store_true", help="print only the summary as JSON on stdout (all else: stderr)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def reusable_report(result: dict[str, Any]) -> str:
    """The previous run's report when every component came from the cache.

    Nothing changed, so the page would describe the same data and model; building
    it again (images, predictions) would cost more than the cached run itself.
    """
    from visiontfx.pipeline import metadata

    states = [s for node, s in result["components"].items() if node not in ids.RESOLVER_IDS]
    if not states or set(states) != {"CACHED"}:
        return ""
    from visiontfx.tools.report.builder import REPORTS_DIR, safe_name

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
    from visiontfx.tools.report.builder import build_report

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
    from visiontfx.pipeline.dag_inputs import has_test_split

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
