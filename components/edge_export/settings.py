"""EdgeExport's typed settings (its ``custom_config``).

:class:`EdgeTargets` holds the defaults and range checks of the config's ``edge``
section (``pipeline/config.py``'s EdgeConfig extends it with the on/off switch);
:class:`EdgeSettings` adds what the export needs from the ``model`` section and the
class names. No TensorFlow import.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

from visiontfx.contracts import edge
from visiontfx.contracts.backbones import Backbone, check_image_size, resolve_image_size
from visiontfx.contracts.settings import Settings, key_path, require


@dataclasses.dataclass(frozen=True)
class EdgeTargets(Settings):
    """How the TFLite models are calibrated, checked and timed."""

    representative_images: int = 200  # training images that calibrate int8
    parity_images: int = 0  # test images the parity is measured on (0: the whole split)
    # Parity goals in accuracy points below the SavedModel; a model missing one is
    # still pushed, with that TFLite file marked "not recommended".
    float16_max_drop: float = 0.3
    int8_max_drop: float = 1.5
    latency_runs: int = 50  # single-image invokes timed per model

    def validate(self, prefix: str = "") -> None:
        key = functools.partial(key_path, prefix)
        require(self.representative_images >= 1, f"'{key('representative_images')}' must be at least 1.")
        require(self.parity_images >= 0, f"'{key('parity_images')}' must be >= 0 (0 = the whole split).")
        require(
            self.float16_max_drop >= 0 and self.int8_max_drop >= 0,
            f"'{key('float16_max_drop')}' and '{key('int8_max_drop')}' are accuracy points and must be >= 0.",
        )
        require(self.latency_runs >= 1, f"'{key('latency_runs')}' must be at least 1.")

    def max_drop(self, variant: str) -> float:
        return {edge.FLOAT16: self.float16_max_drop, edge.INT8: self.int8_max_drop}[variant]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EdgeSettings(EdgeTargets):
    """The EdgeExport component's custom_config: the targets, the backbone and its input size."""

    backbone: Backbone
    image_size: int  # 0: the backbone's default
    class_names: tuple[str, ...] = ()  # empty: the Trainer's training_history.json

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        check_image_size(self.image_size, key_path(prefix, "image_size"))

    @classmethod
    def from_custom_config(cls, values: Mapping[str, Any] | None) -> EdgeSettings:
        return cls.from_dict(values)

    @property
    def size(self) -> int:
        return resolve_image_size(self.backbone, self.image_size)
