"""Optional tuning: TFX's Tuner component with KerasTuner RandomSearch.

Searches the learning rate, the head's dropout and (for a pretrained backbone
with fine-tuning) how many backbone layers to unfreeze. Every trial trains
exactly what the Trainer would — the same data, model, phases and callbacks,
from the same seeded initialization — only shorter when the Tuner's
``train_args.num_steps`` asks for it. The best values go to the Trainer as
``hyperparameters``; ``run_fn`` applies them over the config.

KerasTuner 1.4 here is written against Keras 3 while the model is tf_keras
(Transform and TFMA need Keras 2): the tuner skips KerasTuner's Keras 3 type
check, and KerasTuner's callbacks reach tf_keras' ``fit`` through an adapter.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import keras_tuner
import tf_keras

from visiontfx.components.trainer import hardware
from visiontfx.components.trainer.autograph import skip_tf_keras_in_autograph
from visiontfx.components.trainer.run import TrainingSetup, build_model, prepare, train_phases
from visiontfx.components.trainer.settings import TrainerSettings

OBJECTIVE = "val_accuracy"
LEARNING_RATES = (1e-4, 1e-2)
DROPOUTS = (0.0, 0.5, 0.1)  # min, max, step
UNFREEZE_DEPTHS = (0, 20, 40, 80)


def define_search_space(hp: keras_tuner.HyperParameters, settings: TrainerSettings) -> dict[str, Any]:
    """Registers the hyperparameters in ``hp`` and returns this trial's values."""
    values = {
        "learning_rate": hp.Float("learning_rate", *LEARNING_RATES, sampling="log"),
        "dropout": hp.Float("dropout", DROPOUTS[0], DROPOUTS[1], step=DROPOUTS[2]),
    }
    if settings.pretrained and settings.training.finetune_epochs:
        # Only fine-tuning unfreezes anything: from scratch the depth means nothing.
        values["unfreeze_layers"] = hp.Choice("unfreeze_layers", list(UNFREEZE_DEPTHS))
    return values


class _KerasTunerCallbacks(tf_keras.callbacks.Callback):
    """Forwards tf_keras' epoch events to KerasTuner's (Keras 3) callbacks.

    tf_keras' CallbackList calls private hooks that Keras 3 callbacks lack.
    """

    def __init__(self, callbacks: Sequence[Any]) -> None:
        super().__init__()
        self.foreign = list(callbacks)

    def set_model(self, model: tf_keras.Model) -> None:
        super().set_model(model)
        for callback in self.foreign:
            callback.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        for callback in self.foreign:
            callback.set_params(params)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        for callback in self.foreign:
            callback.on_train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for callback in self.foreign:
            callback.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for callback in self.foreign:
            callback.on_epoch_end(epoch, logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for callback in self.foreign:
            callback.on_train_end(logs)


class TrainerHyperModel(keras_tuner.HyperModel):
    """Builds the Trainer's classifier for a trial and trains it through all its phases."""

    def __init__(self, setup: TrainingSetup) -> None:
        super().__init__(name="visiontfx_trainer")
        self.setup = setup
        self._trial: tuple[TrainingSetup, tf_keras.Model] | None = None
        self._policy_before: Any = None

    def trial_setup(self, hp: keras_tuner.HyperParameters) -> TrainingSetup:
        base = self.setup.settings
        values = define_search_space(hp, base)
        return dataclasses.replace(self.setup, settings=base.with_hyperparameters(values))

    def build(self, hp: keras_tuner.HyperParameters) -> tf_keras.Model:
        setup = self.trial_setup(hp)
        tf_keras.backend.clear_session()  # KerasTuner clears Keras 3's session, not tf_keras'
        tf_keras.utils.set_random_seed(setup.settings.seed)  # every trial starts from the same init
        self._policy_before = tf_keras.mixed_precision.global_policy()
        hardware.apply_precision(setup.policy)
        model, backbone = build_model(setup)
        self._trial = (setup, backbone)
        return model

    def fit(self, hp: keras_tuner.HyperParameters, model: tf_keras.Model, *args: Any, **kwargs: Any) -> dict:
        """Runs the planned phases; the objective is the best validation accuracy of any epoch."""
        if self._trial is None:
            raise RuntimeError("fit() before build()")
        setup, backbone = self._trial
        try:
            history = train_phases(
                setup,
                model,
                backbone,
                log_dir="",
                backup_dir=None,  # a trial is short and disposable: no resumable checkpoints
                extra_callbacks=[_KerasTunerCallbacks(kwargs.get("callbacks", []))],
            )
        finally:  # the search runs inside TFX's process: leave its policy as it was
            tf_keras.mixed_precision.set_global_policy(self._policy_before)
        scores = [epoch[OBJECTIVE] for epoch in history["epochs"] if OBJECTIVE in epoch]
        return {OBJECTIVE: max(scores) if scores else 0.0}


class TfKerasRandomSearch(keras_tuner.RandomSearch):
    """RandomSearch that accepts tf_keras models (KerasTuner's type check knows only Keras 3's)."""

    def _try_build(self, hp: keras_tuner.HyperParameters) -> tf_keras.Model:
        return self._build_hypermodel(hp)


def trial_settings(fn_args: Any, settings: TrainerSettings) -> TrainerSettings:
    """The Trainer's settings, with steps per epoch from the Tuner's train/eval args when given."""
    training = settings.training
    if getattr(fn_args, "train_steps", None):
        steps = max(1, int(fn_args.train_steps) // max(1, training.epochs))
        training = dataclasses.replace(training, steps_per_epoch=steps)
    if getattr(fn_args, "eval_steps", None):
        training = dataclasses.replace(training, eval_steps=int(fn_args.eval_steps))
    return dataclasses.replace(settings, training=training)


def tuner_fn(fn_args: Any) -> Any:
    """TFX Tuner entry point: a RandomSearch over the Trainer's own training."""
    from tfx.components.tuner.component import TunerFnResult

    skip_tf_keras_in_autograph()
    settings = trial_settings(fn_args, TrainerSettings.from_custom_config(fn_args.custom_config))
    with hardware.restoring_precision_policy():  # each trial sets it again in build()
        setup = prepare(fn_args, settings)
    print(setup.describe().replace("[Trainer]", "[Tuner]"), flush=True)
    tuner = TfKerasRandomSearch(
        TrainerHyperModel(setup),
        objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
        max_trials=settings.training.tune_trials,
        seed=settings.seed,
        directory=fn_args.working_dir,
        project_name="visiontfx_tuning",
        overwrite=True,
    )
    return TunerFnResult(tuner=tuner, fit_kwargs={})
