"""Component-level progress for ``visiontfx run``: which node runs, and how long each took.

TFX's LocalDagRunner logs "Component X is running/finished" at INFO level,
drowned among thousands of other INFO lines. This handler keeps absl quiet
(warnings and errors only) and turns just those two lines into progress.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

# Warnings TFX 1.16 prints on every run that ask nothing of the user.
KNOWN_NOISE = (
    "ArtifactQuery.property_predicate is not supported",
    "tf_record_iterator (from tensorflow.python.lib.io.tf_record) is deprecated",
    "Using the in-place Transform since disable_statistics=True",
)
_RUNNING = "Component %s is running."
_FINISHED = "Component %s is finished."


class ComponentProgress(logging.Handler):
    def __init__(self, total: int, stream: TextIO | None) -> None:
        """``stream`` None: only record durations, print nothing."""
        super().__init__(level=logging.INFO)
        self.total = total
        self.stream = stream
        self.started: dict[str, float] = {}
        self.durations: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg not in (_RUNNING, _FINISHED) or not record.args:
            return
        node = str(record.args[0])
        if record.msg == _RUNNING:
            self.started[node] = time.monotonic()
            line = f"[{len(self.started)}/{self.total}] {node} …"
        else:
            seconds = time.monotonic() - self.started.get(node, time.monotonic())
            self.durations[node] = seconds
            line = f"[{len(self.started)}/{self.total}] {node} done in {seconds:.1f} s"
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()

    def report_failure(self) -> None:
        """The node that started and never finished failed: say which, and after how long."""
        for node, started in self.started.items():
            if node not in self.durations:
                seconds = time.monotonic() - started
                self.durations[node] = seconds
                if self.stream is not None:
                    line = f"[{len(self.started)}/{self.total}] {node} failed after {seconds:.1f} s"
                    self.stream.write(line + "\n")
                    self.stream.flush()


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in KNOWN_NOISE)


_NOISE_FILTER = _DropKnownNoise()


def install(total: int, quiet: bool = False) -> ComponentProgress:
    """Keeps other handlers at WARNING and records (and unless quiet, prints) progress."""
    if not logging.root.handlers:
        logging.basicConfig()  # absl would add this on first use, at INFO level
    from absl import logging as absl_logging

    absl_logger = logging.getLogger("absl")
    # Through absl's verbosity flag, not the logger's level: TensorFlow's SavedModel
    # code sets the flag to FATAL and back around each save, which would otherwise
    # leave the logger at the flag's default (WARNING) and end the progress lines.
    absl_logging.set_verbosity(absl_logging.INFO)
    for handler in absl_logger.handlers + logging.getLogger().handlers:
        handler.setLevel(max(handler.level, logging.WARNING))
        handler.addFilter(_NOISE_FILTER)
    logging.getLogger("tensorflow").addFilter(_NOISE_FILTER)  # it logs through its own handler
    progress = ComponentProgress(total, None if quiet else sys.stderr)
    absl_logger.addHandler(progress)
    return progress


def uninstall(progress: ComponentProgress) -> None:
    logging.getLogger("absl").removeHandler(progress)
