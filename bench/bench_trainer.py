"""Trainer benchmarks on real Fashion-MNIST with EfficientNet-Lite0, all measured in one run.

- Transfer gain: pretrained Lite0 (ImageNet weights, warm-up then fine-tuning)
  against the same network from random initialization, equal budget (same
  epochs, steps and images), test accuracy on held-out Fashion-MNIST test
  images. Goal ≥ +5 points.
- Trainer throughput: the Trainer's training (its callbacks, resumable
  backups, TensorBoard, progress) against a plain ``model.fit`` of the same
  model on the same input pipeline. Every epoch is timed, the first (tracing,
  and the Trainer's first backup) included; the backups taken are counted.
  Goal ≥ 0.97×.
- Input pipeline under contention: the warm-up (the fastest consumer) fed by
  the real tf.data pipeline against the same model fed one batch from memory,
  both through ``fit`` on the same two cores, so the pipeline's competition
  for them shows. Goal ≥ 0.9×. The pipeline's and the model's rates measured
  apart are kept as detail.
- Determinism: ``training.deterministic: true`` (op determinism, ordered
  tf.data) against the default, the Trainer's throughput as above.

Every comparison alternates its two sides ABBA over ``--rounds`` rounds.

    .venv/bin/python -m bench.bench_trainer [--train-images 3000] [--rounds 4] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from bench.common import (
    add_common_arguments,
    field,
    load_range,
    markdown_table,
    peak_rss_mb,
    run_alternating,
    show,
    spread,
    write_result,
)

# isort: split
import tensorflow as tf
import tf_keras

from visiontfx.components.trainer import callbacks as trainer_callbacks
from visiontfx.components.trainer import data, hardware
from visiontfx.components.trainer.augment import make_augmenter
from visiontfx.components.trainer.autograph import skip_tf_keras_in_autograph
from visiontfx.components.trainer.losses import make_loss
from visiontfx.components.trainer.run import (
    TrainingSetup,
    build_model,
    compile_model,
    configure_trainable,
    plan_phases,
    prepare,
    train_phases,
)
from visiontfx.components.trainer.settings import TrainerSettings
from visiontfx.pipeline.config import Config, load_config
from visiontfx.pipeline.dag import trainer_settings
from visiontfx.tools.lr_find import run_until_transform

TINY_CONFIG = Path(__file__).resolve().parent.parent / "pipeline" / "configs" / "tiny.yaml"
GOALS = {"transfer_gain_points": 5.0, "trainer_vs_fit": 0.97, "pipeline_under_contention": 0.9}
# Fine-tuning the whole backbone against no backward pass through the stem and blocks 1-2.
UNFREEZE_DEPTHS = {"fine-tuning the whole backbone": -1, "fine-tuning from block 3": 106}
BACKUPS = {"count": 0, "seconds": 0.0}  # the Trainer's mid-epoch backups while measuring


def count_backups() -> None:
    """Counts and times every backup the Trainer's BudgetedBackupAndRestore takes."""
    original = trainer_callbacks.BudgetedBackupAndRestore._backup

    def timed_backup(self: Any, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        original(self, *args, **kwargs)
        BACKUPS["count"] += 1
        BACKUPS["seconds"] += time.perf_counter() - started

    trainer_callbacks.BudgetedBackupAndRestore._backup = timed_backup


def make_config(work: Path, args: argparse.Namespace) -> Config:
    return load_config(
        TINY_CONFIG,
        [
            "pipeline.name=bench-trainer",
            f"pipeline.root={work}",
            f"serving.serving_dir={work / 'serving'}",
            f"data.max_train_images={args.train_images}",
            f"data.max_eval_images={args.eval_images}",
            f"data.max_test_images={args.test_images}",
            "data.num_shards=4",
            "model.backbone=efficientnet_lite0",
            "model.weights=imagenet",
            f"model.image_size={args.image_size}",
            f"training.batch_size={args.batch_size}",
            "training.learning_rate=0.001",
            "training.unfreeze_layers=40",
            "training.early_stopping_patience=3",
        ],
    )


class EpochTimer(tf_keras.callbacks.Callback):
    """Wall and CPU time of each epoch (training, validation and every callback).

    CPU time of this process barely moves when other processes load the
    machine, so it backs up the wall-clock comparison on a shared box.
    """

    def __init__(self) -> None:
        super().__init__()
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._started = (0.0, 0.0)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._started = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.wall.append(time.perf_counter() - self._started[0])
        self.cpu.append(time.process_time() - self._started[1])


class Bench:
    """The shared inputs: one partial pipeline run (ExampleGen → Transform), many trainings."""

    def __init__(self, config: Config, examples: str, transform_graph: str, work: Path) -> None:
        self.config, self.work = config, work
        self.fn_args = types.SimpleNamespace(
            train_files=[data.split_pattern(examples, "train")],
            eval_files=[data.split_pattern(examples, "eval")],
            transform_output=transform_graph,
        )
        self.test_files = [data.split_pattern(examples, "test")]

    def settings(self, *overrides: str) -> TrainerSettings:
        return trainer_settings(self.config.replace(list(overrides)), str(self.work))

    def setup(self, *overrides: str) -> TrainingSetup:
        return prepare(self.fn_args, self.settings(*overrides))

    # -- input pipeline headroom ------------------------------------------------

    def pipeline_rate(self, augmentation: str, batches: int, repeats: int = 3) -> float:
        """Images/s the training dataset delivers with nothing else running (median of ``repeats``).

        ``augmentation``: "trainer" (the stateless per-batch augmentation the Trainer
        uses), "none", or "keras layers" (the preprocessing-layer stack in a parallel
        map — not reproducible, shown for comparison).
        """
        setup = self.setup()
        settings = setup.settings
        augment = {
            "trainer": make_augmenter(settings.augmentation, settings.seed),
            "none": None,
            "keras layers": self._keras_augmentation(settings),
        }[augmentation]
        rates = []
        for _ in range(repeats):
            dataset = data.make_dataset(
                self.fn_args.train_files,
                setup.tft_output,
                setup.global_batch,
                True,
                settings.seed,
                augment,
                ordered=settings.deterministic,  # as the Trainer reads it
            )
            iterator = iter(dataset)
            for _ in range(5):  # warm-up: tracing, autotune, shuffle buffer
                next(iterator)
            started = time.perf_counter()
            for _ in range(batches):
                next(iterator)
            rates.append(batches * setup.global_batch / (time.perf_counter() - started))
        return statistics.median(rates)

    @staticmethod
    def _keras_augmentation(settings: TrainerSettings) -> Any:
        """The comparison only: Keras' preprocessing layers drawing what the Trainer's augmenter draws."""
        options = settings.augmentation
        layers = tf_keras.Sequential(
            [
                tf_keras.layers.RandomFlip("horizontal", seed=settings.seed),
                tf_keras.layers.RandomRotation(options.rotation, fill_mode="nearest", seed=settings.seed),
                tf_keras.layers.RandomZoom(options.zoom, fill_mode="nearest", seed=settings.seed),
                tf_keras.layers.RandomTranslation(
                    options.height_shift, options.width_shift, fill_mode="nearest", seed=settings.seed
                ),
            ]
        )
        return lambda images, index: layers(images, training=True)

    def model_rate(
        self, phase_name: str, steps: int, from_memory: bool = True, overrides: tuple[str, ...] = ()
    ) -> dict[str, float]:
        """Images/s the model trains at in ``phase_name``, fed one batch held in memory (no input
        cost) or the real input pipeline; the second epoch (after tracing) is timed."""
        setup = self.setup("training.finetune_epochs=1", *overrides)
        model = self._model_for(setup, phase_name)
        inputs = setup.train_dataset
        if from_memory:
            inputs = tf.data.Dataset.from_tensors(next(iter(setup.train_dataset))).repeat()
        timer = EpochTimer()
        model.fit(inputs, steps_per_epoch=steps, epochs=2, verbose=0, callbacks=[timer])
        images = steps * setup.global_batch
        return {"images_per_s": images / timer.wall[-1], "images_per_cpu_s": images / timer.cpu[-1]}

    @staticmethod
    def _model_for(setup: TrainingSetup, phase_name: str) -> tf_keras.Model:
        """The Trainer's model, compiled and frozen as in one of its phases."""
        model, backbone = build_model(setup)
        phase = next(p for p in plan_phases(setup.settings) if p.name == phase_name)
        configure_trainable(backbone, phase)
        loss = make_loss(len(setup.class_names), setup.settings.training)
        compile_model(model, phase.learning_rate, loss, setup.policy)
        return model

    # -- Trainer against plain fit ------------------------------------------------

    def trainer_rate(self, epochs: int, steps: int, *overrides: str) -> dict[str, float]:
        """The Trainer's own phase loop, with every callback and backup it writes."""
        from tensorflow.python.framework import config as tf_config

        setup = self.setup(*self._throughput_overrides(epochs, steps), *overrides)
        model, backbone = build_model(setup)
        timer = EpochTimer()
        backup = tempfile.mkdtemp(prefix="backup_", dir=self.work)
        backups_before = dict(BACKUPS)
        try:
            train_phases(setup, model, backbone, str(self.work / "trainer_run"), backup, [timer])
        finally:
            tf_config.disable_op_determinism()  # process-wide: the next measurement starts as the default
        return {
            **self._rate(timer, setup),
            "backups": BACKUPS["count"] - backups_before["count"],
            "backup_seconds": round(BACKUPS["seconds"] - backups_before["seconds"], 2),
        }

    def plain_fit_rate(self, epochs: int, steps: int) -> dict[str, float]:
        setup = self.setup(*self._throughput_overrides(epochs, steps))
        model = self._model_for(setup, "warmup")
        timer = EpochTimer()
        model.fit(
            setup.train_dataset,
            validation_data=setup.eval_dataset,
            steps_per_epoch=setup.steps_per_epoch,
            validation_steps=setup.eval_steps,
            epochs=epochs,
            verbose=2,  # the Trainer prints one line per epoch too
            callbacks=[timer],
        )
        return self._rate(timer, setup)

    @staticmethod
    def _throughput_overrides(epochs: int, steps: int) -> tuple[str, ...]:
        # One long warm-up phase; early stopping must not cut either run short.
        return (
            f"training.warmup_epochs={epochs}",
            "training.finetune_epochs=0",
            f"training.steps_per_epoch={steps}",
            f"training.early_stopping_patience={epochs}",
            f"training.reduce_lr_patience={epochs}",
        )

    @staticmethod
    def _rate(timer: EpochTimer, setup: TrainingSetup) -> dict[str, float]:
        """Images per wall second and per CPU second over every epoch, the first (tracing) included."""
        images = setup.steps_per_epoch * setup.global_batch * len(timer.wall)
        return {
            "images_per_s": images / sum(timer.wall),
            "images_per_cpu_s": images / sum(timer.cpu),
            "training_seconds": round(sum(timer.wall), 2),
        }

    # -- transfer gain --------------------------------------------------------------

    def accuracy(self, pretrained: bool, epochs: int) -> dict[str, float]:
        """Test accuracy after the Trainer's training for ``epochs`` epochs: pretrained
        (1 warm-up epoch, then fine-tuning) or from random init (all epochs on the whole network)."""
        if pretrained:
            overrides = (
                "model.weights=imagenet",
                "training.warmup_epochs=1",
                f"training.finetune_epochs={epochs - 1}",
            )
        else:
            overrides = (
                "model.weights=none",
                f"training.warmup_epochs={epochs}",
                "training.finetune_epochs=0",
            )
        started = time.perf_counter()
        setup = self.setup(*overrides)
        model, backbone = build_model(setup)
        train_phases(setup, model, backbone, str(self.work / f"run_{overrides[0]}"), None)
        minutes = (time.perf_counter() - started) / 60
        test = data.make_dataset(self.test_files, setup.tft_output, 256, False, 0)
        accuracy = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
        return {"accuracy": round(100 * accuracy, 2), "minutes": round(minutes, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=3000)
    parser.add_argument("--eval-images", type=int, default=500)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=48)  # the demo's
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="transfer gain: budget of each run")
    parser.add_argument("--steps", type=int, default=100, help="throughput: steps per epoch (4 epochs)")
    parser.add_argument("--work", help="working folder (default: a new temporary one)")
    add_common_arguments(parser, rounds=4)
    args = parser.parse_args()
    if args.quick:
        args.train_images, args.eval_images, args.test_images = 640, 128, 256
        args.epochs, args.steps, args.rounds = 2, 4, 1
    os.environ["VISIONTFX_QUIET"] = "1"

    skip_tf_keras_in_autograph()
    count_backups()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_trainer_")).resolve()
    started = time.perf_counter()
    config = make_config(work, args)
    bench = Bench(config, *run_until_transform(config), work)
    seconds = {"inputs (ExampleGen → Transform)": round(time.perf_counter() - started, 1)}
    batches = max(10, args.steps)

    with hardware.restoring_precision_policy():
        mark = time.perf_counter()
        apart = {kind: bench.pipeline_rate(kind, batches) for kind in ("trainer", "none", "keras layers")}
        apart.update(
            {
                f"model {phase}": bench.model_rate(phase, batches)["images_per_s"]
                for phase in ("warmup", "finetune")
            }
        )
        contention = run_alternating(
            {
                "fed from memory": lambda: bench.model_rate("warmup", batches, from_memory=True),
                "fed by the input pipeline": lambda: bench.model_rate("warmup", batches, from_memory=False),
            },
            args.rounds,
        )
        depth = run_alternating(
            {
                name: lambda layers=layers: bench.model_rate(
                    "finetune", batches, overrides=(f"training.unfreeze_layers={layers}",)
                )
                for name, layers in UNFREEZE_DEPTHS.items()
            },
            args.rounds,
        )
        throughput = run_alternating(
            {
                "Trainer": lambda: bench.trainer_rate(4, args.steps),
                "plain model.fit": lambda: bench.plain_fit_rate(4, args.steps),
                "Trainer, deterministic": lambda: bench.trainer_rate(
                    4, args.steps, "training.deterministic=true"
                ),
            },
            args.rounds,
        )
        seconds["throughput"] = round(time.perf_counter() - mark, 1)

        mark = time.perf_counter()
        pretrained = bench.accuracy(True, args.epochs)
        scratch = bench.accuracy(False, args.epochs)
        seconds["transfer"] = round(time.perf_counter() - mark, 1)

    def rate(runs: list[dict[str, Any]], key: str = "images_per_s") -> dict[str, float]:
        return spread(field(runs, key), 1)

    trainer, fit, determinism = (
        rate(throughput[k]) for k in ("Trainer", "plain model.fit", "Trainer, deterministic")
    )
    memory, fed = rate(contention["fed from memory"]), rate(contention["fed by the input pipeline"])
    results = {
        "transfer_gain_points": round(pretrained["accuracy"] - scratch["accuracy"], 2),
        "trainer_vs_fit": round(trainer["median"] / fit["median"], 3),
        "trainer_vs_fit_cpu": round(
            rate(throughput["Trainer"], "images_per_cpu_s")["median"]
            / rate(throughput["plain model.fit"], "images_per_cpu_s")["median"],
            3,
        ),
        "pipeline_under_contention": round(fed["median"] / memory["median"], 3),
        "deterministic_vs_default": round(determinism["median"] / trainer["median"], 3),
    }
    whole, upper = (depth[name] for name in UNFREEZE_DEPTHS)
    results["from_block_3_vs_whole_cpu"] = round(
        rate(upper, "images_per_cpu_s")["median"] / rate(whole, "images_per_cpu_s")["median"], 3
    )
    backups = field(throughput["Trainer"], "backups")
    backup_seconds = field(throughput["Trainer"], "backup_seconds")
    table = [
        {
            "measure": "transfer gain (test accuracy points)",
            "result": f"{results['transfer_gain_points']:+.2f}",
            "goal": f"≥ +{GOALS['transfer_gain_points']:g}",
            "detail": f"pretrained {pretrained['accuracy']}% vs random init {scratch['accuracy']}%; "
            f"{args.epochs} epochs of {args.train_images:,} images, {args.test_images:,} test images, "
            "one run each",
        },
        {
            "measure": "Trainer / plain model.fit (images/s, every epoch timed)",
            "result": f"{results['trainer_vs_fit']:.3f}×",
            "goal": f"≥ {GOALS['trainer_vs_fit']}×",
            "detail": f"{show(trainer)} vs {show(fit)} images/s; "
            f"per CPU second {results['trainer_vs_fit_cpu']:.3f}×; "
            f"4 epochs × {args.steps} steps of the warm-up; the Trainer took {sum(backups):.0f} backups "
            f"({sum(backup_seconds):.1f} s) over {len(backups)} runs",
        },
        {
            "measure": "warm-up fed by the input pipeline / fed from memory",
            "result": f"{results['pipeline_under_contention']:.3f}×",
            "goal": f"≥ {GOALS['pipeline_under_contention']}×",
            "detail": f"{show(fed)} vs {show(memory)} images/s on the same cores; measured apart: pipeline "
            f"{apart['trainer']:.0f} images/s (no augmentation {apart['none']:.0f}, Keras layers "
            f"{apart['keras layers']:.0f}), model {apart['model warmup']:.0f} warm-up / "
            f"{apart['model finetune']:.0f} fine-tuning",
        },
        {
            "measure": "training.deterministic: true / default (Trainer images/s)",
            "result": f"{results['deterministic_vs_default']:.3f}×",
            "goal": "cost measured",
            "detail": f"{show(determinism)} vs {show(trainer)} images/s",
        },
    ]
    table.append(
        {
            "measure": "fine-tuning from block 3 / the whole backbone (images per CPU second)",
            "result": f"{results['from_block_3_vs_whole_cpu']:.2f}×",
            "goal": "lever of issue 13",
            "detail": f"{show(rate(upper, 'images_per_cpu_s'))} vs {show(rate(whole, 'images_per_cpu_s'))}; "
            f"wall {show(rate(upper))} vs {show(rate(whole))} images/s; model fed from memory",
        }
    )
    print(markdown_table(table))
    measurements = {**contention, **depth, **throughput}
    write_result(
        "trainer",
        {
            "results": results,
            "goals": GOALS,
            "met": {key: results[key] >= GOALS[key] for key in GOALS},
            "rounds": args.rounds,
            "load_average": load_range(measurements),
            "transfer": {"pretrained": pretrained, "scratch": scratch, "epochs": args.epochs},
            "measured_apart_images_per_s": apart,
            "measurements": measurements,
            "seconds": {**seconds, "total": round(time.perf_counter() - started, 1)},
            "settings": vars(args),
            "peak_rss_mb": peak_rss_mb(),
            "table": table,
        },
        args.quick,
    )


if __name__ == "__main__":
    main()
