"""TFX Trainer ``run_fn``: two-phase EfficientNet transfer learning.

Phase 1 (warm-up) trains only the new head on a frozen backbone; phase 2
(fine-tuning) unfreezes the top of the backbone (BatchNorm kept frozen) at a
learning rate 10× lower, optionally in stages (gradual unfreezing). A randomly
initialized network trains whole, in one phase. Precision and distribution
strategy follow the hardware; seeds, per-batch seeded augmentation, callbacks and
resumable checkpoints make runs repeatable and interruptible. The exported
SavedModel carries the Transform graph and the signatures in
``components/serving/signatures.py``.

The pieces (:func:`prepare`, :func:`build_model`, :func:`plan_phases`,
:func:`train_phases`) are shared with the learning-rate finder and the Tuner,
so they train exactly the model the Trainer would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from visiontfx.components.trainer import data, hardware
from visiontfx.components.trainer.augment import make_augmenter
from visiontfx.components.trainer.autograph import skip_tf_keras_in_autograph
from visiontfx.components.trainer.model import (
    build_classifier,
    freeze_backbone,
    prior_logits,
    resolve_weights,
    unfreeze_top,
)
from visiontfx.components.trainer.schedule import PhaseSchedule, phase_learning_rate
from visiontfx.contracts.artifacts import BASELINES_FILE, HISTORY_FILE
from visiontfx.contracts.backbones import resolve_image_size

# Next to a phase's BackupAndRestore folder once the phase has finished: its
# weights and history, so a re-run skips it instead of training it again.
PHASE_DONE = "{phase}.done"

# Hyperparameters the Tuner may set, and the config section each one lives in.
TUNABLE = {
    "learning_rate": "training",
    "finetune_learning_rate": "training",
    "unfreeze_layers": "training",
    "unfreeze_fraction": "training",
    "dropout": "model",
}


# --------------------------------------------------------------------------
# Settings


def hyperparameter_values(hyperparameters: Any) -> dict[str, Any]:
    """The chosen values from what TFX passes as ``fn_args.hyperparameters``.

    That is a KerasTuner ``HyperParameters.get_config()`` dict (values under
    ``values``); a HyperParameters object or a plain mapping also work.
    """
    if not hyperparameters:
        return {}
    if hasattr(hyperparameters, "values") and not isinstance(hyperparameters, Mapping):
        return dict(hyperparameters.values)
    if isinstance(hyperparameters.get("values"), Mapping):
        return dict(hyperparameters["values"])
    return dict(hyperparameters)


def apply_hyperparameters(custom_config: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the Trainer's custom_config with tuned values in their sections."""
    unknown = sorted(set(values) - set(TUNABLE))
    if unknown:
        raise ValueError(f"Unknown hyperparameters {unknown}; tunable: {sorted(TUNABLE)}")
    result = {
        key: dict(value) if isinstance(value, Mapping) else value for key, value in custom_config.items()
    }
    for name, value in values.items():
        result[TUNABLE[name]][name] = value
    return result


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
    def from_custom_config(
        cls, custom_config: Mapping[str, Any], hyperparameters: Any = None
    ) -> TrainerSettings:
        config = apply_hyperparameters(custom_config, hyperparameter_values(hyperparameters))
        return cls(
            model=config["model"],
            training=config["training"],
            augmentation=config["augmentation"],
            top_k=int(config.get("top_k", 3)),
            checkpoint_root=config.get("checkpoint_root", ""),
            class_names=tuple(config.get("class_names") or ()),
        )

    def as_custom_config(self) -> dict[str, Any]:
        return {
            "model": dict(self.model),
            "training": dict(self.training),
            "augmentation": dict(self.augmentation),
            "top_k": self.top_k,
            "checkpoint_root": self.checkpoint_root,
            "class_names": list(self.class_names),
        }

    @property
    def image_size(self) -> int:
        return resolve_image_size(self.model["backbone"], int(self.model.get("image_size", 0)))

    @property
    def learning_rate(self) -> float:
        return float(self.training["learning_rate"])

    @property
    def finetune_learning_rate(self) -> float:
        return float(self.training["finetune_learning_rate"] or self.learning_rate / 10.0)

    @property
    def seed(self) -> int:
        return int(self.training["seed"])

    @property
    def deterministic(self) -> bool:
        """Identical re-runs: op determinism and tf.data in order (the default trades them for speed)."""
        return bool(self.training.get("deterministic", False))

    @property
    def lr_schedule(self) -> str:
        return str(self.training["lr_schedule"])

    @property
    def pretrained(self) -> bool:
        return resolve_weights(self.model["weights"]) is not None


# --------------------------------------------------------------------------
# Losses, class balance, baselines


class SparseFocalLoss(tf_keras.losses.Loss):
    """Focal loss on integer labels, with optional label smoothing.

    gamma = 0 reduces to (smoothed) cross-entropy; gamma > 0 down-weights easy
    examples by (1 - p)^gamma, the handbook's remedy for strong class imbalance.
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


def make_loss(num_classes: int, training: Mapping[str, Any]) -> tf_keras.losses.Loss:
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


def transform_graph_uri(fn_args: Any) -> str:
    """The Transform graph of FnArgs (the Tuner sets only the newer name, the Trainer both)."""
    return getattr(fn_args, "transform_graph_path", None) or fn_args.transform_output


def checkpoint_fingerprint(fn_args: Any, custom_config: Mapping[str, Any]) -> str:
    """Same inputs and config → same checkpoint folder, so a re-run resumes."""
    key = json.dumps(
        {
            "train": list(fn_args.train_files),
            "transform": transform_graph_uri(fn_args),
            "config": {k: v for k, v in custom_config.items() if k != "checkpoint_root"},
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------
# Callbacks


class ResumeLogger(tf_keras.callbacks.Callback):
    """Reports where fit() really starts: after BackupAndRestore, a resumed run starts late.

    It must come after BackupAndRestore in the callback list; the first
    epoch/batch hooks then see the restored counters.
    """

    def __init__(self, phase: str, initial_epoch: int, record: dict[str, Any]) -> None:
        super().__init__()
        self.phase, self.initial_epoch, self.record = phase, initial_epoch, record
        self._epoch: int | None = None
        self._checked = False
        self._supports_tf_logs = True  # it reads no logs: spare Keras converting them every step

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._epoch is None:
            self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._checked:
            return
        self._checked = True
        epoch = int(self.initial_epoch if self._epoch is None else self._epoch)
        batch = int(batch)  # Keras passes numpy integers
        if (epoch, batch) != (self.initial_epoch, 0):
            self.record.update({"phase": self.phase, "epoch": epoch, "step": batch})
            print(
                f"[Trainer] {self.phase}: resuming from a checkpoint at epoch {epoch + 1}, step {batch}",
                flush=True,
            )


class BudgetedBackupAndRestore(tf_keras.callbacks.BackupAndRestore):
    """BackupAndRestore that keeps checkpointing to about ``budget`` of the training time.

    A fixed step interval is either too rare for long steps or, for a quick
    head-only warm-up, a real cost: four backups per epoch of Lite0 and its
    Adam state slowed the warm-up markedly here. This one takes its first
    backup after ``first_after_steps`` steps, then waits ``cost / budget``
    seconds after each backup (a 0.3 s backup → the next after 60 s at 0.5%:
    a kill loses about a minute, the run pays half a percent).
    The resume logic is Keras' own (mid-epoch: ``save_freq`` is an int).

    Under MultiWorkerMirroredStrategy every worker must back up at the same
    step (saving is collective); timing differs per worker, so there a fixed
    interval of ``first_after_steps`` steps is kept.
    """

    def __init__(
        self, backup_dir: str, first_after_steps: int, budget: float = 0.005, timed: bool = True
    ) -> None:
        super().__init__(backup_dir, save_freq=first_after_steps, delete_checkpoint=True)
        self.first_after_steps, self.budget, self.timed = first_after_steps, budget, timed
        self._steps_seen = 0
        self._next_backup: float | None = None

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.timed:
            super().on_train_batch_end(batch, logs)
            return
        # tf_keras 2.16 internals (the parent's own hook does the same two calls).
        self._training_state.backup_if_preempted()
        self._steps_seen += 1
        if self._next_backup is None:
            due = self._steps_seen >= self.first_after_steps
        else:
            due = time.monotonic() >= self._next_backup
        if due:
            started = time.monotonic()
            self._backup(epoch=self._current_epoch, batch=batch)
            cost = time.monotonic() - started
            self._next_backup = time.monotonic() + cost / self.budget


class LearningRateLogger(tf_keras.callbacks.Callback):
    """Adds the optimizer's learning rate to each epoch's logs (for the report)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(tf_keras.backend.get_value(self.model.optimizer.learning_rate))


def make_callbacks(
    settings: TrainerSettings,
    phase: str,
    log_dir: str,
    backup_dir: str | None,
    steps_per_epoch: int,
) -> list[tf_keras.callbacks.Callback]:
    """The callbacks of one phase; without ``backup_dir`` nothing is written (tuning trials).

    No ModelCheckpoint of the best weights: EarlyStopping already puts them
    back into the model that is exported, BackupAndRestore covers resuming,
    and writing every improvement cost time (17 MB per epoch for Lite0).
    """
    training = settings.training
    callbacks: list[tf_keras.callbacks.Callback] = [
        LearningRateLogger(),
        tf_keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=int(training["early_stopping_patience"]),
            restore_best_weights=True,
            verbose=1,
        ),
    ]
    if settings.lr_schedule == "plateau":  # a scheduled rate is not the callback's to change
        callbacks.append(
            tf_keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=0.2,
                patience=int(training["reduce_lr_patience"]),
                min_lr=1e-7,
                verbose=1,
            )
        )
    if backup_dir is None:
        return callbacks
    return [
        *callbacks,
        BudgetedBackupAndRestore(
            os.path.join(backup_dir, phase),
            first_after_steps=max(1, steps_per_epoch // 4),
            timed=hardware.cluster_workers(hardware.tf_config()) <= 1,
        ),
        tf_keras.callbacks.TensorBoard(log_dir=os.path.join(log_dir, "tensorboard"), update_freq="epoch"),
    ]


def compile_model(
    model: tf_keras.Model, learning_rate: float | PhaseSchedule, loss: Any, policy: str
) -> None:
    optimizer = hardware.scaled_optimizer(tf_keras.optimizers.Adam(learning_rate), policy)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=False)


def _verbosity() -> int:
    return 1 if sys.stdout.isatty() else 2


# --------------------------------------------------------------------------
# Inputs and model


@dataclasses.dataclass
class TrainingSetup:
    """Everything decided before the first step: data, counts, strategy, precision, batches."""

    settings: TrainerSettings
    strategy: tf.distribute.Strategy
    strategy_name: str
    policy: str
    tft_output: tft.TFTransformOutput
    class_names: list[str]
    train_counts: list[int]
    eval_counts: list[int]
    global_batch: int
    steps_per_epoch: int
    eval_steps: int | None
    train_dataset: tf.data.Dataset
    eval_dataset: tf.data.Dataset
    train_files: Sequence[str] = ()
    eval_files: Sequence[str] = ()

    @property
    def balanced(self) -> bool:
        """Class weighting on: the loss, not the output bias, accounts for the imbalance."""
        return bool(self.settings.training["class_weighting"]) and sum(self.train_counts) > 0

    def describe(self) -> str:
        settings = self.settings
        return (
            f"[Trainer] {settings.model['backbone']} @ {settings.image_size}px "
            f"({'pretrained: ' + settings.model['weights'] if settings.pretrained else 'random init'}), "
            f"{len(self.class_names)} classes, strategy={self.strategy_name} "
            f"({self.strategy.num_replicas_in_sync} replicas), precision={self.policy}, "
            f"global batch {self.global_batch}, {self.steps_per_epoch} steps/epoch, "
            f"{sum(self.train_counts)} train / {sum(self.eval_counts)} eval images"
        )


def class_counts(fn_args: Any, class_names: Sequence[str]) -> tuple[list[int], list[int]]:
    """Train and eval examples per class: from ExampleGen's report, else counted from the labels."""
    report = data.read_ingestion_report(fn_args.train_files)
    train = data.split_class_counts(report, "train", class_names)
    evaluation = data.split_class_counts(report, "eval", class_names)
    if not sum(train):  # no report (ImportExampleGen): read the labels
        train = data.count_labels(data.list_files(fn_args.train_files), len(class_names))
    if not sum(evaluation):
        evaluation = data.count_labels(data.list_files(fn_args.eval_files), len(class_names))
    return train, evaluation


def prepare(fn_args: Any, settings: TrainerSettings) -> TrainingSetup:
    """Strategy, precision and datasets for ``fn_args`` (call it before other TensorFlow work).

    Sets the global precision policy: run it inside :func:`hardware.restoring_precision_policy`.
    """
    training = settings.training
    strategy_name = hardware.resolve_strategy_name(training["strategy"])
    # First: MultiWorkerMirroredStrategy must set up collectives before the runtime starts.
    strategy = hardware.make_strategy(strategy_name)
    policy = hardware.resolve_precision(training["precision"], strategy_name)
    hardware.apply_precision(policy)
    tf_keras.utils.set_random_seed(settings.seed)
    if settings.deterministic:
        hardware.enable_determinism()

    tft_output = tft.TFTransformOutput(transform_graph_uri(fn_args))
    class_names = list(settings.class_names) or data.read_class_names(fn_args.train_files)
    train_counts, eval_counts = class_counts(fn_args, class_names)
    global_batch = int(training["batch_size"]) * strategy.num_replicas_in_sync
    steps_per_epoch = int(training["steps_per_epoch"]) or max(1, sum(train_counts) // global_batch)
    # None: the whole eval split each epoch (it is read once, not repeated).
    eval_steps = int(training["eval_steps"]) or None

    augment = make_augmenter(settings.augmentation, settings.seed)
    workers = hardware.cluster_workers(hardware.tf_config()) if strategy_name == "multi_worker" else 1
    train_dataset = data.make_dataset(
        fn_args.train_files,
        tft_output,
        global_batch,
        True,
        settings.seed,
        augment,
        workers=workers,
        worker_index=hardware.worker_index(),
        ordered=settings.deterministic,
    )
    eval_dataset = data.make_dataset(
        fn_args.eval_files,
        tft_output,
        global_batch,
        False,
        settings.seed,
        repeat=bool(eval_steps),
        workers=workers,
        ordered=settings.deterministic,
    )
    return TrainingSetup(
        settings=settings,
        strategy=strategy,
        strategy_name=strategy_name,
        policy=policy,
        tft_output=tft_output,
        class_names=class_names,
        train_counts=train_counts,
        eval_counts=eval_counts,
        global_batch=global_batch,
        steps_per_epoch=steps_per_epoch,
        eval_steps=eval_steps,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        train_files=list(fn_args.train_files),
        eval_files=list(fn_args.eval_files),
    )


def build_model(setup: TrainingSetup) -> tuple[tf_keras.Model, tf_keras.Model]:
    """(classifier, backbone) in the strategy's scope, the output bias from the class priors."""
    settings = setup.settings
    with setup.strategy.scope():
        return build_classifier(
            settings.model["backbone"],
            len(setup.class_names),
            settings.image_size,
            settings.model["weights"],
            float(settings.model["dropout"]),
            output_bias=None if setup.balanced else prior_logits(setup.train_counts),
        )


# --------------------------------------------------------------------------
# Phases


@dataclasses.dataclass(frozen=True)
class Phase:
    """One model.fit: its epochs, learning rate and what is trainable."""

    name: str
    first_epoch: int
    last_epoch: int
    learning_rate: float
    trainable: str  # "all" (scratch), "head" (frozen backbone) or "top" (fine-tuning)
    unfreeze_layers: int = 0
    unfreeze_fraction: float = 0.0
    steps_per_epoch: int = 0  # 0: one pass over the training split (or training.steps_per_epoch)

    def steps(self, default_steps_per_epoch: int) -> int:
        """Steps in one epoch of this phase."""
        return self.steps_per_epoch or default_steps_per_epoch


def plan_phases(settings: TrainerSettings) -> list[Phase]:
    """Random init: one phase over the whole network. Pretrained: warm-up, then fine-tuning stages."""
    training = settings.training
    warmup, finetune = int(training["warmup_epochs"]), int(training["finetune_epochs"])
    if not settings.pretrained:
        # Freezing a random backbone would train a head on noise.
        return [Phase("scratch", 0, warmup + finetune, settings.learning_rate, "all")]
    phases = []
    if warmup:  # the head alone needs far fewer steps than a pass over the data: warmup_steps
        steps = int(training["warmup_steps"])
        phases.append(Phase("warmup", 0, warmup, settings.learning_rate, "head", steps_per_epoch=steps))
    # Gradual unfreezing: one stage per fine-tuning epoch, each unfreezing a larger top share.
    stages = (finetune if training["gradual_unfreeze"] else 1) if finetune else 0
    layers, fraction = int(training["unfreeze_layers"]), float(training["unfreeze_fraction"])
    for stage in range(stages):
        share = (stage + 1) / stages
        first = warmup + stage * (finetune // stages)
        last = warmup + finetune if stage == stages - 1 else first + finetune // stages
        phases.append(
            Phase(
                "finetune" if stages == 1 else f"finetune-{stage + 1}",
                first,
                last,
                settings.finetune_learning_rate,
                "top",
                layers if layers < 0 else round(layers * share),
                fraction * share,
            )
        )
    return phases


def configure_trainable(backbone: tf_keras.Model, phase: Phase) -> int:
    """Sets what ``phase`` trains; returns how many backbone layers with weights are trainable."""
    if phase.trainable == "head":
        freeze_backbone(backbone)
        return 0
    if phase.trainable == "all":
        backbone.trainable = True
        return sum(1 for layer in backbone.layers if layer.trainable_weights)
    return unfreeze_top(backbone, phase.unfreeze_layers, phase.unfreeze_fraction)


def _phase_done_path(backup_dir: str, phase: Phase) -> str:
    return os.path.join(backup_dir, PHASE_DONE.format(phase=phase.name))


def _history_rows(phase: Phase, history: Mapping[str, Sequence[float]]) -> list[dict[str, Any]]:
    epochs_run = len(history.get("loss", []))
    return [
        {
            "epoch": phase.first_epoch + offset,
            "phase": phase.name,
            **{k: float(v[offset]) for k, v in history.items()},
        }
        for offset in range(epochs_run)
    ]


def train_phases(
    setup: TrainingSetup,
    model: tf_keras.Model,
    backbone: tf_keras.Model,
    log_dir: str,
    backup_dir: str | None,
    extra_callbacks: Sequence[tf_keras.callbacks.Callback] = (),
) -> dict[str, Any]:
    """Runs every planned phase; returns the training history.

    With ``backup_dir`` each phase resumes from its BackupAndRestore checkpoint
    and a finished phase leaves its weights and history behind, so a re-run
    after a kill skips it.
    """
    settings = setup.settings
    loss = make_loss(len(setup.class_names), settings.training)
    history: dict[str, Any] = {"phases": [], "epochs": [], "resumed": []}
    fit_kwargs = dict(
        x=setup.train_dataset,
        validation_data=setup.eval_dataset,
        validation_steps=setup.eval_steps,
        verbose=_verbosity(),
        class_weight=class_weights(setup.train_counts) if setup.balanced else None,
    )
    phases = plan_phases(settings)
    for number, phase in enumerate(phases, start=1):
        steps_per_epoch = phase.steps(setup.steps_per_epoch)
        learning_rate = phase_learning_rate(
            settings.lr_schedule,
            phase.learning_rate,
            (phase.last_epoch - phase.first_epoch) * steps_per_epoch,
            float(settings.training["lr_warmup_fraction"]),
        )
        with setup.strategy.scope():
            trainable = configure_trainable(backbone, phase)
            compile_model(model, learning_rate, loss, setup.policy)
        done = _phase_done_path(backup_dir, phase) if backup_dir else None
        if done and tf.io.gfile.exists(done + ".json"):
            print(f"[Trainer] {phase.name} already finished in an interrupted run: skipping it", flush=True)
            model.load_weights(os.path.join(done, "weights"))
            with tf.io.gfile.GFile(done + ".json") as handle:
                finished = json.load(handle)
            history["phases"].append(finished["phase"])
            history["epochs"].extend(finished["epochs"])
            continue
        epochs = f"{phase.first_epoch + 1}-{phase.last_epoch}"
        print(
            f"[Trainer] phase {number}/{len(phases)} {phase.name} ({phase.trainable}): {trainable} backbone "
            f"layers trainable, lr {phase.learning_rate:g} ({settings.lr_schedule}), epochs {epochs}",
            flush=True,
        )
        resumed: dict[str, Any] = {}
        callbacks = [
            *make_callbacks(settings, phase.name, log_dir, backup_dir, steps_per_epoch),
            ResumeLogger(phase.name, phase.first_epoch, resumed),
            *extra_callbacks,
        ]
        result = model.fit(
            epochs=phase.last_epoch,
            initial_epoch=phase.first_epoch,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            **fit_kwargs,
        )
        record = {
            "name": phase.name,
            "first_epoch": phase.first_epoch,
            "epochs": len(result.history.get("loss", [])),
        }
        rows = _history_rows(phase, result.history)
        history["phases"].append(record)
        history["epochs"].extend(rows)
        if resumed:
            history["resumed"].append(resumed)
        if done:
            with _chief_path(os.path.join(done, "weights")) as weights_path:
                model.save_weights(weights_path)
            if hardware.is_chief():
                _write_json(done + ".json", {"phase": record, "epochs": rows})
    return history


# --------------------------------------------------------------------------
# run_fn


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point (referenced by name from the pipeline)."""
    skip_tf_keras_in_autograph()
    settings = TrainerSettings.from_custom_config(
        fn_args.custom_config, getattr(fn_args, "hyperparameters", None)
    )
    with hardware.restoring_precision_policy():
        setup = prepare(fn_args, settings)
        print(setup.describe(), flush=True)
        model, backbone = build_model(setup)
        sanity = None
        if settings.training.get("sanity_overfit_batch"):
            from visiontfx.components.trainer.sanity import check_can_overfit

            sanity = check_can_overfit(setup, model)
        custom_config = settings.as_custom_config()
        backup_dir = os.path.join(
            settings.checkpoint_root or os.path.join(fn_args.model_run_dir, "backup"),
            checkpoint_fingerprint(fn_args, custom_config),
        )
        history = train_phases(setup, model, backbone, fn_args.model_run_dir, backup_dir)
        export_model(model, setup.tft_output, setup.class_names, settings.top_k, fn_args.serving_model_dir)
        if hardware.is_chief():
            from visiontfx.components.serving.signatures import save_warmup_images

            save_warmup_images(fn_args.serving_model_dir, fn_args.eval_files)
            history.update(
                class_names=setup.class_names,
                precision=setup.policy,
                strategy=setup.strategy_name,
                replicas=setup.strategy.num_replicas_in_sync,
                global_batch=setup.global_batch,
                seed=settings.seed,
                deterministic=settings.deterministic,
                hyperparameters=hyperparameter_values(getattr(fn_args, "hyperparameters", None)),
                config={"model": dict(settings.model), "training": dict(settings.training)},  # as trained
                sanity=sanity,
            )
            _write_json(os.path.join(fn_args.model_run_dir, HISTORY_FILE), history)
            _write_json(os.path.join(fn_args.model_run_dir, BASELINES_FILE), baselines(setup.eval_counts))
            if tf.io.gfile.exists(backup_dir):
                tf.io.gfile.rmtree(backup_dir)


def export_model(
    model: tf_keras.Model,
    tft_output: tft.TFTransformOutput,
    class_names: Sequence[str],
    top_k: int,
    serving_model_dir: str,
) -> str:
    """Saves the SavedModel (on the chief; see :func:`_chief_path`); returns where it went."""
    from visiontfx.components.serving.signatures import build_signatures

    if model.distribute_strategy is not tf.distribute.get_strategy():
        model = _undistributed_copy(model)
    signatures = build_signatures(model, tft_output, class_names, top_k)
    with _chief_path(serving_model_dir) as target:
        model.save(target, save_format="tf", signatures=signatures, include_optimizer=False)
    return target


def _undistributed_copy(model: tf_keras.Model) -> tf_keras.Model:
    """The same model with plain variables, for export.

    Serving signatures traced over MultiWorkerMirroredStrategy's variables
    cannot be saved ("ConcreteFunction that uses distributed variables").
    The clone keeps every layer's trainable flag, so ``get_weights`` lists the
    weights in the same order on both sides. Every worker must call it:
    reading the synced BatchNorm statistics is a collective op.
    """
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


@contextlib.contextmanager
def _chief_path(path: str) -> Iterator[str]:
    """``path`` on the chief; a scratch folder, deleted afterwards, on the other workers.

    Saving a distributed model runs collective ops, so under
    MultiWorkerMirroredStrategy every worker must save, but only one copy may land.
    """
    if hardware.is_chief():
        yield path
        return
    scratch = tempfile.mkdtemp(prefix="visiontfx_worker_")
    try:
        yield os.path.join(scratch, os.path.basename(path.rstrip("/")) or "out")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"[Trainer] not the chief: saved to scratch {scratch} and discarded it", flush=True)


def _write_json(path: str, payload: Any) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json.dumps(payload, indent=2))
