"""Runs every benchmark in turn (`make bench`); each prints its table and writes bench/results/*.json."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ("bench_example_gen", "bench_dag", "bench_trainer", "bench_serving")


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n## {name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
