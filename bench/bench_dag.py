"""Whole-DAG wall time against a plain Keras script doing the same training on the same data.

The plain script picks exactly the images the DAG's ExampleGen picks (same
split plan), preprocesses them the same way in memory, augments them with the
Trainer's own augmentation (stateless, parallel) and trains the same model
through the Trainer's own phase plan (same learning rates, same frozen
layers); it evaluates on the same test images. Both run in a fresh process and
are timed including their imports. They alternate ABBA over ``--rounds``
rounds; every DAG run starts from an empty pipeline root and is followed by a
second run with nothing changed (the cache). Goals: DAG ≤ 2× the script,
cached re-run ≤ 0.1× the first run.

    .venv/bin/python -m bench.bench_dag [--train 4000] [--rounds 2] [--edge] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    add_common_arguments,
    field,
    load_range,
    markdown_table,
    run_alternating,
    show,
    spread,
    write_result,
)

PLAIN = "plain Keras script (same data, model, phases, augmentation)"
DAG = "visiontfx DAG, first run"
CACHED = "visiontfx DAG, cached re-run"


def bench_overrides(root: Path, train: int, edge: bool = False) -> list[str]:
    return [
        f"pipeline.root={root}",
        f"serving.serving_dir={root / 'serving'}",
        "pipeline.name=visiontfx-bench",
        f"data.max_train_images={train}",
        f"data.max_eval_images={train // 4}",
        f"data.max_test_images={train // 2}",
        "training.warmup_epochs=1",
        "training.finetune_epochs=1",
        # The script exports no TFLite models: same work on both sides. EdgeExport
        # has its own benchmark (bench.bench_edge); ``--edge`` measures the DAG with
        # it, as shipped.
        f"edge.enabled={str(edge).lower()}",
    ]


def plain_keras(overrides: list[str]) -> dict[str, Any]:
    """The same training as the DAG's Trainer, as one in-memory Keras script."""
    import numpy as np
    import tensorflow as tf
    import tf_keras

    from visiontfx.components.image_example_gen import sources
    from visiontfx.components.image_example_gen.decoding import encode_array_as_png
    from visiontfx.components.trainer.augment import make_augmenter
    from visiontfx.components.trainer.autograph import skip_tf_keras_in_autograph
    from visiontfx.components.trainer.losses import make_loss
    from visiontfx.components.trainer.model import build_classifier, prior_logits
    from visiontfx.components.trainer.run import configure_trainable, plan_phases
    from visiontfx.components.trainer.schedule import phase_learning_rate
    from visiontfx.components.transform.preprocessing import images_from_bytes
    from visiontfx.pipeline.config import load_config
    from visiontfx.pipeline.dag import ingest_settings, trainer_settings

    skip_tf_keras_in_autograph()
    config = load_config(None, overrides)
    settings = trainer_settings(config, config.pipeline.root)
    ingest = dataclasses.replace(ingest_settings(config), use_source_test_split=True)
    entries = sources.list_source(sources.SourceSpec(kind="fashion_mnist")).entries
    planned = sources.plan_splits(entries, ingest)
    size, backbone = settings.image_size, config.model.backbone

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

    tf_keras.utils.set_random_seed(settings.seed)
    (x_train, y_train), (x_eval, y_eval), (x_test, y_test) = (arrays(s) for s in ("train", "eval", "test"))
    augment = make_augmenter(settings.augmentation, settings.seed)
    batch = settings.training.batch_size
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(2048, seed=settings.seed)
        .repeat()
        .batch(batch, drop_remainder=True)
        .enumerate()
        .map(lambda index, xy: (augment(xy[0], index), xy[1]), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    counts = np.bincount(y_train, minlength=10)
    model, features = build_classifier(
        backbone, 10, size, config.model.weights, config.model.dropout, prior_logits(counts)
    )
    loss = make_loss(10, settings.training)  # label smoothing as configured
    for phase in plan_phases(settings):
        steps = phase.steps(len(x_train) // batch)
        learning_rate = phase_learning_rate(
            settings.lr_schedule,
            phase.learning_rate,
            (phase.last_epoch - phase.first_epoch) * steps,
            settings.training.lr_warmup_fraction,
        )
        configure_trainable(features, phase)
        model.compile(tf_keras.optimizers.Adam(learning_rate), loss, ["accuracy"])
        model.fit(
            train,
            validation_data=(x_eval, y_eval),
            steps_per_epoch=steps,
            epochs=phase.last_epoch,
            initial_epoch=phase.first_epoch,
            verbose=2,
        )
    return {"test_accuracy": float(model.evaluate(x_test, y_test, verbose=0)[1])}


def component_rows(runs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Where the DAG's first run spends its time: one row per component, slowest first."""
    names = {name for run in runs for name in run.get("component_seconds", {})}
    seconds = {name: spread([run["component_seconds"].get(name, 0.0) for run in runs], 1) for name in names}
    slowest = sorted(names, key=lambda name: -seconds[name]["median"])
    return [
        {"run": f"… of which {name}", "seconds": show(seconds[name]), "test accuracy": "", "ratio": ""}
        for name in slowest
    ]


def run_plain(overrides: list[str]) -> dict[str, Any]:
    """The plain script in a fresh process (imports included, as for the DAG)."""
    code = (
        f"import json; from bench.bench_dag import plain_keras; print(json.dumps(plain_keras({overrides!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_dag(overrides: list[str]) -> tuple[float, dict[str, Any]]:
    """One `visiontfx run` in a fresh process (imports included, as a user pays them)."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "visiontfx.tools.cli", "run", "--json", *overrides],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 3):
        raise RuntimeError(result.stderr[-3000:])
    return seconds, json.loads(result.stdout[result.stdout.index("{") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument(
        "--edge", action="store_true", help="the DAG with EdgeExport, as shipped (results: dag_with_edge)"
    )
    add_common_arguments(parser, rounds=2)
    args = parser.parse_args()
    if args.quick:
        args.train, args.rounds = 300, 1
    work = Path(tempfile.mkdtemp(prefix="bench_dag_"))
    roots = itertools.count()

    def plain() -> dict[str, Any]:
        return run_plain(bench_overrides(work / "plain", args.train))  # never exports TFLite

    def dag() -> dict[str, Any]:
        root = work / f"dag_{next(roots)}"  # empty root: nothing cached
        overrides = bench_overrides(root, args.train, args.edge)
        first_seconds, first = run_dag(overrides)
        cached_seconds, cached = run_dag(overrides)
        return {
            "first_seconds": round(first_seconds, 2),
            "test_accuracy": first["accuracy"],
            "cached_seconds": round(cached_seconds, 2),
            "cached_components": sorted(set(cached["components"].values())),
            "component_seconds": first.get("component_seconds", {}),
        }

    measurements = run_alternating({PLAIN: plain, DAG: dag}, args.rounds)
    plain_seconds = spread(field(measurements[PLAIN], "seconds"), 1)
    first = spread(field(measurements[DAG], "first_seconds"), 1)
    cached = spread(field(measurements[DAG], "cached_seconds"), 1)
    ratios = {
        "dag_vs_plain": first["median"] / plain_seconds["median"],
        "cached": cached["median"] / first["median"],
    }

    def accuracy(runs: list[dict[str, Any]]) -> str:
        return show(spread([100 * a for a in field(runs, "test_accuracy")]), 2, "%")

    table = [
        {
            "run": PLAIN,
            "seconds": show(plain_seconds),
            "test accuracy": accuracy(measurements[PLAIN]),
            "ratio": "1.0",
        },
        {
            "run": DAG,
            "seconds": show(first),
            "test accuracy": accuracy(measurements[DAG]),
            "ratio": f"{ratios['dag_vs_plain']:.2f} (goal ≤ 2)",
        },
        *component_rows(measurements[DAG]),
        {
            "run": CACHED,
            "seconds": show(cached),
            "test accuracy": "",
            "ratio": f"{ratios['cached']:.3f} (goal ≤ 0.1)",
        },
    ]
    print(markdown_table(table))
    write_result(
        "dag_with_edge" if args.edge else "dag",
        {
            "train_images": args.train,
            "rounds": args.rounds,
            "goals": {"dag_vs_plain": 2.0, "cached": 0.1},
            "ratios": {k: round(v, 3) for k, v in ratios.items()},
            "met": {"dag_vs_plain": ratios["dag_vs_plain"] <= 2.0, "cached": ratios["cached"] <= 0.1},
            "load_average": load_range(measurements),
            "measurements": measurements,
            "table": table,
        },
        args.quick,
    )


if __name__ == "__main__":
    main()
