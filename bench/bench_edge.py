"""Edge benchmark: a pushed version's TFLite models against its SavedModel, one image at a time.

    .venv/bin/python -m bench.bench_edge --version-dir serving_model/<name>/<version> [--runs 200]

For the SavedModel (``serving_default`` on the encoded bytes, in process), and for
each TFLite model (TensorFlow's interpreter, on decoded pixels, 1 thread and all
threads): size on disk, single-image latency p50/p90, and the parity EdgeExport
recorded on the test split. Goals (issue 14): float16 within 0.3 accuracy points,
int8 within 1.5. Prints a markdown table and writes ``bench/results/edge.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from bench.common import markdown_table, write_result


def _latency(call: Callable[[], Any], runs: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 3),
        "p90_ms": round(times[int(0.9 * (len(times) - 1))], 3),
    }


def _folder_kb(folder: Path) -> float:
    files = [p for p in folder.rglob("*") if p.is_file() and "assets.extra" not in p.parts]
    return round(sum(p.stat().st_size for p in files) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version-dir", required=True, help="a version the Pusher wrote")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    import tensorflow as tf

    from visiontfx.components.edge_export.tflite_model import TFLiteClassifier
    from visiontfx.components.transform.preprocessing import decode_and_resize
    from visiontfx.contracts import edge

    version = Path(args.version_dir)
    folder = version / edge.PUSHED_EDGE_DIR
    parity = json.loads((folder / edge.PARITY_FILE).read_text())
    warmup_dir = version / "assets.extra" / "warmup_images"
    image = next(p for p in sorted(warmup_dir.iterdir())).read_bytes()
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    rows = [
        {
            "model": "SavedModel (bytes in)",
            "size kB": _folder_kb(version),
            "threads": "all",
            **_latency(lambda: served(image_bytes=tf.constant([image])), args.runs),
            "test accuracy": f"{parity['savedmodel_accuracy']:.2%}",
            "drop (points)": "",
        }
    ]
    for variant in edge.VARIANTS:
        result = parity["variants"][variant]
        for threads in (1, os.cpu_count()):
            model = TFLiteClassifier(str(folder / edge.MODEL_FILES[variant]), num_threads=threads)
            pixels = decode_and_resize(tf.constant(image), model.image_size).numpy()
            rows.append(
                {
                    "model": f"TFLite {variant} (pixels in)",
                    "size kB": round(model.size_bytes / 1024, 1),
                    "threads": threads,
                    **_latency(lambda model=model, pixels=pixels: model.probabilities(pixels), args.runs),
                    "test accuracy": f"{result['accuracy']:.2%}",
                    "drop (points)": f"{result['drop_points']:+.2f} (goal ≤ {result['max_drop_points']:g})",
                }
            )
    where = f"parity on {parity['images']} {parity['split']} images"
    print(f"{parity['backbone']} @ {parity['image_size']} px, {where}")
    print(markdown_table(rows))
    write_result("edge", {"version": str(version), "parity": parity, "rows": rows})


if __name__ == "__main__":
    main()
