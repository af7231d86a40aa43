"""TFX Trainer ``run_fn``: two-phase EfficientNet transfer learning.

Phase 1 (warm-up) trains only the new head on a frozen backbone; phase 2
(fine-tuning) unfreezes the top of the backbone (BatchNorm kept frozen) at a
learning rate 10× lower. Precision and distribution strategy follow the
hardware; seeds, callbacks and resumable checkpoints make runs repeatable and
interruptible. The exported SavedModel carries the Transform graph and the
signatures in ``components/serving/signatures.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from visiontfx.components.trainer import data, hardware
from visiontfx.components.trainer.autograph import skip_tf_keras_in_autograph
from visiontfx.components.trainer.backbones import resolve_image_size
from visiontfx.components.trainer.model import (
    build_classifier,
    freeze_backbone,
    prior_logits,
    resolve_weights,
    unfreeze_top,
)
from visiontfx.components.transform.augmentation import build_augmentation

HISTORY_FILE = "training_history.json"
BASELINES_FILE = "baselines.json"
WARMUP_DONE = "warmup_done.weights.h5"


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """What run_fn needs from the pipeline config (passed as Trainer custom_config)."""

    model: Mapping[str, Any]
    training: Mapping[str, Any]
    augmentation: Mapping[str, Any]
    top_k: int
    checkpoint_root: str
    class_names: Sequence[str] = ()

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any]) -> TrainerSettings:
        return cls(
            model=custom_config["model"],
            training=custom_config["training"],
            augmentation=custom_config["augmentation"],
            top_k=int(custom_config.get("top_k", 3)),
            checkpoint_root=custom_config.get("checkpoint_root", ""),
            class_names=tuple(custom_config.get("class_names") or ()),
        )

    @property
    def image_size(self) -> int:
        return resolve_image_size(self.model["backbone"], int(self.model.get("image_size", 0)))

    @property
    def finetune_learning_rate(self) -> float:
        return float(self.training["finetune_learning_rate"] or self.training["learning_rate"] / 10.0)


class SparseFocalLoss(tf_keras.losses.Loss):
    """Focal loss on integer labels, with optional label smoothing.

    gamma = 0 reduces to (smoothed) cross-entropy; gamma > 0 down-weights easy
    examples, the handbook's remedy for strong class imbalance.
    """

    def __init__(
        self,
        num_classes: int,
        gamma: float = 0.0,
        label_smoothing: float = 0.0,
        name: str = "sparse_focal_loss",
    ) -> None:
        super().__init__(name=name)
        self.num_classes, self.gamma, self.label_smoothing = num_classes, gamma, label_smoothing

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        labels = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), self.num_classes)
        labels = labels * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        probabilities = tf.clip_by_value(tf.cast(y_pred, tf.float32), 1e-7, 1.0)
        cross_entropy = -labels * tf.math.log(probabilities)
        weight = tf.pow(1.0 - probabilities, self.gamma) if self.gamma else 1.0
        return tf.reduce_sum(weight * cross_entropy, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "gamma": self.gamma,
            "label_smoothing": self.label_smoothing,
            "name": self.name,
        }


def make_loss(num_classes: int, training: Mapping[str, Any]) -> Any:
    gamma, smoothing = float(training["focal_loss_gamma"]), float(training["label_smoothing"])
    if gamma or smoothing:
        return SparseFocalLoss(num_classes, gamma, smoothing)
    return tf_keras.losses.SparseCategoricalCrossentropy()


def class_weights(counts: Sequence[int]) -> dict[int, float]:
    """Inverse-frequency weights normalized to a mean of 1 over present classes."""
    counts_array = np.asarray(counts, dtype=np.float64)
    present = counts_array > 0
    weights = np.zeros_like(counts_array)
    weights[present] = counts_array[present].sum() / (present.sum() * counts_array[present])
    return {index: float(weight) for index, weight in enumerate(weights)}


def baselines(eval_counts: Sequence[int]) -> dict[str, float]:
    """Accuracy of guessing at random and of always answering the majority class."""
    total = float(sum(eval_counts))
    return {
        "random_guess_accuracy": 1.0 / len(eval_counts),
        "majority_class_accuracy": (max(eval_counts) / total) if total else 0.0,
    }


def checkpoint_fingerprint(fn_args: Any, custom_config: Mapping[str, Any]) -> str:
    """Same inputs and config → same checkpoint folder, so a re-run resumes."""
    key = json.dumps(
        {
            "train": list(fn_args.train_files),
            "transform": fn_args.transform_output,
            "config": {k: v for k, v in custom_config.items() if k != "checkpoint_root"},
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class LearningRateLogger(tf_keras.callbacks.Callback):
    """Adds the optimizer's learning rate to each epoch's logs (for the report)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(tf_keras.backend.get_value(self.model.optimizer.learning_rate))


def make_callbacks(
    settings: TrainerSettings, phase: str, log_dir: str, backup_dir: str, steps_per_epoch: int
) -> list[tf_keras.callbacks.Callback]:
    training = settings.training
    return [
        LearningRateLogger(),
        tf_keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=int(training["early_stopping_patience"]),
            restore_best_weights=True,
            verbose=1,
        ),
        tf_keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss",
            factor=0.2,
            patience=int(training["reduce_lr_patience"]),
            min_lr=1e-7,
            verbose=1,
        ),
        tf_keras.callbacks.BackupAndRestore(
            os.path.join(backup_dir, phase),
            save_freq=max(1, steps_per_epoch // 4),
            delete_checkpoint=True,
        ),
        tf_keras.callbacks.ModelCheckpoint(
            os.path.join(log_dir, "checkpoints", f"{phase}-best.weights.h5"),
            monitor="val_loss",
            save_best_only=True,
            save_weights_only=True,
        ),
        tf_keras.callbacks.TensorBoard(log_dir=os.path.join(log_dir, "tensorboard"), update_freq="epoch"),
    ]


def compile_model(model: tf_keras.Model, learning_rate: float, loss: Any, policy: str) -> None:
    optimizer = hardware.scaled_optimizer(tf_keras.optimizers.Adam(learning_rate), policy)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=False)


def _verbosity() -> int:
    return 1 if sys.stdout.isatty() else 2


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point (referenced by name from the pipeline)."""
    skip_tf_keras_in_autograph()
    settings = TrainerSettings.from_custom_config(fn_args.custom_config)
    training = settings.training
    seed = int(training["seed"])
    tf_keras.utils.set_random_seed(seed)

    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    class_names = list(settings.class_names) or data.read_class_names(fn_args.train_files)
    report = data.read_ingestion_report(fn_args.train_files)
    train_counts = data.split_class_counts(report, "train", class_names)
    eval_counts = data.split_class_counts(report, "eval", class_names)
    if not sum(train_counts):  # no report (ImportExampleGen): count the records
        train_counts = [data.count_records(data.list_files(fn_args.train_files))] + [0] * (
            len(class_names) - 1
        )
        eval_counts = [data.count_records(data.list_files(fn_args.eval_files))] + [0] * (len(class_names) - 1)

    strategy_name = hardware.resolve_strategy_name(training["strategy"])
    strategy = hardware.make_strategy(strategy_name)
    policy = hardware.resolve_precision(training["precision"], strategy_name)
    hardware.apply_precision(policy)
    global_batch = int(training["batch_size"]) * strategy.num_replicas_in_sync
    steps_per_epoch = int(training["steps_per_epoch"]) or max(1, sum(train_counts) // global_batch)
    # None: the whole eval split each epoch (it is read once, not repeated).
    eval_steps = int(training["eval_steps"]) or None
    print(
        f"[Trainer] {settings.model['backbone']} @ {settings.image_size}px, {len(class_names)} classes, "
        f"strategy={strategy_name} ({strategy.num_replicas_in_sync} replicas), precision={policy}, "
        f"global batch {global_batch}, {steps_per_epoch} steps/epoch, "
        f"{sum(train_counts)} train / {sum(eval_counts)} eval images",
        flush=True,
    )

    augmentation = build_augmentation(settings.augmentation, seed)
    train_dataset = data.make_dataset(fn_args.train_files, tft_output, global_batch, True, seed, augmentation)
    eval_dataset = data.make_dataset(
        fn_args.eval_files, tft_output, global_batch, False, seed, repeat=bool(eval_steps)
    )
    balanced = bool(training["class_weighting"]) and sum(train_counts) > 0

    backup_dir = os.path.join(
        settings.checkpoint_root or os.path.join(fn_args.model_run_dir, "backup"),
        checkpoint_fingerprint(fn_args, fn_args.custom_config),
    )
    with strategy.scope():
        model, backbone = build_classifier(
            settings.model["backbone"],
            len(class_names),
            settings.image_size,
            settings.model["weights"],
            float(settings.model["dropout"]),
            output_bias=None if balanced else prior_logits(train_counts),
        )
        loss = make_loss(len(class_names), training)

    history: dict[str, Any] = {"phases": [], "epochs": []}
    fit_kwargs = dict(
        x=train_dataset,
        validation_data=eval_dataset,
        steps_per_epoch=steps_per_epoch,
        validation_steps=eval_steps,
        verbose=_verbosity(),
        class_weight=class_weights(train_counts) if balanced else None,
    )

    def fit_phase(name: str, first_epoch: int, last_epoch: int) -> None:
        callbacks = make_callbacks(settings, name, fn_args.model_run_dir, backup_dir, steps_per_epoch)
        result = model.fit(epochs=last_epoch, initial_epoch=first_epoch, callbacks=callbacks, **fit_kwargs)
        epochs_run = len(result.history.get("loss", []))
        history["phases"].append({"name": name, "first_epoch": first_epoch, "epochs": epochs_run})
        for offset in range(epochs_run):
            history["epochs"].append(
                {
                    "epoch": first_epoch + offset,
                    "phase": name,
                    **{k: float(v[offset]) for k, v in result.history.items()},
                }
            )

    warmup_epochs = int(training["warmup_epochs"])
    finetune_epochs = int(training["finetune_epochs"])
    if resolve_weights(settings.model["weights"]) is None:
        # Random init: freezing a random backbone would train a head on noise.
        print("[Trainer] random init: training the whole network in one phase", flush=True)
        with strategy.scope():
            compile_model(model, float(training["learning_rate"]), loss, policy)
        warmup_epochs, finetune_epochs = 0, 0
        fit_phase("scratch", 0, int(training["warmup_epochs"]) + int(training["finetune_epochs"]))
    warmup_marker = os.path.join(backup_dir, WARMUP_DONE)
    if warmup_epochs:
        with strategy.scope():
            freeze_backbone(backbone)
            compile_model(model, float(training["learning_rate"]), loss, policy)
        if tf.io.gfile.exists(warmup_marker):
            print("[Trainer] warm-up already done in an interrupted run: resuming after it", flush=True)
            model.load_weights(warmup_marker)
        else:
            print(f"[Trainer] phase 1/2 warm-up: frozen backbone, {warmup_epochs} epoch(s)", flush=True)
            fit_phase("warmup", 0, warmup_epochs)
            tf.io.gfile.makedirs(backup_dir)
            model.save_weights(warmup_marker)

    if finetune_epochs:
        stages = finetune_epochs if training["gradual_unfreeze"] else 1
        per_stage = finetune_epochs // stages
        for stage in range(stages):
            depth_share = (stage + 1) / stages
            with strategy.scope():
                layers = int(training["unfreeze_layers"])
                trainable = unfreeze_top(
                    backbone,
                    layers if layers < 0 else round(layers * depth_share),
                    float(training["unfreeze_fraction"]) * depth_share,
                )
                compile_model(model, settings.finetune_learning_rate, loss, policy)
            first = warmup_epochs + stage * per_stage
            last = warmup_epochs + finetune_epochs if stage == stages - 1 else first + per_stage
            print(
                f"[Trainer] phase 2/2 fine-tuning (stage {stage + 1}/{stages}): {trainable} backbone "
                f"layers trainable, lr {settings.finetune_learning_rate:g}, epochs {first + 1}-{last}",
                flush=True,
            )
            fit_phase("finetune" if stages == 1 else f"finetune-{stage + 1}", first, last)

    export_model(model, tft_output, class_names, settings.top_k, fn_args.serving_model_dir)
    history["class_names"] = class_names
    history["precision"], history["strategy"] = policy, strategy_name
    history["replicas"], history["global_batch"] = strategy.num_replicas_in_sync, global_batch
    _write_json(os.path.join(fn_args.model_run_dir, HISTORY_FILE), history)
    _write_json(os.path.join(fn_args.model_run_dir, BASELINES_FILE), baselines(eval_counts))
    if tf.io.gfile.exists(backup_dir):
        tf.io.gfile.rmtree(backup_dir)


def export_model(
    model: tf_keras.Model,
    tft_output: tft.TFTransformOutput,
    class_names: Sequence[str],
    top_k: int,
    serving_model_dir: str,
) -> str:
    """Saves the SavedModel; non-chief workers save to a scratch dir (MultiWorker rule)."""
    from visiontfx.components.serving.signatures import build_signatures

    signatures = build_signatures(model, tft_output, class_names, top_k)
    target = serving_model_dir if hardware.is_chief() else tempfile.mkdtemp(prefix="worker_export_")
    model.save(target, save_format="tf", signatures=signatures, include_optimizer=False)
    return target


def _write_json(path: str, payload: Any) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json.dumps(payload, indent=2))
