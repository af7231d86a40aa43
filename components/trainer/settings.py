"""The Trainer's typed settings: the ``model``, ``training`` and ``augmentation`` config
sections (their defaults and range checks live here, once) and :class:`TrainerSettings`,
the Trainer's and Tuner's ``custom_config``.

No TensorFlow import: ``pipeline/config.py`` builds its Config from these sections.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal, Mapping

from visiontfx.contracts.backbones import Backbone, check_image_size, resolve_image_size
from visiontfx.contracts.settings import Settings, key_path, require

Precision = Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"]
Strategy = Literal["auto", "default", "mirrored", "multi_worker", "tpu"]
LrSchedule = Literal["plateau", "cosine", "one_cycle"]

# ``model.weights`` values meaning "random initialization" (anything else: imagenet or a file).
RANDOM_INIT_WEIGHTS = ("none", "random", "")

# Hyperparameters the Tuner may set, and the config section each one lives in.
TUNABLE = {
    "learning_rate": "training",
    "finetune_learning_rate": "training",
    "unfreeze_layers": "training",
    "unfreeze_fraction": "training",
    "dropout": "model",
}


@dataclasses.dataclass(frozen=True)
class AugmentationConfig(Settings):
    """Training-only augmentation, as fractions like keras' preprocessing layers."""

    enabled: bool = True
    horizontal_flip: bool = True
    rotation: float = 0.05
    zoom: float = 0.1
    height_shift: float = 0.1
    width_shift: float = 0.1

    def validate(self, prefix: str = "") -> None:
        for name in ("rotation", "zoom", "height_shift", "width_shift"):
            value = getattr(self, name)
            require(0.0 <= value < 1.0, f"'{key_path(prefix, name)}' must be in [0, 1), got {value}.")


@dataclasses.dataclass(frozen=True)
class ModelConfig(Settings):
    backbone: Backbone = "efficientnet_lite0"
    # imagenet | none | a path to a weights file (.h5/.weights.h5/.pth for Lite0)
    weights: str = "imagenet"
    image_size: int = 0  # 0: the size the backbone expects
    dropout: float = 0.2

    def validate(self, prefix: str = "") -> None:
        check_image_size(self.image_size, key_path(prefix, "image_size"))
        require(0.0 <= self.dropout < 1.0, f"'{key_path(prefix, 'dropout')}' must be in [0, 1).")
        require(bool(self.weights), f"'{key_path(prefix, 'weights')}' must be imagenet, none or a file path.")

    @property
    def resolved_image_size(self) -> int:
        return resolve_image_size(self.backbone, self.image_size)

    @property
    def pretrained(self) -> bool:
        """ImageNet or a weights file (whether the file exists is checked when the model is built)."""
        return self.weights.lower() not in RANDOM_INIT_WEIGHTS


@dataclasses.dataclass(frozen=True)
class TrainingConfig(Settings):
    batch_size: int = 64
    warmup_epochs: int = 1
    # > 0: each warm-up epoch (the head alone, backbone frozen) is this many steps instead of
    # a pass over the data; a linear head on pretrained features settles in a few hundred.
    warmup_steps: int = 0
    finetune_epochs: int = 2
    learning_rate: float = 1e-3
    finetune_learning_rate: float = 0.0  # 0: learning_rate / 10
    unfreeze_layers: int = 40  # top layers unfrozen for fine-tuning (0 = none, -1 = all)
    unfreeze_fraction: float = 0.0  # alternative to unfreeze_layers when > 0
    gradual_unfreeze: bool = False
    steps_per_epoch: int = 0  # 0: one pass over the training split
    eval_steps: int = 0  # 0: one pass over the eval split
    seed: int = 42
    precision: Precision = "auto"
    strategy: Strategy = "auto"
    early_stopping_patience: int = 3
    reduce_lr_patience: int = 1
    class_weighting: bool = False
    focal_loss_gamma: float = 0.0  # > 0 switches to focal loss
    label_smoothing: float = 0.0
    # The learning rate within each phase: "plateau" (constant, cut 5× when val_loss stalls),
    # "cosine" (decays to 0 by the phase's end) or "one_cycle" (linear ramp-up over
    # lr_warmup_fraction of the phase's steps, then cosine decay to 0).
    lr_schedule: LrSchedule = "plateau"
    lr_warmup_fraction: float = 0.1
    sanity_overfit_batch: bool = False
    # Identical metrics on a re-run: TF op determinism and tf.data in order (with the fixed
    # seeds every run has). Off by default: unordered tf.data is faster.
    deterministic: bool = False
    tune: bool = False  # a TFX Tuner (KerasTuner RandomSearch) picks lr, dropout, unfreeze depth
    tune_trials: int = 4

    def validate(self, prefix: str = "") -> None:
        key = functools.partial(key_path, prefix)
        require(self.batch_size >= 1, f"'{key('batch_size')}' must be at least 1.")
        require(
            self.warmup_epochs >= 0 and self.finetune_epochs >= 0,
            f"'{key('warmup_epochs')}' and '{key('finetune_epochs')}' must be >= 0.",
        )
        require(
            self.warmup_epochs + self.finetune_epochs >= 1,
            f"'{key('warmup_epochs')}' + '{key('finetune_epochs')}' must be at least 1.",
        )
        require(self.learning_rate > 0, f"'{key('learning_rate')}' must be > 0.")
        require(self.finetune_learning_rate >= 0, f"'{key('finetune_learning_rate')}' must be >= 0.")
        require(self.unfreeze_layers >= -1, f"'{key('unfreeze_layers')}' must be -1 (all), 0 or more.")
        require(0.0 <= self.unfreeze_fraction <= 1.0, f"'{key('unfreeze_fraction')}' must be in [0, 1].")
        require(
            self.steps_per_epoch >= 0 and self.eval_steps >= 0 and self.warmup_steps >= 0,
            f"'{key('steps_per_epoch')}', '{key('eval_steps')}' and '{key('warmup_steps')}' must be >= 0.",
        )
        require(self.focal_loss_gamma >= 0, f"'{key('focal_loss_gamma')}' must be >= 0.")
        require(0.0 <= self.label_smoothing < 1.0, f"'{key('label_smoothing')}' must be in [0, 1).")
        require(0.0 <= self.lr_warmup_fraction < 1.0, f"'{key('lr_warmup_fraction')}' must be in [0, 1).")
        require(self.tune_trials >= 1, f"'{key('tune_trials')}' must be at least 1.")

    @property
    def resolved_finetune_learning_rate(self) -> float:
        return self.finetune_learning_rate or self.learning_rate / 10.0

    @property
    def epochs(self) -> int:
        return self.warmup_epochs + self.finetune_epochs


# --------------------------------------------------------------------------
# The Trainer's custom_config


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
        result.setdefault(TUNABLE[name], {})[name] = value
    return result


@dataclasses.dataclass(frozen=True)
class TrainerSettings(Settings):
    """What run_fn and tuner_fn need from the pipeline config (their custom_config).

    As JSON (the Kubeflow runtime parameter ``trainer_custom_config``): the
    sections ``model``, ``training``, ``augmentation`` and ``top_k``,
    ``checkpoint_root``, ``class_names``. A section may leave keys out (their
    defaults apply); every value given is checked.
    """

    model: ModelConfig
    training: TrainingConfig
    augmentation: AugmentationConfig
    top_k: int  # classes in the serving signatures' answer (the config's serving.top_k)
    checkpoint_root: str = ""  # "": backups inside the Trainer's model_run output
    class_names: tuple[str, ...] = ()  # empty: the Examples' labels.txt

    def validate(self, prefix: str = "") -> None:
        require(self.top_k >= 1, f"'{key_path(prefix, 'top_k')}' must be at least 1.")

    @classmethod
    def from_custom_config(
        cls, custom_config: Mapping[str, Any], hyperparameters: Any = None
    ) -> TrainerSettings:
        """From the JSON custom_config, with the Tuner's ``hyperparameters`` (if any) applied."""
        return cls.from_dict(apply_hyperparameters(custom_config, hyperparameter_values(hyperparameters)))

    def as_custom_config(self) -> dict[str, Any]:
        return self.to_dict()

    def with_hyperparameters(self, values: Mapping[str, Any]) -> TrainerSettings:
        """A copy with tuned values (names in TUNABLE) in their sections, checked like the config."""
        return TrainerSettings.from_dict(apply_hyperparameters(self.to_dict(), values))

    @property
    def image_size(self) -> int:
        return self.model.resolved_image_size

    @property
    def learning_rate(self) -> float:
        return self.training.learning_rate

    @property
    def finetune_learning_rate(self) -> float:
        return self.training.resolved_finetune_learning_rate

    @property
    def seed(self) -> int:
        return self.training.seed

    @property
    def deterministic(self) -> bool:
        """Identical re-runs: op determinism and tf.data in order (the default trades them for speed)."""
        return self.training.deterministic

    @property
    def lr_schedule(self) -> str:
        return self.training.lr_schedule

    @property
    def pretrained(self) -> bool:
        return self.model.pretrained
