"""The Pusher executor: TF Serving's layout, configs and warmup file, atomic pushes, and a
running server following pushes (new versions, labels moved by promote, unloading) without a restart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import serving_fixtures
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from serving_fixtures import (
    MODEL_NAME,
    b64,
    in_process,
    push,
    rest,
    sample_images,
    start_local_server,
    wait_for,
)

from visiontfx.components.pusher import serving_config as sc

tiny_models = serving_fixtures.tiny_models  # shared fixture, found by pytest under this name
IMAGES = sample_images(4)


# --------------------------------------------------------------------------
# Pure rendering (no TFX, no TensorFlow)


def _proto_class(file_name: str, message: str, fields: list[tuple[str, str, int, int, str]]) -> Any:
    """A message class built from a descriptor: (message, field, number, type, type_name) per field.

    BatchingParameters and MonitoringConfig are not in tensorflow-serving-api;
    these mirror TF Serving's session_bundle_config.proto and monitoring_config.proto.
    """
    file_proto = descriptor_pb2.FileDescriptorProto(
        name=file_name,
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    messages: dict[str, descriptor_pb2.DescriptorProto] = {}
    for owner, name, number, kind, type_name in fields:
        if owner not in messages:
            messages[owner] = file_proto.message_type.add(name=owner)
        label = F.LABEL_REPEATED if name == "allowed_batch_sizes" else F.LABEL_OPTIONAL
        field = messages[owner].field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(wrappers_descriptor()))
    pool.Add(file_proto)
    descriptor = pool.FindMessageTypeByName(f"tensorflow.serving.{message}")
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def wrappers_descriptor() -> bytes:
    from google.protobuf import wrappers_pb2

    proto = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(proto)
    return proto.SerializeToString()


F = descriptor_pb2.FieldDescriptorProto
INT64_WRAPPER = (F.TYPE_MESSAGE, ".google.protobuf.Int64Value")
BATCHING_FIELDS = [
    ("BatchingParameters", "max_batch_size", 1, *INT64_WRAPPER),
    ("BatchingParameters", "batch_timeout_micros", 2, *INT64_WRAPPER),
    ("BatchingParameters", "max_enqueued_batches", 3, *INT64_WRAPPER),
    ("BatchingParameters", "num_batch_threads", 4, *INT64_WRAPPER),
    ("BatchingParameters", "thread_pool_name", 5, F.TYPE_MESSAGE, ".google.protobuf.StringValue"),
    ("BatchingParameters", "allowed_batch_sizes", 6, F.TYPE_INT64, ""),
    ("BatchingParameters", "pad_variable_length_inputs", 7, F.TYPE_BOOL, ""),
]
MONITORING_FIELDS = [
    ("PrometheusConfig", "enable", 1, F.TYPE_BOOL, ""),
    ("PrometheusConfig", "path", 2, F.TYPE_STRING, ""),
    ("MonitoringConfig", "prometheus_config", 1, F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig"),
]


def test_batching_and_monitoring_configs_parse_as_tf_serving_protos() -> None:
    batching = text_format.Parse(
        sc.render_batching_config(sc.BatchingSettings()),
        _proto_class("session_bundle_config.proto", "BatchingParameters", BATCHING_FIELDS)(),
    )
    assert batching.max_batch_size.value == 32 and batching.num_batch_threads.value == 4
    assert list(batching.allowed_batch_sizes) == [1, 2, 4, 8, 16, 32]
    monitoring = text_format.Parse(
        sc.render_monitoring_config(),
        _proto_class("monitoring_config.proto", "MonitoringConfig", MONITORING_FIELDS)(),
    )
    assert monitoring.prometheus_config.enable and monitoring.prometheus_config.path == sc.PROMETHEUS_PATH


def test_batching_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="end with max_batch_size"):
        sc.BatchingSettings(max_batch_size=16)
    with pytest.raises(ValueError, match="Unknown batching settings"):
        sc.BatchingSettings.from_mapping({"max_batch": 8})
    custom = sc.BatchingSettings.from_mapping({"max_batch_size": 8, "allowed_batch_sizes": [4, 8]})
    assert custom.allowed_batch_sizes == (4, 8)


def test_versions_and_labels() -> None:
    assert sc.integer_versions(["3", ".push-4-ab12", "10/", "tmp", "2.5"]) == [3, 10]
    # The first push creates the labels; later pushes never move them.
    assert sc.labels_after_push({}, [7], 7, canary=False) == {"stable": 7}
    assert sc.labels_after_push({}, [7], 7, canary=True) == {"stable": 7, "canary": 7}
    assert sc.labels_after_push({"stable": 5, "canary": 7}, [5, 7, 9], 9, canary=True) == {
        "stable": 5,
        "canary": 7,
    }
    # A label on a version gone from disk is dropped; with none left, the push labels its version.
    assert sc.labels_after_push({"stable": 5, "canary": 7}, [7, 9], 9, canary=True) == {"canary": 7}
    assert sc.labels_after_push({"stable": 5}, [9], 9, canary=False) == {"stable": 9}
    # Labelled versions are kept besides the newest keep_versions.
    assert sc.versions_to_keep([1, 2, 3, 4], 2, {"stable": 1}) == [1, 3, 4]
    assert sc.versions_to_keep([1, 2, 3, 4], 2, {"stable": 4, "gone": 9}) == [3, 4]


def test_models_config_policies_labels_and_merge() -> None:
    labels = {"stable": 1, "canary": 2}
    latest = sc.model_config("fashion", "/srv/fashion", [1, 2, 3], labels)
    assert latest.model_version_policy.latest.num_versions == 3  # every kept version, however old
    assert dict(latest.version_labels) == labels
    specific = sc.model_config("fashion", "/srv/fashion", [1, 2, 3, 4], labels, policy="specific")
    assert list(specific.model_version_policy.specific.versions) == [1, 2, 4]  # labelled and the newest
    with pytest.raises(ValueError, match="Unknown version policy"):
        sc.model_config("fashion", "/srv/fashion", [1], {}, policy="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be absolute"):
        sc.model_config("fashion", "srv/fashion", [1], {})
    assert sc.model_config("fashion", "gs://bucket/fashion", [1], {}).base_path == "gs://bucket/fashion"

    # Moving a label: a specific policy stops loading what no label (and not the newest) needs.
    moved = sc.move_label(specific, "stable", 4)
    assert dict(moved.version_labels) == {"stable": 4, "canary": 2}
    assert list(moved.model_version_policy.specific.versions) == [2, 4]
    assert dict(specific.version_labels) == labels  # the input is not changed
    assert sc.move_label(latest, "canary", 3).model_version_policy.latest.num_versions == 3

    other = sc.model_config("digits", "/srv/digits", [4], {})
    merged = sc.merge_model_config(sc.merge_model_config(None, latest), other)
    merged = sc.merge_model_config(merged, specific)  # replaces fashion in place, keeps digits
    parsed = sc.parse_models_config(sc.render_models_config(merged))
    assert [c.name for c in parsed.model_config_list.config] == ["fashion", "digits"]
    assert parsed.model_config_list.config[0].model_platform == "tensorflow"
    assert parsed.model_config_list.config[0].model_version_policy.WhichOneof("policy_choice") == "specific"
    assert sc.find_model(parsed, "digits") == other and sc.find_model(parsed, "nope") is None


def test_warmup_records_are_prediction_logs() -> None:
    from tensorflow_serving.apis import prediction_log_pb2

    records = [prediction_log_pb2.PredictionLog.FromString(r) for r in sc.warmup_records(IMAGES, "m")]
    assert len(records) == len(IMAGES) + 1
    batch = records[-1].predict_log.request
    assert batch.model_spec.name == "m" and batch.model_spec.signature_name == "serving_default"
    assert list(batch.inputs["image_bytes"].string_val) == IMAGES
    assert batch.inputs["image_bytes"].tensor_shape.dim[0].size == len(IMAGES)


def test_push_settings_from_custom_config() -> None:
    from visiontfx.components.pusher.executor import PushSettings

    settings = PushSettings.from_custom_config(None, "/srv/models/fashion/")
    assert (settings.model_name, settings.keep_versions, settings.canary) == ("fashion", 3, False)
    settings = PushSettings.from_custom_config(
        {"keep_versions": 2, "batching": {"num_batch_threads": 8}}, "/x/m"
    )
    assert settings.keep_versions == 2 and settings.batching.num_batch_threads == 8
    with pytest.raises(ValueError, match="Unknown Pusher custom_config keys"):
        PushSettings.from_custom_config({"keep": 2}, "/x/m")
    with pytest.raises(ValueError, match="keep_versions"):
        PushSettings.from_custom_config({"keep_versions": 0}, "/x/m")


# --------------------------------------------------------------------------
# Pushing


def _write_examples(path: Path, images: list[bytes]) -> str:
    """A GZIP TFRecord of tf.Examples like ExampleGen's, returns a glob for it."""
    import tensorflow as tf

    path.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path / "data.gz"), options="GZIP") as writer:
        for record in serving_fixtures.examples(images):
            writer.write(record)
    return str(path / "*")


def _read_warmup(version_dir: str) -> list[Any]:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(version_dir, sc.WARMUP_FILE)
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def test_push_writes_what_tf_serving_reads(tiny_models: list[str], tmp_path: Path) -> None:
    from tensorflow.python.saved_model import fingerprinting_utils, loader_impl

    examples = _write_examples(tmp_path / "examples", IMAGES)
    version_dir = push(tiny_models[0], tmp_path / "serving", warmup_examples_uri=examples, warmup_requests=3)
    base = Path(version_dir).parent
    assert os.listdir(base) == [Path(version_dir).name]  # no staging leftovers

    config = sc.parse_models_config((tmp_path / "serving" / sc.MODELS_CONFIG).read_text())
    (entry,) = config.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == (MODEL_NAME, str(base), "tensorflow")
    assert entry.model_version_policy.latest.num_versions == 1  # the versions on disk
    assert dict(entry.version_labels) == {"stable": int(Path(version_dir).name)}
    assert (tmp_path / "serving" / sc.BATCHING_CONFIG).is_file()
    assert (tmp_path / "serving" / sc.MONITORING_CONFIG).is_file()

    records = _read_warmup(version_dir)
    assert [len(r.predict_log.request.inputs["image_bytes"].string_val) for r in records] == [1, 1, 1, 3]
    assert list(records[-1].predict_log.request.inputs["image_bytes"].string_val) == IMAGES[:3]

    signatures = loader_impl.parse_saved_model(version_dir).meta_graphs[0].signature_def
    assert signatures["classification"].method_name == "tensorflow/serving/classify"
    assert set(signatures["classification"].outputs) == {"classes", "scores"}
    # fingerprint.pb was rewritten with the new saved_model.pb's checksum.
    assert fingerprinting_utils.singleprint_from_fingerprint_proto(
        version_dir
    ) == fingerprinting_utils.singleprint_from_saved_model_proto(version_dir)


def test_warmup_images_saved_by_the_trainer_are_used(tiny_models: list[str], tmp_path: Path) -> None:
    import shutil

    from visiontfx.components.serving.signatures import WARMUP_IMAGES_DIR, save_warmup_images

    export = tmp_path / "export"
    shutil.copytree(tiny_models[0], export)
    assert save_warmup_images(str(export), [_write_examples(tmp_path / "examples", IMAGES)], count=2) == 2
    assert sorted(os.listdir(export / WARMUP_IMAGES_DIR)) == ["000.png", "001.jpg"]
    records = _read_warmup(push(str(export), tmp_path / "serving"))
    assert list(records[-1].predict_log.request.inputs["image_bytes"].string_val) == IMAGES[:2]


def test_failed_push_leaves_no_partial_version(
    tiny_models: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tfx.dsl.io import fileio

    serving = tmp_path / "serving"
    first = push(tiny_models[0], serving, warmup=IMAGES[:1])
    models_config = (serving / sc.MODELS_CONFIG).read_text()
    copied: list[str] = []
    real_copy = fileio.copy

    def failing_copy(src: str, dst: str, overwrite: bool = False) -> None:
        if len(copied) == 2:  # half-way through the SavedModel's files
            raise OSError("disk full (simulated)")
        copied.append(dst)
        real_copy(src, dst, overwrite)

    monkeypatch.setattr(fileio, "copy", failing_copy)
    with pytest.raises(OSError, match="simulated"):
        push(tiny_models[1], serving, warmup=IMAGES[:1])
    assert copied and all(f"{os.sep}.push-" in path for path in copied)  # it was copying aside
    assert os.listdir(serving / MODEL_NAME) == [Path(first).name]
    assert (serving / sc.MODELS_CONFIG).read_text() == models_config


def test_versions_increase_and_old_ones_are_pruned(tiny_models: list[str], tmp_path: Path) -> None:
    from visiontfx.components.pusher.executor import PushSettings, push_model

    base = str(tmp_path / "serving" / MODEL_NAME)
    settings = PushSettings(model_name=MODEL_NAME, keep_versions=2, warmup_requests=0)
    frozen_clock = lambda: 1_000_000.0  # noqa: E731  (three pushes within one second)
    versions = [Path(push_model(tiny_models[0], base, settings, clock=frozen_clock)).name for _ in range(3)]
    assert versions == ["1000000", "1000001", "1000002"]
    # keep_versions=2 and the version stable names (the first push's) is kept besides.
    assert sorted(os.listdir(base)) == versions
    models_config = tmp_path / "serving" / sc.MODELS_CONFIG
    (entry,) = sc.parse_models_config(models_config.read_text()).model_config_list.config
    assert dict(entry.version_labels) == {"stable": 1000000}
    assert entry.model_version_policy.latest.num_versions == 3
    # Once the label moves on (what `visiontfx promote` writes), the next push prunes it.
    sc.write_text(str(models_config), sc.render_models_config(
        sc.merge_model_config(None, sc.move_label(entry, "stable", 1000002))
    ))  # fmt: skip
    versions.append(Path(push_model(tiny_models[0], base, settings, clock=frozen_clock)).name)
    assert sorted(os.listdir(base)) == versions[2:]
    (entry,) = sc.parse_models_config(models_config.read_text()).model_config_list.config
    assert (dict(entry.version_labels), entry.model_version_policy.latest.num_versions) == (
        {"stable": 1000002},
        2,
    )


def test_executor_pushes_only_blessed_models(tiny_models: list[str], tmp_path: Path) -> None:
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import json_utils, proto_utils

    from visiontfx.components.pusher.executor import Executor

    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    Path(model.uri).mkdir()
    os.symlink(tiny_models[0], os.path.join(model.uri, "Format-Serving"))
    base = str(tmp_path / "serving" / "fashion")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base)
    )
    exec_properties = {
        "push_destination": proto_utils.proto_to_json(destination),
        "custom_config": json_utils.dumps({"keep_versions": 2, "warmup_requests": 0}),
    }

    def run(blessed: int) -> Any:
        blessing = standard_artifacts.ModelBlessing()
        blessing.uri = str(tmp_path / f"blessing{blessed}")
        blessing.set_int_custom_property("blessed", blessed)
        pushed = standard_artifacts.PushedModel()
        pushed.uri = str(tmp_path / f"pushed{blessed}")
        inputs = {"model": [model], "model_blessing": [blessing]}
        Executor().Do(inputs, {"pushed_model": [pushed]}, exec_properties)
        return pushed

    not_pushed = run(0)
    assert not_pushed.get_int_custom_property("pushed") == 0 and not os.path.exists(base)
    pushed = run(1)
    assert pushed.get_int_custom_property("pushed") == 1
    version_dir = pushed.get_string_custom_property("pushed_destination")
    assert os.path.dirname(version_dir) == base and os.path.isfile(
        os.path.join(version_dir, "saved_model.pb")
    )
    assert pushed.get_string_custom_property("pushed_version") == os.path.basename(version_dir)
    assert os.path.isfile(os.path.join(pushed.uri, "saved_model.pb"))  # the archive copy
    config = sc.parse_models_config((tmp_path / "serving" / sc.MODELS_CONFIG).read_text())
    assert config.model_config_list.config[0].name == "fashion"


# --------------------------------------------------------------------------
# A running server follows the pushes


@pytest.fixture(scope="module")
def live(tiny_models: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    serving_dir = tmp_path_factory.mktemp("live")
    first = push(tiny_models[0], serving_dir, warmup=IMAGES[:1], keep_versions=2, canary=True)
    # As `visiontfx serve` and the cluster run TF Serving: a model's first push labels a
    # version still loading, which TF Serving accepts for new labels with this flag only.
    server = start_local_server(serving_dir, allow_version_labels_for_unavailable_models=True)
    yield {"server": server, "dir": serving_dir, "first": first}
    server.stop()


def _scores(port: int, path: str) -> np.ndarray:
    status, answer = rest(port, "POST", path, {"instances": b64(IMAGES)})
    assert status == 200, answer
    return np.float32([row["scores"] for row in answer["predictions"]])


def _states(port: int, model: str = MODEL_NAME) -> dict[int, str]:
    status, answer = rest(port, "GET", f"/v1/models/{model}")
    return (
        {int(s["version"]): s["state"] for s in answer.get("model_version_status", [])}
        if status == 200
        else {}
    )


def test_server_follows_pushes_labels_and_policy(tiny_models: list[str], live: dict[str, Any]) -> None:
    from visiontfx.tools.serving.promote import promote, rest_version_state

    port, base = live["server"].rest_port, f"/v1/models/{MODEL_NAME}"
    state_of = rest_version_state(f"http://127.0.0.1:{port}", MODEL_NAME)
    settings = {"warmup": IMAGES[:1], "keep_versions": 2, "canary": True}
    v1 = live["first"]
    answers = {path: in_process(path, IMAGES)["scores"] for path in (tiny_models[0], tiny_models[1])}
    assert not np.allclose(answers[tiny_models[0]], answers[tiny_models[1]])  # versions are distinguishable

    # A new version pushed while the server runs is served without a restart; labels stay.
    v2 = push(tiny_models[1], live["dir"], **settings)
    n1, n2 = int(Path(v1).name), int(Path(v2).name)
    wait_for(lambda: _states(port).get(n2) == "AVAILABLE", what="version 2 to load")
    np.testing.assert_array_equal(_scores(port, f"{base}:predict"), answers[tiny_models[1]])
    assert live["server"].manager.labels(MODEL_NAME) == {"stable": n1, "canary": n1}

    # Canary phase: canary moves to version 2 once it is AVAILABLE; stable stays on version 1.
    promote(str(live["dir"]), MODEL_NAME, "canary", n2, state_of)
    wait_for(lambda: live["server"].manager.labels(MODEL_NAME) == {"stable": n1, "canary": n2}, what="labels")
    np.testing.assert_array_equal(_scores(port, f"{base}/labels/stable:predict"), answers[tiny_models[0]])
    np.testing.assert_array_equal(_scores(port, f"{base}/labels/canary:predict"), answers[tiny_models[1]])

    # Version 3 arrives; version 1 is kept while stable names it. Promoting stable to
    # version 2 and canary to version 3 frees it: the next push prunes it and it unloads.
    v3 = push(tiny_models[0], live["dir"], **settings)
    n3 = int(Path(v3).name)
    wait_for(lambda: _states(port).get(n3) == "AVAILABLE", what="version 3 to load")
    assert os.path.exists(v1) and _states(port)[n1] == "AVAILABLE"
    promote(str(live["dir"]), MODEL_NAME, "stable", n2, state_of)
    promote(str(live["dir"]), MODEL_NAME, "canary", n3, state_of)
    wait_for(lambda: live["server"].manager.labels(MODEL_NAME) == {"stable": n2, "canary": n3}, what="labels")
    np.testing.assert_array_equal(_scores(port, f"{base}/labels/stable:predict"), answers[tiny_models[1]])
    np.testing.assert_array_equal(_scores(port, f"{base}/labels/canary:predict"), answers[tiny_models[0]])
    v4 = push(tiny_models[1], live["dir"], **settings)
    n4 = int(Path(v4).name)
    wait_for(
        lambda: _states(port) == {n1: "END", n2: "AVAILABLE", n3: "AVAILABLE", n4: "AVAILABLE"},
        what="version 1 unloaded",
    )
    assert not os.path.exists(v1)
    status, answer = rest(port, "POST", f"{base}/versions/{n1}:predict", {"instances": b64(IMAGES[:1])})
    assert status == 404 and f"Specific({MODEL_NAME}, {n1})" in answer["error"]


def test_a_second_model_with_a_specific_policy_appears(tiny_models: list[str], live: dict[str, Any]) -> None:
    port = live["server"].rest_port
    for model_dir in tiny_models:
        last = push(model_dir, live["dir"], model_name="other", version_policy="specific", warmup_requests=0)
    newest = int(Path(last).name)
    (first,) = [v for v in sc.integer_versions(os.listdir(live["dir"] / "other")) if v != newest]

    def served_versions() -> list[int]:
        return sorted(version for version, state in _states(port, "other").items() if state == "AVAILABLE")

    # "specific" loads the labelled versions (stable: the first push's) and the newest.
    wait_for(
        lambda: served_versions() == [first, newest], what="the second model's stable and newest versions"
    )
    assert _states(port)  # the first model is still served from the merged models.config
    config = sc.parse_models_config((live["dir"] / sc.MODELS_CONFIG).read_text())
    assert [entry.name for entry in config.model_config_list.config] == [MODEL_NAME, "other"]
