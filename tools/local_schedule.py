"""``visiontfx schedule --local``: the crontab line that re-runs the pipeline on this machine.

Each scheduled run is an ordinary ``visiontfx run``: ImageExampleGen's driver
fingerprints the input, so a run with unchanged data is fully cached (about the
cost of the imports) and new images or a new ``{SPAN}`` folder re-ingest and
retrain. ``flock -n`` skips a run while the previous one still holds the lock,
like ``kubeflow.max_concurrency: 1`` on the cluster.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys
from typing import Sequence

from visiontfx.pipeline.config import ConfigError, load_config

_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z]+$")
SCHEDULE_LOG = "schedule.log"
SCHEDULE_LOCK = ".schedule.lock"


def check_cron(expression: str) -> str:
    """A standard 5-field cron expression (or an @daily-style macro), as cron reads it."""
    text = expression.strip()
    if text.startswith("@"):
        if text not in ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@reboot"):
            raise ConfigError(f"--cron {expression!r}: unknown macro (@hourly, @daily, @weekly, @monthly).")
        return text
    fields = text.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ConfigError(f"--cron {expression!r}: expected 5 fields (minute hour day month weekday).")
    return " ".join(fields)


def visiontfx_executable() -> str:
    """The ``visiontfx`` entry point of this environment (absolute: cron has a minimal PATH)."""
    beside_python = os.path.join(os.path.dirname(sys.executable), "visiontfx")
    if os.path.isfile(beside_python):
        return beside_python
    return shutil.which("visiontfx") or f"{sys.executable} -m visiontfx.tools.cli"


def cron_line(
    cron: str,
    executable: str,
    config_path: str | None,
    overrides: Sequence[str],
    workdir: str,
    log_path: str,
    lock_path: str,
    environment: dict[str, str],
) -> str:
    """One crontab line: cd, environment, a non-blocking lock, the run, output appended to a log."""
    command = [*shlex.split(executable), "run", "--quiet"]
    if config_path:
        command += ["--config", os.path.abspath(config_path)]
    command += list(overrides)
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(environment.items()))
    run = " ".join(shlex.quote(part) for part in command)
    # cron treats an unescaped % as a newline.
    line = (
        f"{check_cron(cron)} cd {shlex.quote(workdir)} && {env + ' ' if env else ''}"
        f"flock -n {shlex.quote(lock_path)} {run} >> {shlex.quote(log_path)} 2>&1"
    )
    return line.replace("%", "\\%")


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)  # fail now, not at 03:00
    root = os.path.abspath(config.pipeline.root)
    environment = {
        name: os.environ[name]
        for name in ("PYTHONPATH", "TF_USE_LEGACY_KERAS", "KERAS_HOME")
        if os.environ.get(name)
    }
    print(
        cron_line(
            args.cron,
            visiontfx_executable(),
            args.config,
            args.overrides,
            os.getcwd(),
            os.path.join(root, SCHEDULE_LOG),
            os.path.join(root, SCHEDULE_LOCK),
            environment,
        )
    )
    print(
        "# Add it with `crontab -e` (times in this machine's time zone). Each run appends to "
        f"{os.path.join(root, SCHEDULE_LOG)}; unchanged data is a fully cached run.",
        file=sys.stderr,
    )
    return 0
