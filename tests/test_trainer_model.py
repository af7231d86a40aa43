"""The Trainer's model: weights (offline failure, files), BatchNorm rules, prior bias,
freezing and phases, class weights, focal loss, hyperparameters, baselines, sanity mode."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from trainer_fixtures import synthetic_images

from visiontfx.components.trainer import losses, run
from visiontfx.components.trainer import model as model_lib
from visiontfx.components.trainer.model import (
    WeightsUnavailableError,
    build_backbone,
    build_classifier,
    prior_logits,
    unfreeze_top,
)
from visiontfx.components.trainer.sanity import overfit_batch
from visiontfx.components.trainer.settings import TrainerSettings, TrainingConfig
from visiontfx.pipeline.config import from_dict
from visiontfx.pipeline.dag import trainer_custom_config

OFFLINE_OPTIONS = ("model.weights=none", "model.weights=/path/to/weights.h5", "efficientnet_lite0")


def _settings(**sections: dict) -> TrainerSettings:
    return TrainerSettings.from_custom_config(trainer_custom_config(from_dict(sections), "/tmp/unused"))


# --------------------------------------------------------------------------
# Weights


@pytest.fixture
def empty_keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No cached Keras weights, whatever this machine's ~/.keras holds."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(model_lib, "_keras_weights_cached", lambda name: False)
    return tmp_path


def _network_reachable() -> bool:
    try:
        socket.create_connection(model_lib.KERAS_WEIGHTS_HOST, timeout=2).close()
        return True
    except OSError:
        return False


def test_imagenet_weights_offline_fail_within_seconds_naming_the_options(empty_keras_home: Path) -> None:
    if _network_reachable():
        pytest.skip("this machine can reach the weights host; the offline failure cannot be shown here")
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as caught:
        build_backbone("efficientnet_b0", 32, "imagenet")
    assert time.monotonic() - started < model_lib.DOWNLOAD_CHECK_SECONDS + 3
    message = str(caught.value)
    assert "efficientnetb0_notop.h5" in message
    assert all(option in message for option in OFFLINE_OPTIONS)


def test_a_stalled_network_cannot_hang_the_weights_check(
    empty_keras_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DNS lookup or connect that never answers (socket timeouts do not cover DNS)."""

    def stalled(*args: object, **kwargs: object) -> None:
        time.sleep(5)
        raise OSError("answered far too late")

    monkeypatch.setattr(socket, "create_connection", stalled)
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match=r"no answer from .* within 1 s"):
        model_lib._check_can_download("EfficientNetV2B0", timeout=1.0)
    assert time.monotonic() - started < 2.5


def test_cached_keras_weights_skip_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "efficientnetv2-b0_notop.h5").write_bytes(b"")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(model_lib, "_reachable", lambda *args: pytest.fail("network checked"))
    model_lib._check_can_download("EfficientNetV2B0")


def test_a_missing_weights_file_names_the_offline_options(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError) as caught:
        build_backbone("efficientnet_b0", 32, str(tmp_path / "nope.h5"))
    assert all(option in str(caught.value) for option in OFFLINE_OPTIONS)


def test_keras_backbone_loads_a_weights_file(tmp_path: Path) -> None:
    tf_keras.utils.set_random_seed(1)
    source = build_backbone("efficientnet_b0", 32, "none")
    path = tmp_path / "b0_notop.h5"
    source.save_weights(str(path))
    tf_keras.utils.set_random_seed(2)  # a different random init, to be overwritten
    loaded = build_backbone("efficientnet_b0", 32, str(path))
    assert len(loaded.weights) == len(source.weights)
    for mine, theirs in zip(loaded.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_pretrained_backbone_keeps_batchnorm_in_inference_mode(tmp_path: Path) -> None:
    path = tmp_path / "small_cnn.weights.h5"
    build_backbone("small_cnn", 16, "none").save_weights(str(path))
    pretrained, _ = build_classifier("small_cnn", 4, 16, str(path), dropout=0.0)
    images, _ = synthetic_images(8)
    # Fine-tuning must not use batch statistics: training and inference give the same output.
    np.testing.assert_allclose(
        pretrained(images, training=True), pretrained(images, training=False), atol=1e-6
    )


def test_random_init_trains_batchnorm_with_fast_settling_statistics() -> None:
    scratch, backbone = build_classifier("small_cnn", 4, 16, "none", dropout=0.0)
    batch_norms = [
        layer for layer in backbone.layers if isinstance(layer, tf_keras.layers.BatchNormalization)
    ]
    assert batch_norms and all(layer.momentum == model_lib.SCRATCH_BN_MOMENTUM for layer in batch_norms)
    images, _ = synthetic_images(8)
    before = batch_norms[0].moving_mean.numpy().copy()
    scratch(images, training=True)
    assert not np.allclose(before, batch_norms[0].moving_mean.numpy()), "BatchNorm statistics did not move"


# --------------------------------------------------------------------------
# Head initialization, freezing, phases


def test_prior_bias_makes_the_untrained_model_predict_the_class_priors() -> None:
    counts = [500, 300, 150, 50, 0]
    classifier, _ = build_classifier("small_cnn", 5, 16, "none", 0.2, output_bias=prior_logits(counts))
    images, _ = synthetic_images(6)
    predictions = classifier(images, training=False).numpy()
    smoothed_priors = (np.asarray(counts) + 1.0) / (sum(counts) + len(counts))
    np.testing.assert_allclose(predictions, np.tile(smoothed_priors, (6, 1)), atol=1e-6)
    np.testing.assert_allclose(predictions[0, :4], np.asarray(counts[:4]) / sum(counts), atol=2e-3)

    uniform, _ = build_classifier("small_cnn", 5, 16, "none", 0.2)
    np.testing.assert_allclose(uniform(images, training=False), 0.2, atol=1e-6)


def test_unfreeze_top_keeps_batchnorm_frozen() -> None:
    backbone = build_backbone("efficientnet_lite0", 32, "none")
    layers = backbone.layers
    count = unfreeze_top(backbone, 20)
    trainable = [index for index, layer in enumerate(layers) if layer.trainable]
    assert trainable and min(trainable) >= len(layers) - 20
    assert not any(isinstance(layers[i], tf_keras.layers.BatchNormalization) for i in trainable)
    assert count == sum(1 for i in trainable if layers[i].weights) > 0
    unfreeze_top(backbone, -1)
    assert all(
        layer.trainable != isinstance(layer, tf_keras.layers.BatchNormalization) for layer in layers[1:]
    )  # every layer but BatchNorm (and the input) trains
    half = unfreeze_top(backbone, 0, fraction=0.5)
    assert 0 < half < unfreeze_top(backbone, -1)


def test_phase_plans() -> None:
    pretrained = _settings(
        model={"weights": "imagenet"},
        training={"warmup_epochs": 1, "finetune_epochs": 3, "learning_rate": 1e-3, "unfreeze_layers": 30},
    )
    warmup, finetune = run.plan_phases(pretrained)
    assert (warmup.trainable, warmup.first_epoch, warmup.last_epoch, warmup.learning_rate) == (
        "head",
        0,
        1,
        1e-3,
    )
    assert (finetune.trainable, finetune.first_epoch, finetune.last_epoch) == ("top", 1, 4)
    assert finetune.learning_rate == pytest.approx(1e-4) and finetune.unfreeze_layers == 30

    gradual = _settings(
        model={"weights": "imagenet"},
        training={"warmup_epochs": 1, "finetune_epochs": 3, "unfreeze_layers": 30, "gradual_unfreeze": True},
    )
    stages = run.plan_phases(gradual)[1:]
    assert [s.unfreeze_layers for s in stages] == [10, 20, 30]
    assert [(s.first_epoch, s.last_epoch) for s in stages] == [(1, 2), (2, 3), (3, 4)]

    (scratch,) = run.plan_phases(_settings(model={"weights": "none"}, training={"warmup_epochs": 2}))
    assert (scratch.trainable, scratch.first_epoch, scratch.last_epoch) == ("all", 0, 4)


# --------------------------------------------------------------------------
# Class imbalance: weights and focal loss


def test_class_weights_are_inverse_frequency_with_mean_one() -> None:
    weights = losses.class_weights([300, 100, 0])
    assert weights[0] == pytest.approx(400 / (2 * 300)) and weights[1] == pytest.approx(400 / (2 * 100))
    assert weights[2] == 0.0
    assert (weights[0] * 300 + weights[1] * 100) / 400 == pytest.approx(1.0)  # same total loss scale


def test_class_weights_raise_minority_recall() -> None:
    """A linear classifier on overlapping 1-D classes, 9:1 imbalanced, with and without weights."""
    rng = np.random.default_rng(0)
    labels = (rng.uniform(size=2000) < 0.1).astype(np.int64)
    features = (rng.normal(size=2000) + 1.5 * labels).astype(np.float32)[:, None]

    def minority_recall(class_weight: dict[int, float] | None) -> float:
        tf_keras.utils.set_random_seed(0)
        classifier = tf_keras.Sequential([tf_keras.layers.Dense(2, activation="softmax", input_shape=(1,))])
        classifier.compile(tf_keras.optimizers.Adam(0.1), "sparse_categorical_crossentropy")
        classifier.fit(features, labels, epochs=8, batch_size=250, verbose=0, class_weight=class_weight)
        predicted = np.argmax(classifier(features), axis=1)
        return float((predicted[labels == 1] == 1).mean())

    plain, weighted = minority_recall(None), minority_recall(losses.class_weights(np.bincount(labels)))
    assert weighted > plain + 0.3, (plain, weighted)


def test_focal_loss_values() -> None:
    labels = tf.constant([0, 1])
    probabilities = tf.constant([[0.9, 0.1], [0.6, 0.4]])  # one easy, one hard example
    cross_entropy = -np.log([0.9, 0.4])
    np.testing.assert_allclose(
        losses.SparseFocalLoss(2, 0.0).call(labels, probabilities), cross_entropy, rtol=1e-5
    )
    focal = losses.SparseFocalLoss(2, 2.0).call(labels, probabilities).numpy()
    np.testing.assert_allclose(focal, cross_entropy * np.array([0.1, 0.6]) ** 2, rtol=1e-5)
    assert focal[0] / cross_entropy[0] < focal[1] / cross_entropy[1]  # the easy one is down-weighted more
    smoothed = losses.SparseFocalLoss(2, 0.0, label_smoothing=0.2).call(labels[:1], probabilities[:1]).numpy()
    np.testing.assert_allclose(smoothed, -(0.9 * np.log(0.9) + 0.1 * np.log(0.1)), rtol=1e-5)
    assert isinstance(
        losses.make_loss(2, TrainingConfig(focal_loss_gamma=2.0, label_smoothing=0.0)), losses.SparseFocalLoss
    )
    assert isinstance(
        losses.make_loss(2, TrainingConfig(focal_loss_gamma=0.0, label_smoothing=0.0)),
        tf_keras.losses.SparseCategoricalCrossentropy,
    )


# --------------------------------------------------------------------------
# Hyperparameters, baselines


def test_tuned_hyperparameters_override_the_config() -> None:
    custom_config = trainer_custom_config(from_dict({}), "/tmp/unused")
    tuner_output = {"space": [], "values": {"learning_rate": 3e-4, "dropout": 0.4, "unfreeze_layers": 80}}
    settings = TrainerSettings.from_custom_config(custom_config, tuner_output)
    assert settings.learning_rate == 3e-4 and settings.finetune_learning_rate == pytest.approx(3e-5)
    assert settings.model.dropout == 0.4 and settings.training.unfreeze_layers == 80
    assert custom_config["model"]["dropout"] == 0.2  # the config itself is untouched
    with pytest.raises(ValueError, match="Unknown hyperparameters"):
        TrainerSettings.from_custom_config(custom_config, {"values": {"momentum": 0.9}})


def test_baselines() -> None:
    assert losses.baselines([50, 30, 20]) == {
        "random_guess_accuracy": pytest.approx(1 / 3),
        "majority_class_accuracy": 0.5,
    }


# --------------------------------------------------------------------------
# Sanity mode


def test_sanity_overfits_one_batch_then_restores_the_initial_weights() -> None:
    tf_keras.utils.set_random_seed(3)
    classifier, _ = build_classifier("small_cnn", 4, 16, "none", 0.2)
    initial = classifier.get_weights()
    images, labels = synthetic_images(16, seed=3)
    result = overfit_batch(classifier, images, labels, learning_rate=3e-3)
    assert result.passed and result.final_loss <= 0.1 < result.initial_loss
    for now, before in zip(classifier.get_weights(), initial, strict=True):
        np.testing.assert_array_equal(now, before)


def test_sanity_reports_a_batch_it_cannot_overfit() -> None:
    """A learning rate far too small cannot overfit: the result says so (run_fn then raises)."""
    classifier, _ = build_classifier("small_cnn", 4, 16, "none", 0.0)
    images, labels = synthetic_images(16)
    result = overfit_batch(classifier, images, labels, learning_rate=1e-9, max_steps=5)
    assert not result.passed and result.steps == 5 and result.final_loss > 1.0
