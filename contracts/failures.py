"""Failures a user can act on, and the exit codes of ``visiontfx`` (documented in the README).

Components raise these for expected problems (bad data, drift beyond a threshold);
the command line prints their message without a traceback (``--debug`` shows it)
and exits with their code. Anything else is a bug or an environment problem:
exit code 1 with the traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1  # an unexpected error: the traceback is printed
EXIT_CONFIG = 2  # a configuration value is missing, unknown or out of range
EXIT_NOT_BLESSED = 3  # the run finished but the model was not blessed (not pushed)
EXIT_DATA = 4  # the input data is missing or unusable (ingestion thresholds, empty classes, spans)
EXIT_DRIFT = 5  # the new data drifted beyond a threshold and drift.action is "fail"
EXIT_INTERRUPTED = 130


class ExpectedFailure(RuntimeError):
    """A failure whose message tells the user what to do; no traceback needed."""

    exit_code = EXIT_UNEXPECTED


class DataError(ExpectedFailure):
    """The input data is missing or unusable."""

    exit_code = EXIT_DATA


class DriftError(ExpectedFailure):
    """The new data differs from the previously trained data beyond a configured threshold."""

    exit_code = EXIT_DRIFT
