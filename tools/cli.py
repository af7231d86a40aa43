"""The ``visiontfx`` command line.

Each sub-command lives in the module that owns its idea; this file only wires
them up and imports them lazily, so ``visiontfx --help`` stays instant and a
config error is reported before TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Callable, Sequence

import visiontfx  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

# name -> (module, help). Each module provides add_arguments(parser) and main(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("visiontfx.tools.run_command", "run the whole pipeline locally (Beam, SQLite metadata)"),
    "compile": ("visiontfx.pipeline.kubeflow", "compile the DAG for Kubeflow Pipelines 2.x or Vertex AI"),
    "submit": ("visiontfx.tools.kubeflow_submit", "run the compiled pipeline once on KFP or Vertex AI"),
    "schedule": ("visiontfx.tools.kubeflow_schedule", "run the compiled pipeline on a cron schedule"),
    "serve": (
        "visiontfx.tools.serving.commands",
        "serve the pushed models (TF Serving, its Docker image, or a local server)",
    ),
    "predict": (
        "visiontfx.tools.serving.predict_command",
        "top-k classes of images from a running model server",
    ),
    "promote": (
        "visiontfx.tools.serving.promote",
        "move a version label (stable, canary) once the server has that version AVAILABLE",
    ),
    "report": ("visiontfx.tools.report.command", "build the HTML report of a run"),
    "lr-find": ("visiontfx.tools.lr_find", "sweep learning rates on the latest run's data"),
    "config": ("visiontfx.pipeline.config_command", "print the validated configuration"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """All sub-commands are listed; only the chosen one's module is imported."""
    parser = argparse.ArgumentParser(prog="visiontfx", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        if name == command:
            importlib.import_module(module_name).add_arguments(command_parser)
    return parser


def _entry(module_name: str) -> Callable[[argparse.Namespace], int]:
    return importlib.import_module(module_name).main


DEBUG_FLAG = "--debug"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one sub-command; expected failures end in one message and their exit code.

    ``--debug`` (anywhere on the line) or ``VISIONTFX_DEBUG=1`` adds the traceback.
    Exit codes: ``contracts/failures.py`` (and the README).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or bool(os.environ.get("VISIONTFX_DEBUG"))
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(command)
    parser.add_argument(DEBUG_FLAG, action="store_true", help="print tracebacks of expected failures too")
    args = parser.parse_args(argv)
    from visiontfx.contracts import failures
    from visiontfx.pipeline.config import ConfigError

    try:
        return int(_entry(args._module)(args) or 0)
    except ConfigError as error:
        _print_failure(f"configuration error: {error}", debug)
        return failures.EXIT_CONFIG
    except failures.ExpectedFailure as error:
        _print_failure(str(error), debug)
        return error.exit_code
    except KeyboardInterrupt:
        print("visiontfx: interrupted", file=sys.stderr)
        return failures.EXIT_INTERRUPTED


def _print_failure(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    else:
        message += "\n(run again with --debug for the traceback)"
    print(f"visiontfx: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
