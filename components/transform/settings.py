"""Transform's typed settings (its ``custom_config``): the backbone and the input size.

Both come from the config's ``model`` section, whose defaults live in
``components/trainer/settings.py``; here they are required. No TensorFlow import.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from visiontfx.contracts.backbones import Backbone, check_image_size, resolve_image_size
from visiontfx.contracts.settings import Settings, key_path

# The config section these keys live in: messages name them as the user writes them.
SECTION = "model"


@dataclasses.dataclass(frozen=True)
class TransformSettings(Settings):
    """How ``preprocessing_fn`` decodes, resizes and scales the images."""

    backbone: Backbone
    image_size: int  # 0: the size the backbone expects

    def validate(self, prefix: str = "") -> None:
        check_image_size(self.image_size, key_path(prefix, "image_size"))

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> TransformSettings:
        """From Transform's custom_config; a wrong value fails naming its ``model.`` key."""
        return cls.from_dict(custom_config, SECTION)

    @property
    def resolved_image_size(self) -> int:
        return resolve_image_size(self.backbone, self.image_size)
