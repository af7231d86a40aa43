"""``visiontfx promote``: move a version label once the server reports the version AVAILABLE.

The second step of a release (the Pusher's push is the first): TF Serving
refuses, as a whole, a models.config reload that moves a label onto a version
that is not AVAILABLE, so a label moves only after the server confirms the
version loaded. It rewrites ``<serving-dir>/models.config`` (local or gs://)
with the label moved; TF Serving (and ``visiontfx serve``) re-read it on their
next config poll.

Exit codes: 0 moved (or already there), 3 the version is not AVAILABLE (yet: try
again later, or ``--wait``), 2 nothing pushed yet or a usage error. With
``--pending-ok`` (the scheduled promoter), "nothing pushed yet" and "still
loading" exit 0; a version that failed to load still exits 3.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Callable

from visiontfx.components.pusher import serving_config

EXIT_NOT_AVAILABLE = 3


class PromoteError(RuntimeError):
    """The label cannot move (no config, unknown model or version)."""


class NothingPushedError(PromoteError):
    """No models.config, no such model in it, or no version yet: nothing was pushed."""


class NotAvailableError(PromoteError):
    """The version is not AVAILABLE on the server."""

    def __init__(self, message: str, failed: bool) -> None:
        super().__init__(message)
        self.failed = failed  # END: it will not become AVAILABLE


@dataclasses.dataclass(frozen=True)
class Promotion:
    model: str
    label: str
    version: int
    previous: int | None

    @property
    def moved(self) -> bool:
        return self.previous != self.version


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from visiontfx.pipeline.config import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--serving-dir", help="where models.config is (default: config serving.serving_dir)")
    parser.add_argument("--model-name", help="model whose label moves (default: config serving.model_name)")
    parser.add_argument("--label", default=serving_config.STABLE, help="label to move (default: stable)")
    parser.add_argument("--version", type=int, help="version to label (default: the newest on disk)")
    parser.add_argument(
        "--server",
        default="http://127.0.0.1:8501",
        help="REST address of the server that must have it AVAILABLE",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait for the version to become AVAILABLE (default 0)",
    )
    parser.add_argument(
        "--pending-ok",
        action="store_true",
        help="exit 0 while nothing is pushed or the version still loads (scheduled runs); failed: 3",
    )


def rest_version_state(server: str, model: str, timeout: float = 10.0) -> Callable[[int], str]:
    """The state TF Serving reports for a version over REST ('' when it does not know the version)."""
    from visiontfx.tools.serving.client import ServingClient, ServingClientError

    def state(version: int) -> str:
        try:
            with ServingClient(url=server, model=model, version=version, timeout=timeout) as client:
                answer = client.status()
        except ServingClientError as error:
            if "Could not find" in str(error):
                return ""
            raise PromoteError(f"Cannot ask {server} about {model} version {version}: {error}") from None
        states = [
            entry for entry in answer.get("model_version_status", []) if int(entry["version"]) == version
        ]
        return str(states[0]["state"]) if states else ""

    return state


def promote(
    serving_dir: str,
    model: str,
    label: str,
    version: int | None,
    state_of: Callable[[int], str],
    wait_seconds: float = 0.0,
    poll_seconds: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Promotion:
    """Moves ``label`` to ``version`` (default: the newest on disk) once ``state_of`` says AVAILABLE."""
    from tensorflow.io import gfile

    path = os.path.join(serving_dir, serving_config.MODELS_CONFIG)
    config = serving_config.read_models_config(path)
    if config is None:
        raise NothingPushedError(f"No {path}: push a model first (the Pusher writes it).")
    entry = serving_config.find_model(config, model)
    if entry is None:
        names = [known.name for known in config.model_config_list.config]
        raise NothingPushedError(f"Model {model!r} is not in {path} (models: {names}): push it first.")
    on_disk = (
        serving_config.integer_versions(gfile.listdir(entry.base_path))
        if gfile.isdir(entry.base_path)
        else []
    )
    if version is None:
        if not on_disk:
            raise NothingPushedError(f"No versions under {entry.base_path}: push a model first.")
        version = on_disk[-1]
    elif version not in on_disk:
        raise PromoteError(f"Version {version} is not under {entry.base_path} (versions: {on_disk}).")
    previous = dict(entry.version_labels).get(label)
    deadline = clock() + wait_seconds
    while (state := state_of(version)) != "AVAILABLE":
        if state == "END" or clock() >= deadline:
            why = "failed to load (state END)" if state == "END" else f"is {state or 'unknown to the server'}"
            raise NotAvailableError(
                f"{model} version {version} {why}: label {label!r} stays on {previous}. TF Serving refuses a "
                "label move to a version that is not AVAILABLE.",
                failed=state == "END",
            )
        sleep(poll_seconds)
    if previous != version:
        moved = serving_config.move_label(entry, label, version)
        serving_config.write_text(
            path, serving_config.render_models_config(serving_config.merge_model_config(config, moved))
        )
    return Promotion(model, label, version, previous)


def main(args: argparse.Namespace) -> int:
    from visiontfx.pipeline.config import load_config

    config = load_config(args.config, args.overrides)
    serving_dir = args.serving_dir or config.serving.serving_dir
    if "://" not in serving_dir:
        serving_dir = os.path.abspath(serving_dir)
    model = args.model_name or config.serving.model_name
    try:
        result = promote(
            serving_dir, model, args.label, args.version, rest_version_state(args.server, model), args.wait
        )
    except NotAvailableError as error:
        print(f"visiontfx promote: {error}", file=sys.stderr)
        return 0 if args.pending_ok and not error.failed else EXIT_NOT_AVAILABLE
    except NothingPushedError as error:
        print(f"visiontfx promote: {error}", file=sys.stderr)
        return 0 if args.pending_ok else 2
    except PromoteError as error:
        print(f"visiontfx promote: {error}", file=sys.stderr)
        return 2
    if result.moved:
        print(f"visiontfx promote: {model} label {result.label!r}: {result.previous} → {result.version}")
    else:
        print(f"visiontfx promote: {model} label {result.label!r} is already on version {result.version}")
    return 0
