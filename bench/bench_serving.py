"""Serving benchmark: the local server over REST and gRPC against the in-process model call.

    .venv/bin/python -m bench.bench_serving [--model-dir <SavedModel> --examples '<Split-test/*>'] [--quick]

Without ``--model-dir`` it first runs the tiny pipeline (pipeline/configs/tiny.yaml,
a few minutes) and serves its model on its real test images.

The model is pushed with the real Pusher into a temporary serving directory and
served by ``visiontfx serve --backend local`` in its own process (so client and
server do not share a GIL), on loopback ports. Measured, in one run:

- the in-process ``serving_default`` call (the floor: no HTTP, JSON or gRPC);
- single-image and 32-image requests, sequentially, over REST and gRPC:
  latency p50/p99 and images per second;
- a bounded concurrency run: 16 clients × 200 single-image requests per API,
  which must finish with zero errors.

The three paths alternate ABBA over ``--rounds`` rounds (latencies pooled, the
load average kept per measurement). Prints a markdown table and writes
``docs/bench/serving.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from typing import Any, Callable, Sequence

from bench.common import REPO, add_common_arguments, load_range, run_alternating, write_result

MODEL_NAME = "bench"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(call: Callable[[], Any], requests: int, warmup: int) -> list[float]:
    """Seconds per call, after ``warmup`` unmeasured calls."""
    for _ in range(warmup):
        call()
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return latencies


def summarize(
    name: str, batch: int, latencies: Sequence[float], wall: float | None = None, **extra: Any
) -> dict:
    wall = wall if wall is not None else sum(latencies)
    return {
        "path": name,
        "batch": batch,
        "requests": len(latencies),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * percentile(latencies, 99), 2),
        "requests_per_s": round(len(latencies) / wall, 1),
        "images_per_s": round(batch * len(latencies) / wall, 1),
        **extra,
    }


def load_images(examples: str, count: int) -> list[bytes]:
    """Real images from a TFRecord glob of tf.Examples, else generated PNGs."""
    if examples:
        from visiontfx.components.serving.signatures import read_example_images

        images = read_example_images([examples], count)
        if images:
            return (images * (count // len(images) + 1))[:count]
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def start_server(serving_dir: str) -> tuple[subprocess.Popen, int, int]:
    """``visiontfx serve --backend local`` in a child process; returns it and its REST/gRPC ports."""
    command = [
        sys.executable, "-m", "visiontfx.tools.serving.commands", "--backend", "local",
        "--serving-dir", serving_dir, "--model-name", MODEL_NAME, "--rest-port", "0", "--grpc-port", "0",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline() if process.stdout else ""
        if match := re.search(r"REST http://[\d.]+:(\d+)\s+gRPC [\d.]+:(\d+)", line):
            return process, int(match.group(1)), int(match.group(2))
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("the local server did not start")


def concurrency_run(make_client: Callable[[], Any], image: bytes, clients: int, per_client: int) -> dict:
    """``clients`` threads, each with its own connection, ``per_client`` sequential requests each."""

    def worker() -> tuple[list[float], int]:
        latencies, errors = [], 0
        with make_client() as client:
            for _ in range(per_client):
                started = time.perf_counter()
                try:
                    client.predict([image])
                except Exception:  # counted, not raised: the run reports how many failed
                    errors += 1
                latencies.append(time.perf_counter() - started)
        return latencies, errors

    started = time.perf_counter()
    with futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: worker(), range(clients)))
    wall = time.perf_counter() - started
    latencies = [value for values, _ in results for value in values]
    return {"latencies": latencies, "wall": wall, "errors": sum(errors for _, errors in results)}


def tiny_pipeline_model(work: str) -> tuple[str, str]:
    """(SavedModel dir, test-split glob) of a fresh tiny pipeline run."""
    from visiontfx.pipeline import metadata
    from visiontfx.pipeline.config import load_config
    from visiontfx.pipeline.local_runner import run_pipeline

    tiny = REPO / "pipeline" / "configs" / "tiny.yaml"
    config = load_config(tiny, [f"pipeline.root={work}", f"serving.serving_dir={work}/serving"])
    print("[bench] no --model-dir: training the tiny pipeline's model first", flush=True)
    result = run_pipeline(config)
    run = metadata.load_run(result["metadata_path"], config.pipeline.name)
    model_dir = os.path.join(run.uri("Trainer", "model"), "Format-Serving")
    return model_dir, os.path.join(run.uri("ImageExampleGen", "examples"), "Split-test", "*")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="", help="a SavedModel with the project's signatures")
    parser.add_argument("--examples", default="", help="TFRecord glob of tf.Examples for real images")
    parser.add_argument("--requests", type=int, default=200, help="sequential single-image requests per API")
    parser.add_argument("--batch-requests", type=int, default=50, help="sequential 32-image requests per API")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=200)
    add_common_arguments(parser, rounds=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.batch_requests, args.clients, args.per_client = 20, 5, 4, 20
    os.environ["VISIONTFX_QUIET"] = "1"

    import tensorflow as tf

    from visiontfx.components.pusher.executor import PushSettings, push_model
    from visiontfx.tools.serving.client import ServingClient

    work = tempfile.mkdtemp(prefix="visiontfx-bench-")
    if not args.model_dir:
        args.model_dir, args.examples = tiny_pipeline_model(os.path.join(work, "tiny"))
    images = load_images(args.examples, 32)
    serving_dir = os.path.join(work, "serving")
    version_dir = push_model(
        args.model_dir,
        os.path.join(serving_dir, MODEL_NAME),
        PushSettings(MODEL_NAME),
        warmup_images=images[:8],
    )
    process, rest_port, grpc_port = start_server(serving_dir)
    sequential = ((1, args.requests), (32, args.batch_requests))
    try:
        function = tf.saved_model.load(version_dir).signatures["serving_default"]
        makers: dict[str, Callable[[], ServingClient]] = {
            "REST": lambda: ServingClient(url=f"http://127.0.0.1:{rest_port}", model=MODEL_NAME),
            "gRPC": lambda: ServingClient(grpc_target=f"127.0.0.1:{grpc_port}", model=MODEL_NAME),
        }

        def in_process() -> dict[str, Any]:
            return {
                str(batch): measure(lambda t=tf.constant(images[:batch]): function(image_bytes=t), count, 10)
                for batch, count in sequential
            }

        def over(api: str) -> Callable[[], dict[str, Any]]:
            def run() -> dict[str, Any]:
                with makers[api]() as client:
                    return {
                        str(batch): measure(lambda b=batch, c=client: c.predict(images[:b]), count, 10)
                        for batch, count in sequential
                    }

            return run

        def concurrent(api: str) -> Callable[[], dict[str, Any]]:
            return lambda: concurrency_run(makers[api], images[0], args.clients, args.per_client)

        latencies = run_alternating(
            {"in-process": in_process, "REST": over("REST"), "gRPC": over("gRPC")}, args.rounds
        )
        concurrency = run_alternating(
            {f"{api}, {args.clients} clients × {args.per_client}": concurrent(api) for api in makers},
            args.rounds,
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    rows: list[dict] = []
    for path, runs in latencies.items():
        for batch, _ in sequential:
            pooled = [value for run in runs for value in run[str(batch)]]
            rows.append(summarize(path, batch, pooled))
    for label, runs in concurrency.items():
        pooled = [value for run in runs for value in run["latencies"]]
        wall = sum(run["wall"] for run in runs)
        rows.append(summarize(label, 1, pooled, wall, errors=sum(run["errors"] for run in runs)))
    table = [
        {
            "path": row["path"],
            "batch": row["batch"],
            "requests": row["requests"],
            "p50 ms": row["p50_ms"],
            "p99 ms": row["p99_ms"],
            "requests/s": row["requests_per_s"],
            "images/s": row["images_per_s"],
            "errors": row.get("errors", ""),
        }
        for row in rows
    ]
    print(markdown_table(rows))
    write_result(
        "serving",
        {
            "tensorflow": tf.__version__,
            "model_dir": os.path.abspath(args.model_dir),
            "image_bytes_mean": round(sum(map(len, images)) / len(images)),
            "server": "visiontfx local server (one process, no server-side batching), loopback",
            "rounds": args.rounds,
            "load_average": load_range({**latencies, **concurrency}),
            "results": rows,
            "table": table,
        },
        args.quick,
    )
    errors = sum(row.get("errors", 0) for row in rows)
    return 1 if errors else 0


def markdown_table(rows: Sequence[dict]) -> str:
    lines = [
        "| path | batch | requests | p50 ms | p99 ms | requests/s | images/s | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['path']} | {row['batch']} | {row['requests']} | {row['p50_ms']} | {row['p99_ms']} | "
            f"{row['requests_per_s']} | {row['images_per_s']} | {row.get('errors', '')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
