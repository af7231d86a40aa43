"""Runs every benchmark in turn (`make bench`), then regenerates docs/benchmarks.md's tables.

Each benchmark runs in its own process and writes docs/bench/<name>.json;
``--quick`` runs every one at its smoke-test size instead (results in
bench/results/, the docs untouched).

    .venv/bin/python -m bench.run_all [--quick] [--only bench_dag ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

# name -> the module and its arguments
BENCHMARKS = {
    "bench_example_gen": ("bench_example_gen",),
    "bench_dag": ("bench_dag",),
    "bench_dag_with_edge": ("bench_dag", "--edge"),
    "bench_trainer": ("bench_trainer",),
    "bench_time_to_accuracy": ("bench_time_to_accuracy",),
    "bench_serving": ("bench_serving",),
    "bench_demo": ("bench_demo",),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes; the docs are left alone")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = parser.parse_args(argv)
    failed = []
    for name in args.only:
        print(f"\n## {name}", flush=True)
        module, *arguments = BENCHMARKS[name]
        command = [sys.executable, "-m", f"bench.{module}", *arguments, *(["--quick"] if args.quick else [])]
        if subprocess.run(command, check=False).returncode:
            failed.append(name)
    if not args.quick:
        subprocess.run([sys.executable, "-m", "bench.tables"], check=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
