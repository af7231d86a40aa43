"""Learning-rate schedules within one training phase.

``plateau`` keeps the phase's rate and lets ReduceLROnPlateau cut it when
validation loss stalls (the historical default). ``cosine`` decays it to zero
over the phase's steps; ``one_cycle`` first ramps it up linearly from a tenth
over ``warmup_fraction`` of the steps, then decays it the same way. A schedule
that knows where the phase ends spends the last steps at small rates, which
is what a short fine-tuning budget needs (see docs/benchmarks.md).
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf
import tf_keras

SCHEDULES = ("plateau", "cosine", "one_cycle")
ONE_CYCLE_START = 0.1  # the ramp starts at this share of the peak rate


class PhaseSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
    """A linear ramp from ``start_fraction × peak`` over ``warmup_steps``, then cosine decay to 0."""

    def __init__(
        self, peak: float, total_steps: int, warmup_steps: int = 0, start_fraction: float = ONE_CYCLE_START
    ) -> None:
        super().__init__()
        if total_steps < 1 or not 0 <= warmup_steps < total_steps:
            raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}")
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)
        self.start_fraction = float(start_fraction)

    def __call__(self, step: Any) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        warmup = float(self.warmup_steps)
        ramp = self.peak * (self.start_fraction + (1.0 - self.start_fraction) * step / max(warmup, 1.0))
        progress = tf.clip_by_value((step - warmup) / float(self.total_steps - self.warmup_steps), 0.0, 1.0)
        decay = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < warmup, ramp, decay)

    def get_config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "start_fraction": self.start_fraction,
        }


def phase_learning_rate(
    schedule: str, peak: float, steps: int, warmup_fraction: float
) -> float | PhaseSchedule:
    """What the optimizer of a phase of ``steps`` steps is given: a constant or a :class:`PhaseSchedule`."""
    if schedule == "plateau":
        return peak
    if schedule == "cosine":
        return PhaseSchedule(peak, steps)
    if schedule == "one_cycle":
        return PhaseSchedule(peak, steps, min(steps - 1, round(steps * warmup_fraction)))
    raise ValueError(f"Unknown training.lr_schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
