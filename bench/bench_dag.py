"""Whole-DAG wall time against a plain Keras script doing the same training on the same data.

The plain script picks exactly the images the DAG's ExampleGen picks (same
split plan), preprocesses them the same way in memory and trains the same
model with the same phases; it evaluates on the same test images. A second
DAG run with nothing changed measures the cache. Goals: DAG ≤ 2× the script,
cached re-run ≤ 0.1× the first run.

    .venv/bin/python -m bench.bench_dag [--train 4000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import markdown_table, write_result

REPO = Path(__file__).resolve().parent.parent


def bench_overrides(root: Path, train: int) -> list[str]:
    return [
        f"pipeline.root={root}",
        f"serving.serving_dir={root / 'serving'}",
        "pipeline.name=visiontfx-bench",
        f"data.max_train_images={train}",
        f"data.max_eval_images={train // 4}",
        f"data.max_test_images={train // 2}",
        "training.warmup_epochs=1",
        "training.finetune_epochs=1",
    ]


def plain_keras(overrides: list[str]) -> dict[str, Any]:
    """The same training as the DAG's Trainer, as one in-memory Keras script."""
    import numpy as np
    import tensorflow as tf
    import tf_keras

    from visiontfx.components.image_example_gen import sources
    from visiontfx.components.image_example_gen.decoding import encode_array_as_png
    from visiontfx.components.trainer.autograph import skip_tf_keras_in_autograph
    from visiontfx.components.trainer.model import build_classifier, freeze_backbone, unfreeze_top
    from visiontfx.components.transform.augmentation import build_augmentation
    from visiontfx.components.transform.preprocessing import images_from_bytes
    from visiontfx.pipeline.config import load_config
    from visiontfx.pipeline.dag import example_gen_options

    skip_tf_keras_in_autograph()
    config = load_config(None, overrides)
    options = example_gen_options(config)
    plan = sources.SplitPlan(**options["splits"], use_source_test=True, caps=options["caps"])
    entries = sources.list_source(sources.SourceSpec(kind="fashion_mnist")).entries
    planned = sources.plan_splits(entries, plan)
    size, backbone = config.model.image_size, config.model.backbone

    def arrays(split: str) -> tuple[Any, Any]:
        pngs, labels = [], []
        for entry in planned[split]:
            name, index = entry.locator.split(":")
            pngs.append(encode_array_as_png(sources.load_fashion_mnist_split("", name)[0][int(index)]))
            labels.append(entry.label)
        images = np.concatenate(
            [
                images_from_bytes(tf.constant(pngs[i : i + 512]), size, backbone).numpy()
                for i in range(0, len(pngs), 512)
            ]
        )
        return images, np.asarray(labels)

    tf_keras.utils.set_random_seed(config.training.seed)
    (x_train, y_train), (x_eval, y_eval), (x_test, y_test) = (arrays(s) for s in ("train", "eval", "test"))
    augment = build_augmentation(vars(config.augmentation), config.training.seed)
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(2048)
        .batch(config.training.batch_size)
        .map(lambda x, y: (augment(x, training=True), y))
        .prefetch(2)
    )
    model, features = build_classifier(backbone, 10, size, config.model.weights, config.model.dropout)
    loss = "sparse_categorical_crossentropy"
    freeze_backbone(features)
    model.compile(tf_keras.optimizers.Adam(config.training.learning_rate), loss, ["accuracy"])
    model.fit(train, validation_data=(x_eval, y_eval), epochs=config.training.warmup_epochs, verbose=2)
    unfreeze_top(features, config.training.unfreeze_layers)
    model.compile(tf_keras.optimizers.Adam(config.training.learning_rate / 10), loss, ["accuracy"])
    model.fit(train, validation_data=(x_eval, y_eval), epochs=config.training.finetune_epochs, verbose=2)
    return {"test_accuracy": float(model.evaluate(x_test, y_test, verbose=0)[1])}


def run_dag(overrides: list[str]) -> tuple[float, dict[str, Any]]:
    """One `visiontfx run` in a fresh process (imports included, as a user pays them)."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "visiontfx.pipeline.cli", "run", "--json", *overrides],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 3):
        raise RuntimeError(result.stderr[-3000:])
    import json

    return seconds, json.loads(result.stdout[result.stdout.index("{") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=4000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_dag_"))
    overrides = bench_overrides(root, args.train)

    started = time.perf_counter()
    plain = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import json, sys; from bench.bench_dag import plain_keras; "
                f"print(json.dumps(plain_keras({overrides!r})))"
            ),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    plain_seconds = time.perf_counter() - started
    import json

    plain_result = json.loads(plain.stdout.strip().splitlines()[-1])
    first_seconds, first = run_dag(overrides)
    cached_seconds, cached = run_dag(overrides)
    rows = [
        {
            "run": "plain Keras script (same data, model, phases)",
            "seconds": round(plain_seconds, 1),
            "test accuracy": f"{plain_result['test_accuracy']:.2%}",
            "ratio": 1.0,
        },
        {
            "run": "visiontfx DAG, first run",
            "seconds": round(first_seconds, 1),
            "test accuracy": f"{first['accuracy']:.2%}",
            "ratio": round(first_seconds / plain_seconds, 2),
        },
        {
            "run": "visiontfx DAG, cached re-run",
            "seconds": round(cached_seconds, 1),
            "test accuracy": f"{cached['accuracy']:.2%}",
            "ratio": round(cached_seconds / first_seconds, 3),
        },
    ]
    print(markdown_table(rows))
    write_result(
        "dag",
        {
            "train_images": args.train,
            "rows": rows,
            "goals": {"dag_vs_plain": 2.0, "cached": 0.1},
            "components_cached": list(cached["components"].values()),
            "cpus": os.cpu_count(),
        },
    )


if __name__ == "__main__":
    main()
