"""TF Serving's rules, mirrored by the local server and followed by the Pusher and ``promote``.

Each test here fails on a server looser than TF Serving: labels move only onto
AVAILABLE versions (a refused reload changes nothing), loads preserve
availability, integer folders without saved_model.pb are versions still
loading, base paths are absolute. The push sequence v1, v2 (fails to load), v3
keeps ``stable`` on a loaded version at every step, in the server and in the
models.config the Pusher and ``promote`` write.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import serving_fixtures
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
server_factory = serving_fixtures.server_factory
IMAGES = sample_images(3)
FAST_RETRIES = {"max_num_load_retries": 1, "load_retry_interval_seconds": 0.2}


def _version(path: str) -> int:
    return int(Path(path).name)


def _entry(serving_dir: Path, name: str = MODEL_NAME) -> Any:
    entry = sc.find_model(sc.parse_models_config((serving_dir / sc.MODELS_CONFIG).read_text()), name)
    assert entry is not None
    return entry


def _write_config(serving_dir: Path, *entries: Any) -> None:
    config = None
    for entry in entries:
        config = sc.merge_model_config(config, entry)
    assert config is not None
    # A distinct mtime per write: the server re-reads the file when its mtime changes.
    path = serving_dir / sc.MODELS_CONFIG
    previous = path.stat().st_mtime if path.exists() else 0.0
    sc.write_text(str(path), sc.render_models_config(config))
    os.utime(path, (previous + 1, previous + 1))


def _scores(port: int, path: str) -> np.ndarray:
    status, answer = rest(port, "POST", path, {"instances": b64(IMAGES)})
    assert status == 200, answer
    return np.float32([row["scores"] for row in answer["predictions"]])


def _copy_version(model_dir: str, base: Path, version: int) -> Path:
    target = base / str(version)
    shutil.copytree(model_dir, target)
    return target


# --------------------------------------------------------------------------
# The release sequence


@pytest.mark.parametrize("policy", ["latest", "specific"])
def test_push_sequence_keeps_stable_on_a_loaded_version(
    tiny_models: list[str], tmp_path: Path, server_factory: Any, policy: str
) -> None:
    from visiontfx.tools.serving.promote import NotAvailableError, Promotion, promote, rest_version_state

    serving = tmp_path / "serving"
    settings = {"keep_versions": 1, "version_policy": policy}
    answers = [in_process(model, IMAGES)["scores"] for model in tiny_models]
    v1 = _version(push(tiny_models[0], serving, warmup=IMAGES[:1], **settings))
    server = server_factory(serving, allow_version_labels_for_unavailable_models=True, **FAST_RETRIES)
    port, url = server.rest_port, f"http://127.0.0.1:{server.rest_port}"
    state_of = rest_version_state(url, MODEL_NAME)

    def stable_is(version: int, answer: np.ndarray) -> None:
        """stable names a loaded version in the server AND in the written models.config."""
        assert server.manager.labels(MODEL_NAME)["stable"] == version
        assert dict(_entry(serving).version_labels)["stable"] == version
        assert state_of(version) == "AVAILABLE"
        np.testing.assert_array_equal(_scores(port, f"/v1/models/{MODEL_NAME}/labels/stable:predict"), answer)

    stable_is(v1, answers[0])

    # v2 fails to load (its warmup request is not an image): v1 keeps serving as stable.
    v2 = _version(push(tiny_models[1], serving, warmup=[b"not an image"], **settings))
    stable_is(v1, answers[0])  # the push itself moved no label
    wait_for(lambda: state_of(v2) == "END", what="version 2 to fail for good")
    stable_is(v1, answers[0])
    status = rest(port, "GET", f"/v1/models/{MODEL_NAME}/versions/{v2}")[1]["model_version_status"][0]
    assert "must hold encoded JPEG, PNG, GIF or BMP" in status["status"]["error_message"]
    # keep_versions=1, but the labelled version stays on disk and loaded.
    assert sorted(os.listdir(serving / MODEL_NAME)) == [str(v1), str(v2)]
    with pytest.raises(NotAvailableError, match="failed to load"):
        promote(str(serving), MODEL_NAME, "stable", v2, state_of)
    stable_is(v1, answers[0])

    # v3 loads; v2 (unlabelled, superseded) is pruned; stable waits for promote.
    v3 = _version(push(tiny_models[1], serving, warmup=IMAGES[:1], **settings))
    assert sorted(os.listdir(serving / MODEL_NAME)) == [str(v1), str(v3)]
    stable_is(v1, answers[0])
    wait_for(lambda: state_of(v3) == "AVAILABLE", what="version 3 to load")
    stable_is(v1, answers[0])
    promoted = promote(str(serving), MODEL_NAME, "stable", None, state_of)
    assert promoted == Promotion(MODEL_NAME, "stable", v3, v1)
    wait_for(lambda: server.manager.labels(MODEL_NAME)["stable"] == v3, what="the server to apply the move")
    stable_is(v3, answers[1])

    # Nothing holds v1 any more: the next push prunes it.
    v4 = _version(push(tiny_models[0], serving, warmup=IMAGES[:1], **settings))
    assert sorted(os.listdir(serving / MODEL_NAME)) == [str(v3), str(v4)]
    stable_is(v3, answers[1])


# --------------------------------------------------------------------------
# Label moves


def test_a_label_move_to_a_version_not_available_is_refused_as_a_whole(
    tiny_models: list[str], tmp_path: Path, server_factory: Any
) -> None:
    serving = tmp_path / "serving"
    v1 = _version(push(tiny_models[0], serving, warmup=IMAGES[:1], version_policy="specific"))
    base = serving / MODEL_NAME
    v2 = v1 + 1
    _copy_version(tiny_models[1], base, v2)  # on disk, outside the specific policy
    server = server_factory(serving, **FAST_RETRIES)
    assert server.manager.labels(MODEL_NAME) == {"stable": v1}
    one_step = sc.move_label(
        sc.model_config(MODEL_NAME, str(base), [v1, v2], {"stable": v1}, "specific"), "stable", v2
    )
    assert list(one_step.model_version_policy.specific.versions) == [v2]

    # Adding v2 and moving stable onto it in one reload: TF Serving refuses all of it,
    # so with a specific policy the new version never even loads.
    _write_config(serving, one_step)
    time.sleep(1.0)  # five polls
    assert server.manager.labels(MODEL_NAME) == {"stable": v1}
    assert server.manager.available(MODEL_NAME) == [v1] and server.manager.state(MODEL_NAME, v2) == ""

    # In two steps it works: add the version, then move the label once it is AVAILABLE.
    _write_config(serving, sc.model_config(MODEL_NAME, str(base), [v1, v2], {"stable": v1}, "specific"))
    wait_for(lambda: server.manager.state(MODEL_NAME, v2) == "AVAILABLE", what="version 2 to load")
    assert server.manager.labels(MODEL_NAME) == {"stable": v1}
    _write_config(serving, one_step)
    wait_for(lambda: server.manager.labels(MODEL_NAME) == {"stable": v2}, what="the label to move")
    wait_for(lambda: server.manager.available(MODEL_NAME) == [v2], what="version 1 to unload")
    # A version that left the policy and comes back is loaded again.
    both = sc.model_config(MODEL_NAME, str(base), [v1, v2], {"stable": v2}, "specific")
    both.model_version_policy.specific.versions.insert(0, v1)
    _write_config(serving, both)
    wait_for(lambda: server.manager.available(MODEL_NAME) == [v1, v2], what="version 1 to load again")


def test_only_new_labels_may_name_an_unavailable_version_and_only_when_allowed(
    tiny_models: list[str], tmp_path: Path, server_factory: Any
) -> None:
    serving = tmp_path / "serving"
    v1 = _version(push(tiny_models[0], serving, warmup=IMAGES[:1]))
    base, missing = str(serving / MODEL_NAME), v1 + 5
    strict = server_factory(serving, **FAST_RETRIES)
    lenient = server_factory(serving, allow_version_labels_for_unavailable_models=True, **FAST_RETRIES)
    _write_config(serving, sc.model_config(MODEL_NAME, base, [v1], {"stable": v1, "canary": missing}))
    wait_for(lambda: lenient.manager.labels(MODEL_NAME).get("canary") == missing, what="the new label")
    assert strict.manager.labels(MODEL_NAME) == {"stable": v1}  # refused without the flag
    # Moving an existing label onto an unavailable version is refused even with the flag.
    _write_config(serving, sc.model_config(MODEL_NAME, base, [v1], {"stable": missing, "canary": missing}))
    time.sleep(1.0)
    assert lenient.manager.labels(MODEL_NAME) == {"stable": v1, "canary": missing}


def test_a_first_config_labelling_a_version_that_did_not_load_stops_the_start(
    tiny_models: list[str], tmp_path: Path
) -> None:
    from visiontfx.tools.serving.manager import ConfigError
    from visiontfx.tools.serving.server import LocalModelServer, ServerOptions

    serving = tmp_path / "serving"
    v1 = _version(push(tiny_models[0], serving, warmup=IMAGES[:1]))
    _write_config(serving, sc.model_config(MODEL_NAME, str(serving / MODEL_NAME), [v1], {"stable": v1 + 1}))
    server = LocalModelServer(ServerOptions(serving_dir=str(serving), rest_port=0, grpc_port=0))
    with pytest.raises(ConfigError, match=f"label 'stable' to version {v1 + 1}.*not currently available"):
        server.start()
    lenient = start_local_server(serving, allow_version_labels_for_unavailable_models=True)
    try:  # the flag lets TF Serving start with it
        assert lenient.manager.labels(MODEL_NAME) == {"stable": v1 + 1}
    finally:
        lenient.stop()


def test_relative_base_paths_are_refused(tiny_models: list[str], tmp_path: Path, server_factory: Any) -> None:
    from visiontfx.tools.serving.manager import ConfigError
    from visiontfx.tools.serving.server import LocalModelServer, ServerOptions

    serving = tmp_path / "serving"
    v1 = _version(push(tiny_models[0], serving, warmup=IMAGES[:1]))
    relative = sc.model_config(MODEL_NAME, "/placeholder", [v1], {})
    relative.base_path = MODEL_NAME  # relative to the config file: TF Serving refuses it
    good_config = (serving / sc.MODELS_CONFIG).read_text()
    _write_config(serving, relative)
    with pytest.raises(ConfigError, match="is not absolute"):
        LocalModelServer(ServerOptions(serving_dir=str(serving), rest_port=0, grpc_port=0)).start()
    with pytest.raises(ValueError, match="must be absolute"):
        sc.model_config(MODEL_NAME, MODEL_NAME, [v1], {})

    # On a running server, such a reload is refused and the previous config keeps serving.
    (serving / sc.MODELS_CONFIG).write_text(good_config)
    server = server_factory(serving)
    _write_config(serving, relative)
    time.sleep(1.0)
    assert server.manager.available(MODEL_NAME) == [v1]
    assert server.manager.labels(MODEL_NAME) == {"stable": v1}


# --------------------------------------------------------------------------
# Versions on disk


def test_failed_and_unfinished_versions_leave_the_old_one_serving(
    tiny_models: list[str], tmp_path: Path, server_factory: Any
) -> None:
    """No models.config: TF Serving's default policy (latest 1) over the folders on disk."""
    serving = tmp_path / "serving"
    base = serving / MODEL_NAME
    _copy_version(tiny_models[0], base, 1)
    server = server_factory(
        serving, model_name=MODEL_NAME, max_num_load_retries=5, load_retry_interval_seconds=0.5
    )
    port, path = server.rest_port, f"/v1/models/{MODEL_NAME}:predict"
    first = _scores(port, path)

    broken = _copy_version(tiny_models[1], base, 2)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    wait_for(lambda: server.manager.state(MODEL_NAME, 2) == "END", what="version 2 to fail for good")
    assert server.manager.available(MODEL_NAME) == [1]
    np.testing.assert_array_equal(_scores(port, path), first)

    # An integer folder without saved_model.pb is a version still loading (an upload in
    # progress): it is the latest, so version 1 stays until it loads.
    (base / "3").mkdir()
    wait_for(lambda: server.manager.state(MODEL_NAME, 3) == "LOADING", what="version 3 to be loading")
    status = rest(port, "GET", f"/v1/models/{MODEL_NAME}/versions/3")[1]["model_version_status"][0]
    assert status["state"] == "LOADING" and "saved_model.pb" in status["status"]["error_message"]
    np.testing.assert_array_equal(_scores(port, path), first)
    shutil.copytree(tiny_models[1], base / "3", dirs_exist_ok=True)
    wait_for(lambda: server.manager.available(MODEL_NAME) == [3], what="version 3 to replace version 1")
    np.testing.assert_array_equal(_scores(port, path), in_process(tiny_models[1], IMAGES)["scores"])


def test_a_version_still_missing_saved_model_after_the_retries_ends_in_error(
    tiny_models: list[str], tmp_path: Path, server_factory: Any
) -> None:
    serving = tmp_path / "serving"
    _copy_version(tiny_models[0], serving / MODEL_NAME, 1)
    server = server_factory(serving, model_name=MODEL_NAME, **FAST_RETRIES)
    assert server.manager.available(MODEL_NAME) == [1]
    (serving / MODEL_NAME / "2").mkdir()
    wait_for(lambda: server.manager.state(MODEL_NAME, 2) == "END", what="the retries to run out")
    answer = rest(server.rest_port, "GET", f"/v1/models/{MODEL_NAME}/versions/2")[1]
    status = answer["model_version_status"][0]
    assert status["state"] == "END" and "no saved_model.pb" in status["status"]["error_message"]
    assert server.manager.available(MODEL_NAME) == [1]


# --------------------------------------------------------------------------
# promote, without a server


def _promotable(tmp_path: Path, versions: list[int], labels: dict[str, int], policy: str = "latest") -> Path:
    serving = tmp_path / "serving"
    for version in versions:
        (serving / MODEL_NAME / str(version)).mkdir(parents=True)
    _write_config(serving, sc.model_config(MODEL_NAME, str(serving / MODEL_NAME), versions, labels, policy))
    return serving


def test_promote_waits_for_available_then_moves_only_that_label(tmp_path: Path) -> None:
    from visiontfx.tools.serving.promote import Promotion, promote

    serving = _promotable(tmp_path, [5, 7], {"stable": 5, "canary": 5}, "specific")
    states = iter(["", "LOADING", "AVAILABLE"])
    now = [0.0]
    result = promote(
        str(serving), MODEL_NAME, "stable", None, lambda version: next(states),
        wait_seconds=10, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s),
    )  # fmt: skip
    assert result == Promotion(MODEL_NAME, "stable", 7, 5) and now[0] == 4.0
    entry = _entry(serving)
    assert dict(entry.version_labels) == {"stable": 7, "canary": 5}
    assert list(entry.model_version_policy.specific.versions) == [5, 7]  # canary still needs 5


def test_promote_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    from visiontfx.tools.serving.promote import NotAvailableError, PromoteError, promote

    with pytest.raises(PromoteError, match="push a model first"):
        promote(str(tmp_path), MODEL_NAME, "stable", None, lambda version: "AVAILABLE")
    serving = _promotable(tmp_path, [5, 7], {"stable": 5})
    before = (serving / sc.MODELS_CONFIG).read_text()
    with pytest.raises(PromoteError, match=rf"Model 'other' is not in .*\['{MODEL_NAME}'\]\): push it first"):
        promote(str(serving), "other", "stable", None, lambda version: "AVAILABLE")
    with pytest.raises(PromoteError, match=r"Version 6 is not under .*\[5, 7\]"):
        promote(str(serving), MODEL_NAME, "stable", 6, lambda version: "AVAILABLE")
    with pytest.raises(NotAvailableError, match="is LOADING: label 'stable' stays on 5") as refused:
        promote(str(serving), MODEL_NAME, "stable", 7, lambda version: "LOADING")
    assert not refused.value.failed
    assert (serving / sc.MODELS_CONFIG).read_text() == before


def test_promote_command_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from visiontfx.tools.serving import promote as promote_module

    parser = argparse.ArgumentParser()
    promote_module.add_arguments(parser)
    states = {"state": "LOADING"}
    monkeypatch.setattr(promote_module, "rest_version_state", lambda server, model: lambda v: states["state"])
    serving = tmp_path / "serving"
    common = ["--serving-dir", str(serving), "--model-name", MODEL_NAME]
    run = lambda *extra: promote_module.main(parser.parse_args([*common, *extra]))  # noqa: E731
    assert (run(), run("--pending-ok")) == (2, 0)  # nothing pushed yet
    _promotable(tmp_path, [5, 7], {"stable": 5})
    assert run() == promote_module.EXIT_NOT_AVAILABLE
    assert run("--pending-ok") == 0
    states["state"] = "END"
    assert run("--pending-ok") == promote_module.EXIT_NOT_AVAILABLE
    states["state"] = "AVAILABLE"
    assert run() == 0 and dict(_entry(serving).version_labels) == {"stable": 7}
