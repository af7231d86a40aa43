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
so they train exactly the model the Trainer would. Beside this driver:
``settings.py`` (TrainerSettings, the custom_config), ``losses.py`` (focal loss,
class weights, baselines) and ``callbacks.py`` (backups, resume, learning rate).
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
from typing import Any, Iterator, Mapping, Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from visiontfx.components.trainer import data, hardware
from visiontfx.components.trainer.augment import make_augmenter
from visiontfx.components.trainer.autograph import skip_tf_keras_in_autograph
from visiontfx.components.trainer.callbacks import ResumeLogger, make_callbacks
from visiontfx.components.trainer.losses import baselines, class_weights, make_loss
from visiontfx.components.trainer.model import build_classifier, freeze_backbone, prior_logits, unfreeze_top
from visiontfx.components.trainer.schedule import PhaseSchedule, phase_learning_rate
from visiontfx.components.trainer.settings import TrainerSettings, hyperparameter_values
from visiontfx.contracts.artifacts import BASELINES_FILE, HISTORY_FILE

# Next to a phase's BackupAndRestore folder once the phase has finished: its
# weights and history, so a re-run skips it instead of training it again.
PHASE_DONE = "{phase}.done"


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
        return self.settings.training.class_weighting and sum(self.train_counts) > 0

    def describe(self) -> str:
        settings = self.settings
        return (
            f"[Trainer] {settings.model.backbone} @ {settings.image_size}px "
            f"({'pretrained: ' + settings.model.weights if settings.pretrained else 'random init'}), "
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
    strategy_name = hardware.resolve_strategy_name(training.strategy)
    # First: MultiWorkerMirroredStrategy must set up collectives before the runtime starts.
    strategy = hardware.make_strategy(strategy_name)
    policy = hardware.resolve_precision(training.precision, strategy_name)
    hardware.apply_precision(policy)
    tf_keras.utils.set_random_seed(settings.seed)
    if settings.deterministic:
        hardware.enable_determinism()

    tft_output = tft.TFTransformOutput(transform_graph_uri(fn_args))
    class_names = list(settings.class_names) or data.read_class_names(fn_args.train_files)
    train_counts, eval_counts = class_counts(fn_args, class_names)
    global_batch = training.batch_size * strategy.num_replicas_in_sync
    steps_per_epoch = training.steps_per_epoch or max(1, sum(train_counts) // global_batch)
    # None: the whole eval split each epoch (it is read once, not repeated).
    eval_steps = training.eval_steps or None

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
            settings.model.backbone,
            len(setup.class_names),
            settings.image_size,
            settings.model.weights,
            settings.model.dropout,
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
    warmup, finetune = training.warmup_epochs, training.finetune_epochs
    if not settings.pretrained:
        # Freezing a random backbone would train a head on noise.
        return [Phase("scratch", 0, warmup + finetune, settings.learning_rate, "all")]
    phases = []
    if warmup:  # the head alone needs far fewer steps than a pass over the data: warmup_steps
        phases.append(
            Phase("warmup", 0, warmup, settings.learning_rate, "head", steps_per_epoch=training.warmup_steps)
        )
    # Gradual unfreezing: one stage per fine-tuning epoch, each unfreezing a larger top share.
    stages = (finetune if training.gradual_unfreeze else 1) if finetune else 0
    layers, fraction = training.unfreeze_layers, training.unfreeze_fraction
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
            settings.training.lr_warmup_fraction,
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
        if settings.training.sanity_overfit_batch:
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
                # as trained (with tuned values)
                config={"model": settings.model.to_dict(), "training": settings.training.to_dict()},
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
