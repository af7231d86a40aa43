"""A Pusher executor that leaves a directory TF Serving loads as it is.

Used with TFX's own Pusher component (same inputs, outputs and blessing check)::

    tfx.components.Pusher(
        model=..., model_blessing=..., push_destination=<filesystem base_directory>,
        custom_config={"model_name": ..., "keep_versions": 3, ...},
        custom_executor_spec=executor_spec.ExecutorClassSpec(Executor),
    )

Compared with the stock executor it

- pushes atomically: the copy is made in a hidden directory beside the versions
  (TF Serving ignores names that are not integers), prepared there, then renamed
  into place, so a version appears complete or not at all;
- numbers versions strictly increasing (never two pushes in one second clash);
- marks the ``classification`` signature as a classify signature and writes
  ``assets.extra/tf_serving_warmup_requests`` from real evaluation images;
- writes ``models.config``, ``batching.config`` and ``monitoring.config`` beside
  the model directory, keeping the newest ``keep_versions`` versions and every
  labelled one; labels are never moved by a push, so TF Serving never refuses
  the reload (``visiontfx promote`` moves them once a version is AVAILABLE).

custom_config keys (all optional): ``model_name`` (default: the base directory's
name), ``keep_versions`` (3; labelled versions are kept besides),
``version_policy`` ("latest" | "specific"), ``canary`` (false: the first push
creates ``stable``; true: ``stable`` and ``canary``; later pushes move no label),
``warmup_requests`` (8 images), ``warmup_examples_uri`` (TFRecord glob of
tf.Examples, used when the export brings no warmup images),
``batching`` (BatchingSettings fields).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
import uuid
from typing import Any, Callable, Iterator, Mapping, Sequence

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, json_utils, proto_utils

from visiontfx.components.pusher import serving_config
from visiontfx.components.pusher.release_assets import ReleaseInputs
from visiontfx.components.pusher.settings import PushTargets
from visiontfx.contracts.settings import ConfigError

STAGING_PREFIX = ".push-"
STALE_STAGING_SECONDS = 3600  # a leftover staging dir older than this is from a crashed push


@dataclasses.dataclass(frozen=True)
class PushSettings:
    """What a push does besides copying; from the Pusher's custom_config."""

    model_name: str
    keep_versions: int = PushTargets.keep_versions
    version_policy: serving_config.VersionPolicy = "latest"
    canary: bool = False
    warmup_requests: int = PushTargets.warmup_requests
    warmup_examples_uri: str = ""
    batching: serving_config.BatchingSettings = dataclasses.field(
        default_factory=serving_config.BatchingSettings
    )

    def __post_init__(self) -> None:
        # The same checks as the config's serving section (ConfigError is a ValueError).
        PushTargets(self.model_name, self.keep_versions, self.warmup_requests).validate()
        if self.version_policy not in ("latest", "specific"):
            raise ConfigError(f"version_policy must be 'latest' or 'specific', got {self.version_policy!r}")

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None, base_directory: str) -> PushSettings:
        values = dict(custom_config or {})
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"Unknown Pusher custom_config keys {sorted(unknown)}; known: {sorted(known)}")
        values.setdefault("model_name", os.path.basename(base_directory.rstrip("/")))
        values["batching"] = serving_config.BatchingSettings.from_mapping(values.get("batching"))
        return cls(**values)


class Executor(tfx_pusher_executor.Executor):
    """TFX Pusher executor: blessing check as upstream, then ``push_model``."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("This Pusher pushes to a filesystem base_directory only.")
        base_directory = destination.filesystem.base_directory
        custom_config = json_utils.loads(
            exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null"
        )
        settings = PushSettings.from_custom_config(custom_config, base_directory)

        release = ReleaseInputs.from_artifacts(
            settings.model_name,
            input_dict,
            exec_properties,
            self._context.pipeline_run_id if self._context else None,
        )
        serving_path = push_model(model_path, base_directory, settings, add_assets=release.write)
        io_utils.copy_dir(model_path, model_push.uri)  # the archive copy, as the stock Pusher keeps
        self._MarkPushed(
            model_push, pushed_destination=serving_path, pushed_version=os.path.basename(serving_path)
        )
        release.mark(model_push, serving_path)
        logging.info("Model pushed to %s.", serving_path)


# --------------------------------------------------------------------------
# The push itself (no TFX artifacts: tests and tools call it directly)


def push_model(
    model_path: str,
    base_directory: str,
    settings: PushSettings,
    warmup_images: Sequence[bytes] | None = None,
    clock: Callable[[], float] = time.time,
    add_assets: Callable[[str, str], None] | None = None,
) -> str:
    """Publishes ``model_path`` as a new version under ``base_directory``; returns its path.

    In an order that keeps every label on a loaded version of a running TF
    Serving: (1) stage and prepare the copy, (2) prune versions neither recent
    nor labelled, (3) write models.config naming the new version with the
    labels unchanged (a push never moves a label: ``visiontfx promote`` does,
    once the version is AVAILABLE), (4) publish the version. ``warmup_images``
    overrides where the warmup images come from (tests).
    ``add_assets(staging_dir, version)`` writes more files into the staged
    version before it appears (the TFLite models and the model card).
    """
    fileio.makedirs(base_directory)
    existing = serving_config.integer_versions(fileio.listdir(base_directory))
    # Timestamps like the stock Pusher, but never equal to or below an existing version.
    version = max(int(clock()), existing[-1] + 1 if existing else 0)
    target = os.path.join(base_directory, str(version))
    serving_dir = os.path.dirname(base_directory.rstrip("/"))
    config = serving_config.read_models_config(os.path.join(serving_dir, serving_config.MODELS_CONFIG))
    previous = serving_config.find_model(config, settings.model_name) if config is not None else None
    on_disk = [*existing, version]
    labels = serving_config.labels_after_push(
        dict(previous.version_labels) if previous is not None else {}, on_disk, version, settings.canary
    )
    kept = serving_config.versions_to_keep(on_disk, settings.keep_versions, labels)

    def prepare(staging: str) -> None:
        _prepare_version(staging, settings, warmup_images)
        if add_assets is not None:
            add_assets(staging, str(version))

    staged = _staged_local if _is_local(base_directory) else _staged_remote
    with staged(model_path, target, prepare) as commit:  # a failed copy changes nothing
        # Pruned before the config names one more version: with a `latest` policy, a
        # moment with more versions on disk than it counts would unload an old labelled one.
        for old in sorted(set(existing) - set(kept)):
            fileio.rmtree(os.path.join(base_directory, str(old)))
        write_serving_configs(serving_dir, base_directory, kept, labels, settings)
        commit()
    logging.info(
        "Pushed version %d to %s; kept versions %s; labels %s.", version, base_directory, kept, labels
    )
    return target


def _is_local(path: str) -> bool:
    return "://" not in path


@contextlib.contextmanager
def _staged_local(
    model_path: str, target: str, prepare: Callable[[str], None]
) -> Iterator[Callable[[], None]]:
    """Copy into a hidden sibling and prepare it; the commit is a rename, atomic on one filesystem."""
    base = os.path.dirname(target)
    _remove_stale_staging(base)
    staging = os.path.join(base, f"{STAGING_PREFIX}{os.path.basename(target)}-{uuid.uuid4().hex[:8]}")
    try:
        io_utils.copy_dir(model_path, staging)
        prepare(staging)
        yield lambda: os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # nothing left once renamed


@contextlib.contextmanager
def _staged_remote(
    model_path: str, target: str, prepare: Callable[[str], None]
) -> Iterator[Callable[[], None]]:
    """Object stores have no atomic rename: stage locally; the commit uploads saved_model.pb last.

    TF Serving sees the version folder as soon as its first file lands; loading
    it fails, and is retried, until saved_model.pb is there, so uploading that
    file last (the stock Pusher's convention) means it never loads a half copy.
    """
    staging = tempfile.mkdtemp(prefix="visiontfx-push-")
    try:
        io_utils.copy_dir(model_path, staging)
        prepare(staging)

        def commit() -> None:
            io_utils.copy_dir(staging, target, deny_regex_patterns=[r"saved_model\.pb$"])
            io_utils.copy_file(
                os.path.join(staging, "saved_model.pb"), os.path.join(target, "saved_model.pb")
            )

        yield commit
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_stale_staging(base: str) -> None:
    now = time.time()
    for name in os.listdir(base):
        path = os.path.join(base, name)
        if name.startswith(STAGING_PREFIX) and now - os.path.getmtime(path) > STALE_STAGING_SECONDS:
            shutil.rmtree(path, ignore_errors=True)


def _prepare_version(staging: str, settings: PushSettings, warmup_images: Sequence[bytes] | None) -> None:
    """Edits the staged copy: classify signature, warmup requests."""
    from visiontfx.components.serving import signatures

    if not signatures.mark_classify_signature(staging):
        logging.warning(
            "%s has no %r signature: :classify will not work.", staging, signatures.CLASSIFY_SIGNATURE
        )
    images = list(warmup_images) if warmup_images is not None else find_warmup_images(staging, settings)
    if images:
        write_warmup_file(staging, images[: settings.warmup_requests], settings.model_name)
    elif settings.warmup_requests:
        logging.warning(
            "No warmup images (neither %s in the export nor warmup_examples_uri): the first requests "
            "of each version will pay TensorFlow's tracing cost.",
            signatures.WARMUP_IMAGES_DIR,
        )


def find_warmup_images(export_dir: str, settings: PushSettings) -> list[bytes]:
    """Images the Trainer saved beside the export, else from ``warmup_examples_uri``."""
    from visiontfx.components.serving import signatures

    if not settings.warmup_requests:
        return []
    folder = os.path.join(export_dir, signatures.WARMUP_IMAGES_DIR)
    if fileio.isdir(folder):
        names = sorted(fileio.listdir(folder))[: settings.warmup_requests]
        images = []
        for name in names:
            with fileio.open(os.path.join(folder, name), "rb") as handle:
                images.append(handle.read())
        if images:
            return images
    if settings.warmup_examples_uri:
        return signatures.read_example_images([settings.warmup_examples_uri], settings.warmup_requests)
    return []


def write_warmup_file(export_dir: str, images: Sequence[bytes], model_name: str) -> str:
    import tensorflow as tf

    path = os.path.join(export_dir, serving_config.WARMUP_FILE)
    fileio.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for record in serving_config.warmup_records(images, model_name):
            writer.write(record)
    return path


def write_serving_configs(
    serving_dir: str,
    base_directory: str,
    versions: Sequence[int],
    labels: Mapping[str, int],
    settings: PushSettings,
) -> None:
    """models.config (merged with other models' entries), batching.config, monitoring.config."""
    models_path = os.path.join(serving_dir, serving_config.MODELS_CONFIG)
    existing = serving_config.read_models_config(models_path)
    base_path = os.path.abspath(base_directory) if _is_local(base_directory) else base_directory
    entry = serving_config.model_config(
        settings.model_name, base_path, versions, labels, settings.version_policy
    )
    serving_config.write_text(
        models_path, serving_config.render_models_config(serving_config.merge_model_config(existing, entry))
    )
    serving_config.write_text(
        os.path.join(serving_dir, serving_config.BATCHING_CONFIG),
        serving_config.render_batching_config(settings.batching),
    )
    serving_config.write_text(
        os.path.join(serving_dir, serving_config.MONITORING_CONFIG), serving_config.render_monitoring_config()
    )
