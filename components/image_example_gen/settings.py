"""ImageExampleGen's typed settings (its ``options`` exec property, as JSON).

:class:`IngestSettings` holds the defaults and range checks of the ingestion
keys of the config's ``data`` section; ``pipeline/config.py``'s DataConfig
extends it with where the data is. No TensorFlow import.
"""

from __future__ import annotations

import dataclasses
import functools

from visiontfx.contracts.settings import Settings, key_path, require

# The config section these keys live in: messages name them as the user writes them.
SECTION = "data"


@dataclasses.dataclass(frozen=True)
class SplitConfig(Settings):
    """Hash-based split ratios (they must add up to 1)."""

    train: float = 0.9
    eval: float = 0.1
    test: float = 0.0

    def validate(self, prefix: str = "") -> None:
        for name in ("train", "eval", "test"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, f"'{key_path(prefix, name)}' must be between 0 and 1, got {value}.")
        total = self.train + self.eval + self.test
        require(abs(total - 1.0) < 1e-6, f"'{prefix}' ratios must add up to 1, got {total:g}.")
        require(self.train > 0 and self.eval > 0, f"'{prefix}' needs train > 0 and eval > 0.")


@dataclasses.dataclass(frozen=True)
class IngestSettings(Settings):
    """How images are split, capped, sharded and rejected, and which spans are read."""

    # With {SPAN} in the folder path: train on the last N spans together (TFX's RangeConfig
    # rolling_range), ignoring spans below first_span.
    span_window: int = 1
    first_span: int = 0
    tfds_name: str = ""
    splits: SplitConfig = SplitConfig()
    # Keep the dataset's own test split (Fashion-MNIST's 10,000 test images,
    # a TFDS "test" split) instead of carving one out by hashing.
    use_source_test_split: bool = True
    # Caps for quick runs: 0 means no cap. Applied deterministically (by hash).
    max_train_images: int = 0
    max_eval_images: int = 0
    max_test_images: int = 0
    num_shards: int = 4
    max_rejected_fraction: float = 0.05
    min_image_side: int = 8
    max_image_side: int = 8192

    def validate(self, prefix: str = "") -> None:
        key = functools.partial(key_path, prefix)
        require(self.num_shards >= 1, f"'{key('num_shards')}' must be at least 1.")
        require(
            0.0 <= self.max_rejected_fraction <= 1.0,
            f"'{key('max_rejected_fraction')}' must be between 0 and 1.",
        )
        for name in ("max_train_images", "max_eval_images", "max_test_images"):
            require(getattr(self, name) >= 0, f"'{key(name)}' must be >= 0 (0 = no cap).")
        require(self.min_image_side >= 1, f"'{key('min_image_side')}' must be >= 1.")
        require(self.span_window >= 1, f"'{key('span_window')}' must be at least 1 (the newest span).")
        require(self.first_span >= 0, f"'{key('first_span')}' must be >= 0.")
        require(
            self.max_image_side >= self.min_image_side,
            f"'{key('max_image_side')}' must be >= min_image_side.",
        )

    @classmethod
    def from_options(cls, options: str | None) -> IngestSettings:
        """From the component's ``options`` JSON; a wrong value fails naming its ``data.`` key."""
        return cls.from_json(options, SECTION)

    @property
    def caps(self) -> dict[str, int]:
        """Images kept at most per split (0: all)."""
        return {"train": self.max_train_images, "eval": self.max_eval_images, "test": self.max_test_images}
