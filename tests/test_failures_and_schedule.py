"""Failures a user can act on (messages, exit codes, --debug), drift read-back, and the local schedule."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2

from visiontfx.components.drift import results as drift_results
from visiontfx.components.evaluator.results import describe_failure
from visiontfx.contracts import failures
from visiontfx.pipeline.config import ConfigError
from visiontfx.pipeline.summary import format_summary
from visiontfx.tools import cli, local_schedule


@pytest.fixture()
def failing_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sub-command whose run raises an expected failure deep inside."""
    module = types.ModuleType("visiontfx_test_failing_command")

    def main(args: argparse.Namespace) -> int:
        def ingest() -> None:
            raise failures.DataError("3 of 51 images were rejected. Ingestion report: /x/report.json")

        ingest()
        return 0

    module.add_arguments = lambda parser: None  # type: ignore[attr-defined]
    module.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "failing", (module.__name__, "fails"))


def test_expected_failure_is_one_message_and_its_exit_code(
    failing_command: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["failing"]) == failures.EXIT_DATA
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("visiontfx: 3 of 51 images were rejected. Ingestion report: /x/report.json")
    assert "--debug" in err


def test_debug_shows_the_traceback(failing_command: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["failing", "--debug"]) == failures.EXIT_DATA
    err = capsys.readouterr().err
    assert "Traceback" in err and "in ingest" in err


def test_exit_codes_are_distinct() -> None:
    codes = [
        failures.EXIT_OK,
        failures.EXIT_UNEXPECTED,
        failures.EXIT_CONFIG,
        failures.EXIT_NOT_BLESSED,
        failures.EXIT_DATA,
        failures.EXIT_DRIFT,
        failures.EXIT_INTERRUPTED,
    ]
    assert len(set(codes)) == len(codes)
    assert failures.DriftError("x").exit_code == failures.EXIT_DRIFT


def test_not_blessed_names_metric_value_and_threshold() -> None:
    value = describe_failure("sparse_categorical_accuracy", 0.3125, 0.5, is_change=False)
    assert (
        value == "sparse_categorical_accuracy = 0.3125, below the threshold 0.5000 (evaluation.min_accuracy)"
    )
    change = describe_failure("sparse_categorical_accuracy", -0.05, 0.01, is_change=True)
    assert "-0.0500" in change and "0.0100" in change and "max_accuracy_drop" in change
    summary = {
        "run_id": "r",
        "components": {},
        "ingested": None,
        "anomalies": {},
        "accuracy": None,
        "blessed": False,
        "validation_failures": [{"message": value}],
        "pushed_to": "",
        "tensorboard": "t",
    }
    assert f"            {value}" in format_summary(summary, "test").splitlines()


def _write_anomalies(uri: Path, label_value: float, threshold: float) -> None:
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.drift_skew_info.add()
    info.path.step.append("label_name")
    info.drift_measurements.add(
        type=anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY, value=label_value, threshold=threshold
    )
    folder = uri / drift_results.split_pair_dir()
    folder.mkdir(parents=True)
    (folder / drift_results.ANOMALIES_FILE).write_bytes(anomalies.SerializeToString())


def test_drift_is_read_back_with_value_and_threshold(tmp_path: Path) -> None:
    assert drift_results.read_drift(str(tmp_path / "none"))["compared"] is False
    _write_anomalies(tmp_path / "far", 0.45, 0.1)
    drift = drift_results.read_drift(str(tmp_path / "far"))
    assert drift["compared"] and len(drift["exceeded"]) == 1
    assert drift_results.describe(drift) == "label_name: l_infty 0.450 > threshold 0.100"
    _write_anomalies(tmp_path / "near", 0.05, 0.1)
    assert drift_results.read_drift(str(tmp_path / "near"))["exceeded"] == []


def test_cron_line_runs_the_same_config_without_overlap(tmp_path: Path) -> None:
    line = local_schedule.cron_line(
        "0 3 * * *",
        "/venv/bin/visiontfx",
        "my config.yaml",
        ["data.path=/data/photos/span-{SPAN}"],
        "/work dir",
        "/out/schedule.log",
        "/out/.schedule.lock",
        {"TF_USE_LEGACY_KERAS": "1"},
    )
    assert line.startswith("0 3 * * * cd '/work dir' && TF_USE_LEGACY_KERAS=1 flock -n /out/.schedule.lock ")
    assert "/venv/bin/visiontfx run --quiet --config " in line
    assert "'data.path=/data/photos/span-{SPAN}'" in line
    assert line.endswith(">> /out/schedule.log 2>&1")
    assert "%" not in line.replace("\\%", "")


@pytest.mark.parametrize("cron", ["0 3 * *", "every day", "@often"])
def test_bad_cron_is_a_config_error(cron: str) -> None:
    with pytest.raises(ConfigError, match="--cron"):
        local_schedule.check_cron(cron)


def test_schedule_local_prints_a_pasteable_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = cli.main(["schedule", "--local", "--cron", "30 2 * * 1", f"pipeline.root={tmp_path / 'out'}"])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("30 2 * * 1 cd ")
    assert f"{tmp_path / 'out' / 'schedule.log'}" in out[0]
    assert cli.main(["schedule", "--local", "--cron", "bad"]) == failures.EXIT_CONFIG
