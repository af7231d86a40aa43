"""Configuration: typed, validated, loaded from YAML with CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from visiontfx.pipeline.config import (
    DEMO_CONFIG,
    Config,
    ConfigError,
    apply_overrides,
    from_dict,
    load_config,
)


def test_shipped_configs_are_valid() -> None:
    for path in sorted(DEMO_CONFIG.parent.glob("*.yaml")):
        config = load_config(path)
        assert isinstance(config, Config), path


def test_demo_config_is_the_default() -> None:
    config = load_config()
    assert config.data.source == "fashion_mnist"
    assert config.model.backbone == "efficientnet_lite0"
    assert config.model.weights == "imagenet"


def test_overrides_are_typed_like_yaml() -> None:
    config = load_config(
        None,
        [
            "training.batch_size=16",
            "training.learning_rate=2e-4",
            "augmentation.enabled=false",
            "serving.model_name=shoes",
        ],
    )
    assert config.training.batch_size == 16
    assert config.training.learning_rate == pytest.approx(2e-4)
    assert config.augmentation.enabled is False
    assert config.serving.model_name == "shoes"


def test_int_given_for_float_is_accepted() -> None:
    assert from_dict({"training": {"learning_rate": 1}}).training.learning_rate == 1.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"modle": {}}, "Unknown config key 'modle'. Did you mean 'model'?"),
        ({"model": {"backbon": "x"}}, "Unknown config key 'model.backbon'. Did you mean 'backbone'?"),
        ({"model": {"backbone": "resnet50"}}, "Allowed values: efficientnet_lite0"),
        ({"training": {"precision": "fp8"}}, "'training.precision'"),
        ({"training": {"batch_size": "big"}}, "'training.batch_size' must be an integer"),
        ({"training": {"batch_size": 0}}, "'training.batch_size' must be at least 1"),
        ({"augmentation": {"enabled": "yes"}}, "'augmentation.enabled' must be true or false"),
        ({"data": {"splits": {"train": 0.5, "eval": 0.1, "test": 0.1}}}, "must add up to 1"),
        ({"data": {"source": "folder"}}, "'data.path' is required when source is 'folder'"),
        ({"data": {"source": "tfds"}}, "'data.tfds_name' is required"),
        ({"evaluation": {"min_accuracy": 1.5}}, "'evaluation.min_accuracy'"),
        ({"serving": {"model_name": "a/b"}}, "'serving.model_name'"),
        ({"training": {"warmup_epochs": 0, "finetune_epochs": 0}}, "at least 1"),
        ({"model": "lite"}, "'model' must be a mapping"),
        ({"data": {"class_names": ["a", "a"]}}, "'data.class_names' must be distinct"),
        ({"data": {"class_names": ["a", "b"]}}, "'data.class_names' is for source 'tfrecord' only"),
        ({"data": {"class_names": {"a": 1}}}, "'data.class_names' must be a list"),
        (
            {"edge": {"int8_max_drop": -1}},
            "'edge.float16_max_drop' and 'edge.int8_max_drop' are accuracy points",
        ),
        ({"edge": {"representative_images": 0}}, "'edge.representative_images' must be at least 1"),
        ({"edge": {"parity_images": -5}}, "'edge.parity_images' must be >= 0"),
        ({"inference": {"paht": "x"}}, "Did you mean 'path'?"),
    ],
)
def test_bad_values_fail_naming_the_key(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        from_dict(values)
    assert message in str(error.value)


def test_class_names_from_yaml_lists_and_comma_separated_overrides() -> None:
    import yaml

    tfrecord = ["data.source=tfrecord", "data.path=/data"]
    from_list = load_config(None, [*tfrecord, "data.class_names=[cat, dog]"])
    from_commas = load_config(None, [*tfrecord, "data.class_names=cat, dog"])
    assert from_list.data.class_names == from_commas.data.class_names == ("cat", "dog")
    plain = from_list.to_dict()
    assert plain["data"]["class_names"] == ["cat", "dog"]
    assert from_dict(yaml.safe_load(yaml.safe_dump(plain))) == from_list  # round trip through YAML


def test_override_syntax_errors() -> None:
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        apply_overrides({}, ["training.batch_size"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"model": {"backbone": "x"}}, ["model.backbone.size=3"])


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(bad)


def test_replace_revalidates() -> None:
    config = load_config()
    assert config.replace(["data.max_train_images=10"]).data.max_train_images == 10
    with pytest.raises(ConfigError):
        config.replace(["data.max_train_images=-1"])


def test_cli_reports_config_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from visiontfx.tools.cli import main

    assert main(["config", "model.backbon=x"]) == 2
    assert "Did you mean 'backbone'" in capsys.readouterr().err
    assert main(["config", "training.seed=7"]) == 0
    assert "seed: 7" in capsys.readouterr().out


def test_span_window_needs_a_span_pattern() -> None:
    with pytest.raises(ConfigError, match=r"span_window.*\{SPAN\}"):
        from_dict({"data": {"source": "folder", "path": "/data/photos", "span_window": 2}})
    config = from_dict({"data": {"source": "folder", "path": "/data/span-{SPAN}", "span_window": 2}})
    assert config.data.span_window == 2
    with pytest.raises(ConfigError, match=r"drift\.action"):
        from_dict({"drift": {"action": "ignore"}})
    with pytest.raises(ConfigError, match=r"drift\.label_threshold"):
        from_dict({"drift": {"label_threshold": 0}})
