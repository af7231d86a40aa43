"""ImageExampleGen throughput against a single-process TFRecordWriter loop doing the same work.

Both read the same PNG files, check/convert them with the same rules and write
GZIP tf.Examples; the baseline in one Python loop, ImageExampleGen on Beam
(direct runner, in-memory and multi-processing). Goal: ≥ 1.5× the baseline.

    .venv/bin/python -m bench.bench_example_gen [--images 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.common import markdown_table, timed, write_result


def write_png_folder(root: Path, count: int) -> Path:
    """``count`` real Fashion-MNIST training images as PNG files, one folder per class."""
    from visiontfx.components.image_example_gen import sources
    from visiontfx.components.image_example_gen.decoding import encode_array_as_png

    images, labels = sources.load_fashion_mnist_split("", "train")
    for index in range(count):
        folder = root / sources.FASHION_MNIST_CLASSES[labels[index]].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:05d}.png").write_bytes(encode_array_as_png(images[index]))
    return root


def baseline_loop(data_dir: Path, output: Path) -> int:
    import tensorflow as tf

    from visiontfx.components.image_example_gen import sources
    from visiontfx.components.image_example_gen.decoding import ingest_image_bytes
    from visiontfx.components.image_example_gen.executor import make_example

    classes, entries, _ = sources.list_image_folder(data_dir)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(output), options) as writer:
        for entry in entries:
            image = ingest_image_bytes(Path(entry.locator).read_bytes())
            writer.write(make_example(entry, image, classes).SerializeToString())
    return len(entries)


def run_executor(data_dir: Path, output: Path, beam_args: list[str]) -> dict[str, Any]:
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import standard_artifacts

    from visiontfx.components.image_example_gen.executor import REPORT_FILE, Executor
    from visiontfx.pipeline.config import from_dict
    from visiontfx.pipeline.dag import example_gen_options

    config = from_dict({"data": {"source": "folder", "path": str(data_dir), "num_shards": 4}})
    examples = standard_artifacts.Examples()
    examples.uri = str(output)
    context = BaseBeamExecutor.Context(beam_pipeline_args=beam_args, tmp_dir=tempfile.mkdtemp())
    Executor(context).Do(
        {},
        {"examples": [examples]},
        {
            "source": "folder",
            "input_base": str(data_dir),
            "options": json.dumps(example_gen_options(config)),
        },
    )
    return json.loads((output / REPORT_FILE).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    args = parser.parse_args()
    os.environ["VISIONTFX_QUIET"] = "1"
    work = Path(tempfile.mkdtemp(prefix="bench_example_gen_"))
    data_dir = write_png_folder(work / "images", args.images)
    times: dict[str, float] = {}
    with timed(times, "baseline"):
        count = baseline_loop(data_dir, work / "baseline.tfrecord.gz")
    variants = {
        "beam in_memory": [],
        "beam multi_processing x2": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    }
    rows = [
        {
            "method": "single-process TFRecordWriter loop",
            "seconds": times["baseline"],
            "images/s": round(count / times["baseline"]),
            "ratio": 1.0,
        }
    ]
    for name, beam_args in variants.items():
        with timed(times, name):
            report = run_executor(data_dir, work / name.replace(" ", "_"), beam_args)
        assert report["ingested"] == count, report["ingested"]
        rows.append(
            {
                "method": f"ImageExampleGen ({name})",
                "seconds": times[name],
                "images/s": round(count / times[name]),
                "ratio": round(times["baseline"] / times[name], 2),
            }
        )
    print(markdown_table(rows))
    write_result("example_gen", {"images": count, "rows": rows, "goal_ratio": 1.5, "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
