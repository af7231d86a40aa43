"""``visiontfx schedule``: a recurring run of the compiled pipeline on Kubeflow Pipelines or Vertex AI.

Everything but the schedule itself (spec, parameters, platform clients,
credentials from the environment) is shared with ``visiontfx submit`` — see
``kubeflow_submit``. Defaults are the cautious ones: one run at a time
(``kubeflow.max_concurrency``) and no catch-up of runs missed while the
schedule was paused.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from visiontfx.pipeline.config import ConfigError, load_config
from visiontfx.tools.kubeflow_submit import (
    Schedule,
    add_submission_arguments,
    api_errors,
    backend_for,
    kfp_cron,
    prepare_submission,
    vertex_cron,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_submission_arguments(parser)
    parser.add_argument(
        "--cron", required=True, help='standard 5-field cron in UTC, e.g. "0 3 * * *" (every day at 03:00)'
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        help="runs of this schedule at the same time (default: kubeflow.max_concurrency)",
    )
    parser.add_argument(
        "--catchup",
        action="store_true",
        help="back-fill runs missed while paused (Kubeflow only; default: off)",
    )
    parser.add_argument("--name", help="schedule name (default: <pipeline name>-schedule)")
    parser.add_argument(
        "--replace", action="store_true", help="replace an existing schedule of the same name"
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="print a crontab line that runs `visiontfx run` on this machine instead (see local_schedule.py)",
    )


def main(args: argparse.Namespace) -> int:
    if args.local:
        from visiontfx.tools import local_schedule

        return local_schedule.main(args)
    config = load_config(args.config, args.overrides)
    max_concurrency = args.max_concurrency or config.kubeflow.max_concurrency
    if max_concurrency < 1:
        raise ConfigError("--max-concurrency (kubeflow.max_concurrency) must be at least 1.")
    # Checked before compiling: a typo in --cron should not cost a TFX import.
    (vertex_cron if config.kubeflow.platform == "vertex" else kfp_cron)(args.cron)
    backend = backend_for(config, args.endpoint)
    with tempfile.TemporaryDirectory(prefix="visiontfx-schedule-") as workdir:
        submission = prepare_submission(args, config, workdir)
        schedule = Schedule(
            name=args.name or f"{submission.pipeline_name}-schedule",
            cron=args.cron,
            max_concurrency=max_concurrency,
            catchup=args.catchup,
        )
        try:
            created = backend.schedule(submission, schedule, replace=args.replace)
        except api_errors() as error:  # evaluated only when something is raised
            print(f"visiontfx: {backend.describe()} refused the schedule: {error}", file=sys.stderr)
            return 1
    print(
        f"Scheduled '{submission.pipeline_name}' on {backend.describe()} as {schedule.name!r} "
        f"(cron {args.cron!r} UTC, at most {max_concurrency} at once, "
        f"catch-up {'on' if args.catchup else 'off'}): {created}"
    )
    return 0
