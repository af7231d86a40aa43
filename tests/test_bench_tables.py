"""The benchmark tables in docs/benchmarks.md are generated from the committed result JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bench import tables
from bench.common import alternating_orders, spread

RESULT = {
    "benchmark": "demo",
    "date": "2026-12-02T12:00:00+00:00",
    "machine": {"cpus": 2, "python": "3.10.13"},
    "rounds": 4,
    "load_average": {"min": 0.3, "max": 1.7},
    "table": [
        {"method": "baseline", "seconds": "10.0 (9.0–11.0)", "ratio": 1.0},
        {"method": "ours", "seconds": "5.0 (4.5–6.0)", "ratio": "**2.0**"},
    ],
}
DOC = """# Benchmarks

Prose before.

<!-- bench:demo -->
an old table
<!-- /bench:demo -->

Prose after, untouched.

<!-- bench:other -->
kept: no result file for it
<!-- /bench:other -->
"""


def test_the_table_is_rendered_from_the_json_rows() -> None:
    rendered = tables.render(RESULT, "bench/demo.json")
    lines = rendered.splitlines()
    assert lines[0] == (
        "_Generated from [bench/demo.json](bench/demo.json) — measured 2026-12-02 on 2 CPUs, "
        "4 alternating rounds, load average 0.3–1.7; median (min–max)._"
    )
    assert lines[2:] == [
        "| method | seconds | ratio |",
        "|---|---|---|",
        "| baseline | 10.0 (9.0–11.0) | 1.0 |",
        "| ours | 5.0 (4.5–6.0) | **2.0** |",
    ]


def test_only_the_marked_sections_with_a_result_are_rewritten(tmp_path: Path) -> None:
    results = tmp_path / "bench"
    results.mkdir()
    (results / "demo.json").write_text(json.dumps(RESULT))
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    assert tables.update_doc(doc, results) == ["demo"]
    text = doc.read_text()
    assert "an old table" not in text
    assert tables.render(RESULT, "bench/demo.json") in text
    assert text.startswith("# Benchmarks\n\nProse before.\n\n<!-- bench:demo -->\n_Generated")
    assert "<!-- /bench:demo -->\n\nProse after, untouched." in text
    assert "kept: no result file for it" in text
    assert tables.update_doc(doc, results) == ["demo"]
    assert doc.read_text() == text  # idempotent


def test_a_result_without_its_section_fails_naming_the_markers() -> None:
    with pytest.raises(ValueError, match="<!-- bench:missing -->"):
        tables.rewrite(DOC, "missing", "table")


def test_the_shipped_doc_has_a_section_for_every_committed_result() -> None:
    doc = tables.DOC.read_text()
    for path in tables.RESULTS_DIR.glob("*.json"):
        assert tables.section_pattern(path.stem).search(doc), path.name


def test_rounds_alternate_abba_and_spread_keeps_the_range() -> None:
    assert alternating_orders(["a", "b"], 4) == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]
    assert spread([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}


def test_an_empty_section_is_filled() -> None:
    doc = "<!-- bench:demo -->\n<!-- /bench:demo -->\n"
    assert tables.rewrite(doc, "demo", "table") == "<!-- bench:demo -->\ntable\n<!-- /bench:demo -->\n"


def test_the_closing_note_puts_old_and_new_numbers_side_by_side() -> None:
    dag = {"ratios": {"dag_vs_plain": 1.8123, "cached": 0.0712}}
    rows = tables.render_closing({"dag": dag}).splitlines()
    assert rows[0] == "| measure | before issue 13 | now (fair benchmark) |"
    dag_row = next(row for row in rows if row.startswith("| DAG / plain script"))
    assert dag_row.endswith("| 1.54× (one run, script first; slower augmentation, lr/10) | 1.81× |")
    assert "| cached re-run / first run (goal ≤ 0.1×) | 0.094× | 0.071× |" in rows
    missing = [row for row in rows if "not measured yet" in row]
    assert len(missing) == len(tables.BEFORE_AND_AFTER) - 2


def test_the_load_peak_during_a_measurement_counts_in_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import common

    seen = iter([0.5, 3.5, 0.6, 0.6, 0.6])  # a neighbour came and went while we measured
    monkeypatch.setattr(common, "load_average", lambda: next(seen, 0.6))
    with common.LoadWatch(interval=0.01) as watch:
        time.sleep(0.1)
    assert watch.peak == 3.5
    runs = {"a": [{"load_before": 0.5, "load_after": 0.6, "load_peak": watch.peak}]}
    assert common.load_range(runs) == {"min": 0.5, "max": 3.5}
    assert common.load_range({"a": [{"load_before": 0.5, "load_after": 0.6}]}) == {"min": 0.5, "max": 0.6}


def test_make_bench_runs_the_benchmark_behind_each_of_its_tables() -> None:
    """Every `make bench` entry names a module with a main(), and the dag tables both come from it."""
    import importlib

    from bench.run_all import BENCHMARKS

    for module, *_ in BENCHMARKS.values():
        assert callable(importlib.import_module(f"bench.{module}").main)
    assert BENCHMARKS["bench_dag_with_edge"] == ("bench_dag", "--edge")


def _run(final: float, epochs: list[tuple[float, float]]) -> dict[str, Any]:
    return {
        "final_accuracy": final,
        "train_seconds": epochs[-1][0],
        "train_images": 20000,
        "epochs": [{"seconds": s, "accuracy": a} for s, a in epochs],
    }


def test_time_to_accuracy_target_is_reached_by_every_round_of_today() -> None:
    """Two rounds of today ending at 91.2% and 90.6%: the target is 90.6%, reached by both."""
    from bench.bench_time_to_accuracy import TODAY, summarise

    measurements = {
        TODAY: [
            _run(0.912, [(100, 0.88), (300, 0.907), (460, 0.912)]),
            _run(0.906, [(110, 0.88), (440, 0.906)]),
        ],
        "fast": [_run(0.908, [(90, 0.89), (190, 0.908)]), _run(0.907, [(95, 0.89), (200, 0.907)])],
        "short": [_run(0.905, [(90, 0.905)]), _run(0.909, [(95, 0.909)])],
    }
    target, table = summarise(measurements, {TODAY: ("training.a=1",), "fast": (), "short": ()})
    assert target == 0.906
    rows = {row["variant"]: row for row in table}
    assert rows[TODAY]["seconds to 90.60%"] == "370.0 (300.0–440.0)"
    assert rows["fast"]["speed-up"] == f"{370 / 195:.2f}×"
    assert rows["short"]["seconds to 90.60%"] == "not reached (1/2)"
    assert rows["short"]["speed-up"] == "–"
    assert summarise(measurements, {TODAY: (), "fast": (), "short": ()}, 0.95)[1][0]["speed-up"] == "–"
