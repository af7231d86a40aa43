"""``visiontfx report``: build the HTML report of a past run from ML Metadata.

    visiontfx report [--config FILE] [key=value ...] [--run latest|RUN_ID] [--output DIR] [--json] [--quiet]

The config only locates the run (metadata path and pipeline name), exactly as
``visiontfx run`` would. Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_NO_RUN = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from visiontfx.pipeline.config import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument(
        "--run", default="latest", metavar="latest|RUN_ID", help="which run (default: latest)"
    )
    parser.add_argument(
        "--output", metavar="DIR", help="where to write (default: <pipeline root>/reports/<run>)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON (no progress bar)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from visiontfx.pipeline.config import load_config
    from visiontfx.pipeline.local_runner import local_locations

    config = load_config(args.config, args.overrides)  # a config error is reported before TF loads
    locations = local_locations(config)
    if not os.path.isfile(locations.metadata_path):
        print(
            f"visiontfx report: no metadata at {locations.metadata_path}: run the pipeline first "
            "(visiontfx run) or pass the same --config/overrides as the run.",
            file=sys.stderr,
        )
        return EXIT_NO_RUN
    from visiontfx.pipeline import progress
    from visiontfx.tools.report.builder import build_report
    from visiontfx.tools.report.facts import LR_FINDER_DIR, LR_FINDER_FILE

    # absl/TF at WARNING with the known TFX/TFMA noise filtered, as in `visiontfx run`.
    log_setup = progress.install(0, quiet=True)
    try:
        page = build_report(
            locations.metadata_path,
            config.pipeline.name,
            args.run,
            args.output,
            pipeline_root=locations.pipeline_root,
            lr_finder_file=os.path.join(config.pipeline.root, LR_FINDER_DIR, LR_FINDER_FILE),
            quiet=args.quiet or args.json,
        )
    except LookupError as error:  # unknown pipeline or run id
        print(f"visiontfx report: {error}", file=sys.stderr)
        return EXIT_NO_RUN
    finally:
        progress.uninstall(log_setup)
    if args.json:
        print(json.dumps({"report": str(page), "directory": str(page.parent)}))
    else:
        print(f"report: {page}")
    return 0
