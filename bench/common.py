"""Shared helpers for the benchmarks: fair timing, spread, load average and result files.

Fairness rules every benchmark follows (see docs/benchmarks.md):

- both sides do the same work and pay their imports outside the timer;
- the variants alternate ABBA over several rounds (:func:`run_alternating`),
  so warm caches and drifting load hit every variant alike;
- each measurement keeps the 1-minute load average before and after it, and its peak during it;
- results are the median with min and max, and the raw numbers are kept.

Full runs write ``docs/bench/<name>.json`` (committed; ``bench.tables``
generates the tables in docs/benchmarks.md from them); ``--quick`` runs
(smoke tests) write ``bench/results/<name>.json``, which git ignores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import visiontfx  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "docs" / "bench"
QUICK_RESULTS_DIR = Path(__file__).resolve().parent / "results"

Measure = Callable[[], Mapping[str, Any]]


def add_common_arguments(parser: argparse.ArgumentParser, rounds: int) -> None:
    parser.add_argument("--quick", action="store_true", help="smoke-test size; results are not committed")
    parser.add_argument("--rounds", type=int, default=rounds, help="alternating rounds (ABBA order)")


def load_average() -> float:
    """The 1-minute load average: the benchmarks are only as good as the machine is quiet."""
    return round(os.getloadavg()[0], 2)


class LoadWatch:
    """The highest 1-minute load average seen while a measurement runs (sampled every few
    seconds in a thread): before and after alone miss a neighbour that came and went."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self.peak = load_average()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, load_average())

    def __enter__(self) -> LoadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, load_average())


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


def alternating_orders(names: Sequence[str], rounds: int) -> list[list[str]]:
    """ABBA: forward in even rounds, reversed in odd ones (A B C, C B A, A B C, ...)."""
    return [list(names) if index % 2 == 0 else list(reversed(names)) for index in range(rounds)]


def run_alternating(variants: Mapping[str, Measure], rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Every variant once per round, in ABBA order; each measurement timed with its load average.

    A variant returns a mapping of its own measurements (accuracy, counts...);
    ``seconds`` (wall time of the call), ``round``, ``position`` and
    ``load_before``/``load_after``/``load_peak`` are added.
    """
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for round_index, order in enumerate(alternating_orders(list(variants), rounds)):
        for position, name in enumerate(order):
            before = load_average()
            with LoadWatch() as watch:
                started = time.perf_counter()
                measured = dict(variants[name]())
                seconds = time.perf_counter() - started
            results[name].append(
                {
                    "seconds": round(seconds, 3),
                    **measured,
                    "round": round_index,
                    "position": position,
                    "load_before": before,
                    "load_after": load_average(),
                    "load_peak": watch.peak,
                }
            )
            print(f"[bench] round {round_index + 1}/{rounds} {name}: {seconds:.2f} s", flush=True)
    return results


def spread(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    """Median, min and max of ``values``."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
    }


def field(measurements: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [float(m[key]) for m in measurements]


def show(summary: Mapping[str, float], digits: int = 1, unit: str = "") -> str:
    """'12.3 (11.9–13.0)': median and range, for a table cell."""
    median, low, high = (f"{summary[k]:,.{digits}f}" for k in ("median", "min", "max"))
    return f"{median}{unit} ({low}–{high})" if summary["n"] > 1 else f"{median}{unit}"


def load_range(measurements: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, float]:
    """Lowest and highest load average seen before, during or after any measurement."""
    keys = ("load_before", "load_after", "load_peak")
    loads = [m[k] for runs in measurements.values() for m in runs for k in keys if k in m]
    return {"min": min(loads), "max": max(loads)}


def write_result(name: str, payload: Mapping[str, Any], quick: bool) -> Path:
    """``payload`` plus date, machine and size; ``quick`` results go where git does not look."""
    folder = QUICK_RESULTS_DIR if quick else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    record = {
        "benchmark": name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "quick": quick,
        **payload,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"[bench] wrote {path}", flush=True)
    return path


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(row.get(h, "")) for h in headers) + " |" for row in rows]
    return "\n".join(lines)
