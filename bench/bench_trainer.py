"""Trainer benchmarks on real Fashion-MNIST with EfficientNet-Lite0, all measured in one run.

- Transfer gain: pretrained Lite0 (ImageNet weights, warm-up then fine-tuning)
  against the same network from random initialization, equal budget (same
  epochs, steps and images), test accuracy on held-out Fashion-MNIST test
  images. Goal ≥ +5 points.
- Trainer throughput: the Trainer's training (its callbacks, resumable
  checkpoints, TensorBoard, progress) against a plain ``model.fit`` of the
  same model on the same data. Goal ≥ 0.97×.
- Input pipeline headroom: images/s the tf.data pipeline (parse, Transform
  graph, augmentation) delivers alone against images/s the model consumes
  from memory, in the warm-up (frozen backbone: the fastest consumer) and
  fine-tuning. Goal ≥ 5×. The pipeline is also measured without augmentation
  and with the Keras preprocessing layers instead of the Trainer's stateless
  augmentation.

    .venv/bin/python -m bench.bench_trainer [--train-images 3000] [--image-size 64] [--epochs 3]
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

from bench.common import markdown_table, peak_rss_mb, write_result

# isort: split
import tensorflow as tf
import tf_keras

from visiontfx.components.trainer import data, hardware
from visiontfx.components.trainer.augment import make_augmenter
from visiontfx.components.trainer.autograph import skip_tf_keras_in_autograph
from visiontfx.components.trainer.lr_finder import run_until_transform
from visiontfx.components.trainer.run import (
    TrainerSettings,
    TrainingSetup,
    build_model,
    compile_model,
    configure_trainable,
    make_loss,
    plan_phases,
    prepare,
    train_phases,
)
from visiontfx.components.transform.augmentation import build_augmentation
from visiontfx.pipeline.config import Config, load_config
from visiontfx.pipeline.dag import trainer_custom_config

TINY_CONFIG = Path(__file__).resolve().parent.parent / "pipeline" / "configs" / "tiny.yaml"
GOALS = {"transfer_gain_points": 5.0, "trainer_vs_fit": 0.97, "pipeline_headroom": 5.0}


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
        return TrainerSettings.from_custom_config(
            trainer_custom_config(self.config.replace(list(overrides)), str(self.work))
        )

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
                self.fn_args.train_files, setup.tft_output, setup.global_batch, True, settings.seed, augment
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
        layers = build_augmentation(settings.augmentation, settings.seed)
        return lambda images, index: layers(images, training=True)

    def model_rate(self, phase_name: str, steps: int) -> float:
        """Images/s the model trains at on one batch held in memory (no input cost)."""
        setup = self.setup("training.finetune_epochs=1")
        model = self._model_for(setup, phase_name)
        batch = next(iter(setup.train_dataset))
        timer = EpochTimer()
        model.fit(
            tf.data.Dataset.from_tensors(batch).repeat(),
            steps_per_epoch=steps,
            epochs=2,
            verbose=0,
            callbacks=[timer],
        )
        return steps * setup.global_batch / timer.wall[-1]

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

    def trainer_rate(self, epochs: int, steps: int) -> dict[str, float]:
        """The Trainer's own phase loop, with every callback and checkpoint it writes."""
        setup = self.setup(*self._throughput_overrides(epochs, steps))
        model, backbone = build_model(setup)
        timer = EpochTimer()
        backup = tempfile.mkdtemp(prefix="backup_", dir=self.work)
        train_phases(setup, model, backbone, str(self.work / "trainer_run"), backup, [timer])
        return self._rate(timer, setup)

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
        """Steady state, images per wall second and per CPU second; the first epoch (tracing) is left out."""
        images = setup.steps_per_epoch * setup.global_batch * (len(timer.wall) - 1)
        return {"wall": images / sum(timer.wall[1:]), "cpu": images / sum(timer.cpu[1:])}

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
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="transfer gain: budget of each run")
    parser.add_argument("--steps", type=int, default=25, help="throughput: steps per epoch")
    parser.add_argument("--rounds", type=int, default=4, help="throughput: alternating measurements")
    parser.add_argument("--work", help="working folder (default: a new temporary one)")
    args = parser.parse_args()
    os.environ["VISIONTFX_QUIET"] = "1"

    skip_tf_keras_in_autograph()
    load_before = os.getloadavg()  # the ratios are only as good as the machine is quiet
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_trainer_")).resolve()
    started = time.perf_counter()
    config = make_config(work, args)
    bench = Bench(config, *run_until_transform(config), work)
    seconds = {"inputs (ExampleGen → Transform)": round(time.perf_counter() - started, 1)}

    with hardware.restoring_precision_policy():
        mark = time.perf_counter()
        pipeline = {kind: bench.pipeline_rate(kind, 60) for kind in ("trainer", "none", "keras layers")}
        model = {phase: bench.model_rate(phase, 30) for phase in ("warmup", "finetune")}
        seconds["headroom"] = round(time.perf_counter() - mark, 1)

        mark = time.perf_counter()
        trainer_rates, fit_rates = [], []
        for round_index in range(args.rounds):
            # Alternate which goes first (ABBA): the second run of a pair was measurably
            # favoured, and the machine's load drifts; both effects must hit both alike.
            pair = [(trainer_rates, bench.trainer_rate), (fit_rates, bench.plain_fit_rate)]
            for rates, measure in pair if round_index % 2 == 0 else reversed(pair):
                rates.append(measure(4, args.steps))
        seconds["throughput"] = round(time.perf_counter() - mark, 1)

        mark = time.perf_counter()
        pretrained = bench.accuracy(True, args.epochs)
        scratch = bench.accuracy(False, args.epochs)
        seconds["transfer"] = round(time.perf_counter() - mark, 1)

    trainer, fit = (statistics.median(r["wall"] for r in rates) for rates in (trainer_rates, fit_rates))
    trainer_cpu, fit_cpu = (
        statistics.median(r["cpu"] for r in rates) for rates in (trainer_rates, fit_rates)
    )
    results = {
        "transfer_gain_points": round(pretrained["accuracy"] - scratch["accuracy"], 2),
        "trainer_vs_fit": round(trainer / fit, 3),
        "trainer_vs_fit_cpu": round(trainer_cpu / fit_cpu, 3),
        "pipeline_headroom": round(pipeline["trainer"] / model["warmup"], 2),
    }
    rows = [
        {
            "measure": "transfer gain (test accuracy points)",
            "value": results["transfer_gain_points"],
            "goal": f"≥ {GOALS['transfer_gain_points']}",
            "detail": f"pretrained {pretrained['accuracy']}% ({pretrained['minutes']} min) vs random init "
            f"{scratch['accuracy']}% ({scratch['minutes']} min); {args.epochs} epochs of "
            f"{args.train_images} images, {args.test_images} test images",
        },
        {
            "measure": "Trainer / plain model.fit (images/s)",
            "value": results["trainer_vs_fit"],
            "goal": f"≥ {GOALS['trainer_vs_fit']}",
            "detail": f"{trainer:.0f} vs {fit:.0f} images/s (medians of {args.rounds}; warm-up phase, "
            f"{args.steps} steps/epoch, first epoch excluded); per CPU second "
            f"{trainer_cpu:.0f} vs {fit_cpu:.0f} ({trainer_cpu / fit_cpu:.3f}×)",
        },
        {
            "measure": "input pipeline headroom",
            "value": results["pipeline_headroom"],
            "goal": f"≥ {GOALS['pipeline_headroom']}",
            "detail": f"pipeline {pipeline['trainer']:.0f} images/s (no augmentation {pipeline['none']:.0f}; "
            f"Keras layers {pipeline['keras layers']:.0f}) vs model {model['warmup']:.0f} images/s in the "
            f"warm-up, {model['finetune']:.0f} fine-tuning ({pipeline['trainer'] / model['finetune']:.1f}×)",
        },
    ]
    print(markdown_table(rows))
    path = write_result(
        "trainer",
        {
            "results": results,
            "goals": GOALS,
            "met": {key: results[key] >= GOALS[key] for key in GOALS},
            "load_average": {"before": load_before, "after": os.getloadavg()},
            "transfer": {"pretrained": pretrained, "scratch": scratch, "epochs": args.epochs},
            "throughput_images_per_s": {"trainer": trainer_rates, "plain_fit": fit_rates},
            "pipeline_images_per_s": pipeline,
            "model_images_per_s": model,
            "seconds": {**seconds, "total": round(time.perf_counter() - started, 1)},
            "settings": vars(args),
            "cpus": os.cpu_count(),
            "peak_rss_mb": peak_rss_mb(),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
