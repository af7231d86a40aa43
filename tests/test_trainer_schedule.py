"""Faster fine-tuning levers: learning-rate schedules within a phase (their shape, how a phase
gets one, fit following it) and a warm-up shorter than an epoch."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import tf_keras

from visiontfx.components.trainer import callbacks, run
from visiontfx.components.trainer.autograph import skip_tf_keras_in_autograph
from visiontfx.components.trainer.schedule import PhaseSchedule, phase_learning_rate
from visiontfx.components.trainer.settings import TrainerSettings
from visiontfx.pipeline.config import ConfigError, from_dict
from visiontfx.pipeline.dag import trainer_custom_config

skip_tf_keras_in_autograph()  # else AutoGraph converts tf_keras itself: a first fit takes minutes


def _settings(**training: object) -> TrainerSettings:
    config = from_dict({"model": {"weights": "imagenet"}, "training": training})
    return TrainerSettings.from_custom_config(trainer_custom_config(config, "/tmp/unused"))


def test_cosine_decays_from_the_peak_to_zero_over_the_phase() -> None:
    schedule = PhaseSchedule(1e-3, total_steps=100)
    values = [float(schedule(step)) for step in range(101)]
    assert values[0] == pytest.approx(1e-3)
    assert values[50] == pytest.approx(5e-4)
    assert values[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in pairwise(values))


def test_one_cycle_ramps_up_then_decays() -> None:
    schedule = phase_learning_rate("one_cycle", 2e-3, steps=100, warmup_fraction=0.2)
    assert isinstance(schedule, PhaseSchedule) and schedule.warmup_steps == 20
    values = [float(schedule(step)) for step in range(101)]
    assert values[0] == pytest.approx(2e-4)  # a tenth of the peak
    assert values[10] == pytest.approx(2e-4 + 0.5 * 1.8e-3)
    assert max(values) == pytest.approx(2e-3) and int(np.argmax(values)) == 20
    assert all(a <= b for a, b in pairwise(values[:21]))
    assert all(a >= b for a, b in pairwise(values[20:]))
    assert values[100] == pytest.approx(0.0, abs=1e-12)


def test_plateau_keeps_a_constant_rate_and_bad_settings_fail() -> None:
    assert phase_learning_rate("plateau", 1e-3, 10, 0.1) == 1e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        phase_learning_rate("step", 1e-3, 10, 0.1)
    with pytest.raises(ValueError, match="warmup_steps"):
        PhaseSchedule(1e-3, total_steps=10, warmup_steps=10)
    with pytest.raises(ConfigError, match="lr_warmup_fraction"):
        from_dict({"training": {"lr_warmup_fraction": 1.0}})
    with pytest.raises(ConfigError, match="lr_schedule"):
        from_dict({"training": {"lr_schedule": "linear"}})


def test_reduce_on_plateau_only_without_a_schedule() -> None:
    def kinds(settings: TrainerSettings) -> set[str]:
        made = callbacks.make_callbacks(settings, "finetune", "/tmp/unused", None, 10)
        return {type(c).__name__ for c in made}

    assert "ReduceLROnPlateau" in kinds(_settings())
    assert "ReduceLROnPlateau" not in kinds(_settings(lr_schedule="cosine"))
    assert "EarlyStopping" in kinds(_settings(lr_schedule="one_cycle"))


def test_fit_follows_the_phase_schedule() -> None:
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2, activation="softmax")])
    schedule = phase_learning_rate("cosine", 1e-2, steps=3 * 5, warmup_fraction=0.0)
    run.compile_model(model, schedule, "sparse_categorical_crossentropy", "float32")
    x, y = np.random.rand(40, 4).astype("float32"), np.random.randint(0, 2, 40)
    history = model.fit(
        x, y, batch_size=8, epochs=3, steps_per_epoch=5, verbose=0, callbacks=[callbacks.LearningRateLogger()]
    )
    # The logger reads the rate the last step of each epoch used (steps 4, 9, 14 of 15).
    expected = [float(schedule(step)) for step in (4, 9, 14)]
    assert history.history["learning_rate"] == pytest.approx(expected, rel=1e-5)
    assert int(model.optimizer.iterations) == 15


def test_warmup_steps_shorten_only_the_warmup_phase() -> None:
    warmup, finetune = run.plan_phases(_settings(warmup_epochs=1, finetune_epochs=2, warmup_steps=50))
    assert (warmup.name, warmup.steps(300)) == ("warmup", 50)
    assert (finetune.name, finetune.steps(300)) == ("finetune", 300)
    default_warmup, _ = run.plan_phases(_settings(warmup_epochs=1, finetune_epochs=2))
    assert default_warmup.steps(300) == 300
    with pytest.raises(ConfigError, match="warmup_steps"):
        from_dict({"training": {"warmup_steps": -1}})
