"""Each component's settings: a dataclass built from the one Config, round-tripping through the
JSON TFX stores, and refusing a wrong value with a message that names the key."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, get_args

import pytest

from visiontfx.components.edge_export.settings import EdgeSettings, EdgeTargets
from visiontfx.components.image_example_gen import spans
from visiontfx.components.image_example_gen.settings import IngestSettings, SplitConfig
from visiontfx.components.trainer.settings import TrainerSettings, TrainingConfig
from visiontfx.components.transform.settings import TransformSettings
from visiontfx.contracts.backbones import BACKBONES, Backbone
from visiontfx.contracts.settings import ConfigError
from visiontfx.pipeline.config import DataConfig, EdgeConfig, from_dict
from visiontfx.pipeline.dag import (
    edge_custom_config,
    ingest_settings,
    trainer_custom_config,
    trainer_settings,
    transform_settings,
)

CONFIG = from_dict(
    {
        "data": {"max_train_images": 120, "num_shards": 2, "splits": {"train": 0.8, "eval": 0.2}},
        "model": {"backbone": "small_cnn", "image_size": 48, "dropout": 0.3},
        "training": {"finetune_epochs": 5, "learning_rate": 3e-4, "lr_schedule": "cosine"},
        "augmentation": {"rotation": 0.2, "horizontal_flip": False},
        "serving": {"top_k": 2},
        "edge": {"parity_images": 300, "int8_max_drop": 2.5},
    }
)


def _through_json(values: dict[str, Any]) -> dict[str, Any]:
    """What a component reads back: TFX stores custom_config and exec properties as JSON text."""
    return json.loads(json.dumps(values))


# --------------------------------------------------------------------------
# Round trips


def test_trainer_settings_round_trip_through_the_custom_config_json() -> None:
    settings = trainer_settings(CONFIG, "/pipelines/root", ["cat", "dog"])
    assert settings.model == CONFIG.model and settings.training == CONFIG.training
    assert settings.augmentation == CONFIG.augmentation and settings.top_k == 2
    custom_config = trainer_custom_config(CONFIG, "/pipelines/root", ["cat", "dog"])
    # The shape of the Kubeflow runtime parameter trainer_custom_config.
    sections = {"model", "training", "augmentation", "top_k", "checkpoint_root", "class_names"}
    assert set(custom_config) == sections
    assert custom_config["training"]["finetune_epochs"] == 5
    assert custom_config["class_names"] == ["cat", "dog"]
    assert TrainerSettings.from_custom_config(_through_json(custom_config)) == settings


def test_ingest_settings_round_trip_through_the_options_json() -> None:
    settings = ingest_settings(CONFIG)
    assert type(settings) is IngestSettings  # only ImageExampleGen's keys, not source/path
    assert settings.caps == {"train": 120, "eval": 0, "test": 0}
    assert settings.splits == SplitConfig(train=0.8, eval=0.2, test=0.0) and settings.num_shards == 2
    assert IngestSettings.from_options(settings.to_json()) == settings
    assert "source" not in json.loads(settings.to_json())


def test_transform_settings_round_trip_through_the_custom_config_json() -> None:
    settings = transform_settings(CONFIG)
    assert settings == TransformSettings(backbone="small_cnn", image_size=48)
    assert settings.resolved_image_size == 48
    assert TransformSettings.from_custom_config(_through_json(settings.to_dict())) == settings


def test_edge_settings_round_trip_through_the_custom_config_json() -> None:
    custom_config = edge_custom_config(CONFIG, ["cat", "dog"])
    settings = EdgeSettings.from_custom_config(_through_json(custom_config))
    assert settings.parity_images == 300 and settings.max_drop("int8") == 2.5
    assert settings.backbone == "small_cnn" and settings.size == 48 and settings.class_names == ("cat", "dog")
    assert settings.to_dict() == custom_config
    assert "enabled" not in custom_config  # the on/off switch is the DAG's, not the component's
    with pytest.raises(ConfigError, match="'latency_runs' must be at least 1"):
        EdgeSettings.from_custom_config({**custom_config, "latency_runs": 0})


def test_defaults_live_once_in_the_component_settings() -> None:
    assert issubclass(DataConfig, IngestSettings)
    assert issubclass(EdgeConfig, EdgeTargets)
    assert ingest_settings(from_dict({})) == IngestSettings()  # the data section's defaults are these
    defaults = trainer_settings(from_dict({}), "")
    assert defaults.training == TrainingConfig() and defaults.top_k == from_dict({}).serving.top_k
    # A section may leave keys out (an older compiled pipeline): their defaults apply.
    partial = TrainerSettings.from_custom_config(
        {"model": {}, "training": {"seed": 7}, "augmentation": {}, "top_k": 3}
    )
    assert partial.training == dataclasses.replace(TrainingConfig(), seed=7)
    assert partial.checkpoint_root == "" and partial.class_names == ()


def test_the_backbone_type_lists_exactly_the_backbone_table() -> None:
    assert list(get_args(Backbone)) == list(BACKBONES)


def test_tuned_hyperparameters_are_checked_like_the_config() -> None:
    settings = trainer_settings(CONFIG, "")
    tuned = settings.with_hyperparameters({"dropout": 0.1, "unfreeze_layers": 20})
    assert tuned.model.dropout == 0.1 and tuned.training.unfreeze_layers == 20
    assert tuned.training.learning_rate == settings.training.learning_rate  # the rest is untouched
    with pytest.raises(ConfigError, match=r"'model\.dropout' must be in \[0, 1\)"):
        settings.with_hyperparameters({"dropout": 1.5})


# --------------------------------------------------------------------------
# A wrong value in the JSON names its key


def _edited(section: str, key: str, value: Any) -> dict[str, Any]:
    custom_config = _through_json(trainer_custom_config(CONFIG, ""))
    if section:
        custom_config[section][key] = value
    else:
        custom_config[key] = value
    return custom_config


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("training", "batch_size", 0, "'training.batch_size' must be at least 1"),
        ("training", "finetune_epochs", "7", "'training.finetune_epochs' must be an integer"),
        ("training", "lr_schedule", "linear", "Invalid value 'linear' for 'training.lr_schedule'"),
        ("training", "epochs", 3, "Unknown config key 'training.epochs'"),
        ("model", "backbone", "resnet50", "Invalid value 'resnet50' for 'model.backbone'"),
        ("augmentation", "zoom", 1.5, "'augmentation.zoom' must be in [0, 1)"),
        ("", "top_k", 0, "'top_k' must be at least 1"),
        ("", "class_names", {"cat": 0}, "'class_names' must be a list"),
    ],
)
def test_a_wrong_trainer_value_fails_naming_the_key(section: str, key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        TrainerSettings.from_custom_config(_edited(section, key, value))
    assert message in str(error.value)


def test_a_trainer_custom_config_without_a_required_key_says_which() -> None:
    custom_config = _through_json(trainer_custom_config(CONFIG, ""))
    del custom_config["top_k"]
    with pytest.raises(ConfigError, match="Missing config key 'top_k'"):
        TrainerSettings.from_custom_config(custom_config)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"num_shards": 0}, "'data.num_shards' must be at least 1"),
        ({"splits": {"train": 0.5, "eval": 0.1}}, "'data.splits' ratios must add up to 1"),
        ({"max_eval_images": -1}, "'data.max_eval_images' must be >= 0"),
        ({"source": "folder"}, "Unknown config key 'data.source'"),
    ],
)
def test_a_wrong_ingest_option_fails_naming_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        IngestSettings.from_options(json.dumps(values))
    assert message in str(error.value)


def test_image_example_gen_refuses_bad_options_before_reading_anything(tmp_path: Any) -> None:
    exec_properties = {"source": "folder", "input_base": str(tmp_path), "options": '{"span_window": 0}'}
    with pytest.raises(ConfigError, match=r"'data\.span_window' must be at least 1"):
        spans.resolve_exec_properties(exec_properties)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"backbone": "resnet50", "image_size": 0}, "Invalid value 'resnet50' for 'model.backbone'"),
        ({"backbone": "small_cnn", "image_size": 8}, "'model.image_size' must be 0 (backbone default)"),
        ({"backbone": "small_cnn"}, "Missing config key 'model.image_size'"),
    ],
)
def test_a_wrong_transform_value_fails_naming_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        TransformSettings.from_custom_config(values)
    assert message in str(error.value)


def test_push_settings_take_the_serving_sections_defaults_and_checks(tmp_path: Any) -> None:
    from visiontfx.components.pusher.executor import PushSettings
    from visiontfx.components.pusher.settings import PushTargets
    from visiontfx.pipeline.config import ServingConfig
    from visiontfx.pipeline.dag import RunLocations, create_pipeline
    from visiontfx.pipeline.dag_inputs import gather_inputs

    assert issubclass(ServingConfig, PushTargets)
    targets = PushTargets()
    pushed = PushSettings(model_name=targets.model_name)
    assert (pushed.keep_versions, pushed.warmup_requests) == (targets.keep_versions, targets.warmup_requests)
    config = from_dict({"serving": {"model_name": "shoes", "keep_versions": 5}})
    locations = RunLocations(str(tmp_path / "root"), str(tmp_path / "serving"), str(tmp_path / "m.sqlite"))
    pusher = next(
        c
        for c in create_pipeline(config, locations, gather_inputs(config, "")).components
        if c.id == "Pusher"
    )
    custom_config = json.loads(pusher.exec_properties["custom_config"])
    assert PushTargets.from_dict(custom_config) == PushTargets("shoes", 5, targets.warmup_requests)
    settings = PushSettings.from_custom_config(custom_config, "/srv/models/shoes")
    assert (settings.model_name, settings.keep_versions) == ("shoes", 5)
    with pytest.raises(ConfigError, match="'keep_versions' must be at least 1"):
        PushSettings(model_name="shoes", keep_versions=0)
    with pytest.raises(ConfigError, match=r"'serving\.model_name' must be a non-empty name"):
        from_dict({"serving": {"model_name": "a/b"}})
