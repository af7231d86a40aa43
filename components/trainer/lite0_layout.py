"""EfficientNet-Lite0's layout as data: stages, blocks and fixed sizes (no TensorFlow).

The Keras builder (efficientnet_lite.py) and the checkpoint-to-Keras weight mapping
(lite0_weights.py) both walk ``blocks()``, so the two cannot disagree on names.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

# The checkpoint follows the TF reference implementation (its convs carry static
# "same" padding), so BatchNorm uses TF's values too.
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # PyTorch's momentum 0.01
STEM_FILTERS = 32  # Lite: stem and head are not scaled with width
HEAD_FILTERS = 1280


@dataclasses.dataclass(frozen=True)
class Stage:
    kernel: int
    repeats: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int


# EfficientNet-B0/Lite0 stages (width and depth multipliers 1.0).
STAGES = (
    Stage(3, 1, 32, 16, 1, 1),
    Stage(3, 2, 16, 24, 6, 2),
    Stage(5, 2, 24, 40, 6, 2),
    Stage(3, 3, 40, 80, 6, 2),
    Stage(5, 3, 80, 112, 6, 1),
    Stage(5, 4, 112, 192, 6, 2),
    Stage(3, 1, 192, 320, 6, 1),
)


@dataclasses.dataclass(frozen=True)
class Block:
    index: int  # position among all blocks: the checkpoint's `_blocks.<index>`
    prefix: str  # Keras layer-name prefix, e.g. "block3b_"
    kernel: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int


def blocks() -> Iterator[Block]:
    """Every MBConv block in order; the builder and the weight mapping both walk this."""
    index = 0
    for stage_number, stage in enumerate(STAGES, start=1):
        for repeat in range(stage.repeats):
            yield Block(
                index=index,
                prefix=f"block{stage_number}{chr(ord('a') + repeat)}_",
                kernel=stage.kernel,
                filters_in=stage.filters_in if repeat == 0 else stage.filters_out,
                filters_out=stage.filters_out,
                expand_ratio=stage.expand_ratio,
                strides=stage.strides if repeat == 0 else 1,
            )
            index += 1


NUM_BLOCKS = sum(stage.repeats for stage in STAGES)
