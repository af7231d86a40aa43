"""ImageExampleGen throughput against a single-process TFRecordWriter loop doing the same work.

Both read the same PNG files, check/convert them with the same rules and write
GZIP tf.Examples; the baseline in one Python loop, ImageExampleGen on Beam
(direct runner, in-memory; multi-processing on request). Goal: ≥ 1.5× the baseline.
Everything both sides import is imported, and every file read once, before the
first timer starts; the variants then alternate ABBA over ``--rounds`` rounds.

    .venv/bin/python -m bench.bench_example_gen [--images 3000] [--rounds 4] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    add_common_arguments,
    field,
    load_range,
    markdown_table,
    run_alternating,
    show,
    spread,
    write_result,
)

LOOP = "single-process TFRecordWriter loop"


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


def import_everything() -> None:
    """Every module either side needs, imported before anything is timed."""
    import apache_beam  # noqa: F401
    import tensorflow  # noqa: F401
    from tfx.dsl.components.base import base_beam_executor  # noqa: F401

    from visiontfx.components.image_example_gen import executor  # noqa: F401
    from visiontfx.pipeline import dag  # noqa: F401


def baseline_loop(data_dir: Path, output: Path) -> int:
    """The same reading, checking and conversion as ImageExampleGen, in one Python loop."""
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
    from visiontfx.pipeline.dag import ingest_settings

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
            "options": ingest_settings(config).to_json(),
        },
    )
    return json.loads((output / REPORT_FILE).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument(
        "--multiprocessing", action="store_true", help="also Beam multi_processing ×2 (slow on 2 cores)"
    )
    parser.add_argument("--name", default="example_gen", help="result file name")
    add_common_arguments(parser, rounds=4)
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds = 300, 2
    os.environ["VISIONTFX_QUIET"] = "1"
    work = Path(tempfile.mkdtemp(prefix="bench_example_gen_"))
    data_dir = write_png_folder(work / "images", args.images)
    import_everything()  # outside every timer: both sides start with warm imports
    for path in data_dir.rglob("*.png"):  # and with the files in the page cache
        path.read_bytes()

    outputs = itertools.count()

    def loop() -> dict[str, Any]:
        return {"images": baseline_loop(data_dir, work / f"loop_{next(outputs)}.tfrecord.gz")}

    def beam(beam_args: list[str]) -> Any:
        def measure() -> dict[str, Any]:
            return {"images": run_executor(data_dir, work / f"beam_{next(outputs)}", beam_args)["ingested"]}

        return measure

    variants = {LOOP: loop, "ImageExampleGen (Beam in_memory)": beam([])}
    if args.multiprocessing:
        variants["ImageExampleGen (Beam multi_processing ×2)"] = beam(
            ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
        )
    measurements = run_alternating(variants, args.rounds)
    for name, runs in measurements.items():
        assert {run["images"] for run in runs} == {args.images}, (name, runs)
    baseline = spread(field(measurements[LOOP], "seconds"))
    table = []
    for name, runs in measurements.items():
        seconds = spread(field(runs, "seconds"))
        table.append(
            {
                "method": name,
                "seconds": show(seconds),
                "images/s": f"{args.images / seconds['median']:,.0f}",
                "ratio (median seconds)": f"{baseline['median'] / seconds['median']:.2f}",
            }
        )
    print(markdown_table(table))
    ratio = (
        baseline["median"]
        / spread(field(measurements["ImageExampleGen (Beam in_memory)"], "seconds"))["median"]
    )
    write_result(
        args.name,
        {
            "images": args.images,
            "rounds": args.rounds,
            "goal": {"ratio": 1.5, "met": ratio >= 1.5},
            "ratio": round(ratio, 2),
            "load_average": load_range(measurements),
            "measurements": measurements,
            "table": table,
        },
        args.quick,
    )


if __name__ == "__main__":
    main()
