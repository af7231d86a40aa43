"""Regenerates the tables of docs/benchmarks.md from the committed results in docs/bench/*.json.

Each table sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``;
only those sections are rewritten, the prose around them is left alone. A
section whose JSON is missing keeps its old content.

    .venv/bin/python -m bench.tables
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from bench.common import RESULTS_DIR, markdown_table

DOC = RESULTS_DIR.parent / "benchmarks.md"
CLOSING = "closing"  # the before/after note, built from several results


def _time_to_accuracy(result: Mapping[str, Any]) -> str:
    rows = [row for row in result["table"] if row["variant"].startswith("levers")]
    return "; ".join(f"{row['variant']}: {row['speed-up']}" for row in rows)


def _demo(result: Mapping[str, Any]) -> str:
    runs = "; ".join(f"{row['test accuracy']} in {row['wall']}" for row in result["table"])
    overrides = result.get("overrides") or []
    return runs + (f" (demo.yaml with {', '.join(overrides)})" if overrides else "")


# (measure, before issue 13, result file, how to read the new number from it)
BEFORE_AND_AFTER: list[tuple[str, str, str, Callable[[Mapping[str, Any]], str]]] = [
    (
        "ImageExampleGen / TFRecordWriter loop",
        "2.45× (one run; the loop paid TFX's imports)",
        "example_gen",
        lambda r: f"{r['ratio']:.2f}×",
    ),
    (
        "DAG / plain script (goal ≤ 2×)",
        "1.54× (one run, script first; slower augmentation, lr/10)",
        "dag",
        lambda r: f"{r['ratios']['dag_vs_plain']:.2f}×",
    ),
    ("cached re-run / first run (goal ≤ 0.1×)", "0.094×", "dag", lambda r: f"{r['ratios']['cached']:.3f}×"),
    (
        "the same two with EdgeExport in the DAG",
        "–",
        "dag_with_edge",
        lambda r: f"{r['ratios']['dag_vs_plain']:.2f}×; cached {r['ratios']['cached']:.3f}×",
    ),
    (
        "Trainer / plain fit (goal ≥ 0.97×)",
        "1.033× (first epoch and backups not timed)",
        "trainer",
        lambda r: f"{r['results']['trainer_vs_fit']:.3f}×",
    ),
    (
        "input pipeline",
        "6.75× headroom (pipeline and model timed apart)",
        "trainer",
        lambda r: f"{r['results']['pipeline_under_contention']:.3f}× (fed by it / from memory, same cores)",
    ),
    (
        "training.deterministic / default",
        "not measured",
        "trainer",
        lambda r: f"{r['results']['deterministic_vs_default']:.3f}×",
    ),
    (
        "time to today's accuracy (goal ≥ 1.5× faster)",
        "1 + 3 epochs; ~331 s of demo pipeline",
        "time_to_accuracy",
        _time_to_accuracy,
    ),
    ("demo: test accuracy, wall (goal ≥ 92%, < 10 min)", "89.49%, 89.74%, 90.35%; 331 s", "demo", _demo),
]


def render_closing(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Old and new numbers side by side; "not measured yet" where a result file is missing."""
    rows = []
    for measure, before, name, read in BEFORE_AND_AFTER:
        result = results.get(name)
        now = read(result) if result else "not measured yet (`make bench`)"
        if result and result.get("quick"):
            now += " (--quick)"
        rows.append({"measure": measure, "before issue 13": before, "now (fair benchmark)": now})
    return markdown_table(rows)


def render(result: Mapping[str, Any], source: str) -> str:
    """The markdown of one benchmark: a provenance line, then its ``table`` rows."""
    load = result.get("load_average", {})
    load_text = f", load average {load['min']}–{load['max']}" if load else ""
    count = result.get("rounds", 0)
    rounds = f", {count} alternating rounds" if count > 1 else ", one round" if count == 1 else ""
    spread = "; median (min–max)" if count > 1 else ""
    quick = " (--quick size: a smoke test, not a measurement)" if result.get("quick") else ""
    overrides = result.get("overrides") or []
    changed = f" Config overrides: `{' '.join(overrides)}`." if overrides else ""
    provenance = (
        f"_Generated from [{source}]({source}) — measured {result['date'][:10]} on "
        f"{result['machine']['cpus']} CPUs{rounds}{load_text}{spread}{quick}.{changed}_"
    )
    return f"{provenance}\n\n{markdown_table(result['table'])}"


def section_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- bench:{re.escape(name)} -->)\n.*?\n?(<!-- /bench:{re.escape(name)} -->)", re.S)


def rewrite(doc: str, name: str, body: str) -> str:
    """``doc`` with the section of ``name`` replaced by ``body``; fails if the markers are absent."""
    pattern = section_pattern(name)
    if not pattern.search(doc):
        raise ValueError(
            f"docs/benchmarks.md has no <!-- bench:{name} --> ... <!-- /bench:{name} --> section"
        )
    return pattern.sub(lambda match: f"{match.group(1)}\n{body}\n{match.group(2)}", doc, count=1)


def update_doc(doc_path: Path = DOC, results_dir: Path = RESULTS_DIR) -> list[str]:
    """Rewrites every section that has a result file; returns the names rewritten."""
    doc = doc_path.read_text()
    done = []
    results = {}
    for path in sorted(results_dir.glob("*.json")):
        results[path.stem] = result = json.loads(path.read_text())
        source = path.relative_to(doc_path.parent).as_posix()
        doc = rewrite(doc, path.stem, render(result, source))
        done.append(path.stem)
    if section_pattern(CLOSING).search(doc):
        doc = rewrite(doc, CLOSING, render_closing(results))
    doc_path.write_text(doc)
    return done


def main() -> int:
    names = update_doc()
    print(f"[bench] regenerated {DOC.name} tables: {', '.join(names) or 'none (no results yet)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
