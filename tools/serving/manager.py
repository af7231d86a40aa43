"""Which models and versions are served: policies, loading, labels — with TF Serving's rules.

The rules mirrored here (tensorflow_serving/core and model_servers/server_core):

- every integer-named folder under a model's ``base_path`` is a version, whether
  or not its ``saved_model.pb`` is there yet; loading a version that is not
  ready fails and is retried (``max_num_load_retries`` times, every
  ``load_retry_interval_seconds``), after which it stays in END with the error;
- availability-preserving loads: a version leaving the policy is unloaded only
  once an aspired version is AVAILABLE (or nothing is aspired), so a new version
  that fails to load leaves the old one serving;
- a models.config reload is applied as a whole or not at all: it is refused
  when a label would point at a version that is not AVAILABLE (only a label that
  does not exist yet may, with ``allow_version_labels_for_unavailable_models``),
  and then nothing of it applies — not even new versions of a ``specific``
  policy; the previous config keeps serving and the reload is retried;
- on the first config, versions load before labels are checked, and a label on
  a version that did not load stops the start-up (unless the flag allows it);
- status requests ignore labels.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Callable, Mapping, Sequence

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from visiontfx.components.pusher import serving_config
from visiontfx.tools.serving.errors import ServingError, invalid, not_found
from visiontfx.tools.serving.servable import Servable

log = logging.getLogger("visiontfx.serving")
State = get_model_status_pb2.ModelVersionStatus.State


class ConfigError(ValueError):
    """A model config TF Serving would refuse as a whole."""


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """One entry of models.config (or the single model served without one)."""

    name: str
    base_path: str
    policy: str = "latest"  # latest | specific | all
    policy_versions: tuple[int, ...] = (1,)  # latest: (N,); specific: the versions
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_proto(cls, config: model_server_config_pb2.ModelConfig) -> ModelSource:
        if not os.path.isabs(config.base_path):
            raise ConfigError(
                f"Model {config.name!r}: base_path {config.base_path!r} is not absolute; TF Serving "
                "requires an absolute base_path (the Pusher writes one)."
            )
        policy = config.model_version_policy.WhichOneof("policy_choice") or "latest"
        if policy == "latest":
            versions: tuple[int, ...] = (config.model_version_policy.latest.num_versions or 1,)
        elif policy == "specific":
            versions = tuple(config.model_version_policy.specific.versions)
        else:
            versions = ()
        return cls(config.name, config.base_path, policy, versions, dict(config.version_labels))

    def aspired(self, on_disk: Sequence[int]) -> list[int]:
        """The versions the policy wants loaded, among those on disk."""
        if self.policy == "latest":
            return sorted(on_disk)[-self.policy_versions[0] :]
        if self.policy == "specific":
            return sorted(set(on_disk) & set(self.policy_versions))
        return sorted(on_disk)


def list_versions(base_path: str) -> list[int]:
    """Every integer-named folder: a version to TF Serving, ready or not (staging dirs never match)."""
    if not os.path.isdir(base_path):
        return []
    return serving_config.integer_versions(
        name for name in os.listdir(base_path) if os.path.isdir(os.path.join(base_path, name))
    )


@dataclasses.dataclass(frozen=True)
class LoadPolicy:
    """TF Serving's load retry flags (``--max_num_load_retries``, ``--load_retry_interval_micros``)."""

    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0
    allow_version_labels_for_unavailable_models: bool = False


@dataclasses.dataclass
class VersionStatus:
    state: int
    error: str = ""
    attempts: int = 0
    next_attempt: float = 0.0


class ModelManager:
    """Loads, serves and unloads versions per source; refresh() is what the poller calls.

    ``read_sources`` returns the wanted models (raising ConfigError for a config
    TF Serving would refuse); the manager applies it under the rules above.
    """

    def __init__(
        self,
        read_sources: Callable[[], list[ModelSource]],
        policy: LoadPolicy = LoadPolicy(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_sources = read_sources
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()  # guards the three maps below (replaced, never mutated in place)
        self._refresh_lock = threading.Lock()
        self._servables: dict[str, dict[int, Servable]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._status: dict[str, dict[int, VersionStatus]] = {}
        self._applied: list[ModelSource] | None = None  # the config in force (None: none yet)
        self._refused: str = ""  # the last refusal, logged once rather than every poll
        self._missing: set[str] = set()  # base paths already reported as missing
        # Versions whose retries ran out: not retried while they stay aspired (as TF Serving);
        # one that leaves the policy and comes back is loaded afresh.
        self._gave_up: set[tuple[str, int]] = set()

    # -- polling
    def refresh(self) -> None:
        """Reads the config, applies it if TF Serving would, then loads/unloads versions.

        The first call raises ConfigError when TF Serving would not start; later
        calls log the refusal and keep the config in force.
        """
        with self._refresh_lock:
            first = self._applied is None
            try:
                wanted = self._read_sources()
                if first:
                    self._apply_first(wanted)
                elif wanted != self._applied:
                    self._apply_reload(wanted)
            except ConfigError as error:
                if first:
                    raise
                if str(error) != self._refused:
                    log.error("models.config reload refused, the previous config stays in force: %s", error)
                    self._refused = str(error)
            for source in self._applied or []:
                self._reconcile(source)

    def _apply_first(self, sources: list[ModelSource]) -> None:
        self._applied = sources
        for source in sources:
            self._reconcile(source)
        # TF Serving waits for the first load to finish, then assigns the labels (all new).
        for source in sources:
            self._check_labels(source, allow_new=self.policy.allow_version_labels_for_unavailable_models)
        self._set_labels(sources)

    def _apply_reload(self, sources: list[ModelSource]) -> None:
        for source in sources:
            self._check_labels(source, allow_new=self.policy.allow_version_labels_for_unavailable_models)
        self._applied, self._refused = sources, ""
        self._set_labels(sources)
        gone = set(self._servables) - {source.name for source in sources}
        for name in gone:
            self._unload(name, list(self._servables[name]))
        log.info("models.config applied: %s", ", ".join(source.name for source in sources) or "no models")

    def _check_labels(self, source: ModelSource, allow_new: bool) -> None:
        available = self._servables.get(source.name, {})
        current = self._labels.get(source.name, {})
        for label, version in sorted(source.labels.items()):
            if version in available or (allow_new and label not in current):
                continue
            raise ConfigError(
                f"Request to assign label {label!r} to version {version} of model {source.name!r}, which is "
                "not currently available for inference. Move a label only once its version is AVAILABLE "
                "(visiontfx promote checks that)."
            )

    def _set_labels(self, sources: list[ModelSource]) -> None:
        with self._lock:
            self._labels = {source.name: dict(source.labels) for source in sources}

    def _reconcile(self, source: ModelSource) -> None:
        if not os.path.isdir(source.base_path):
            if source.base_path not in self._missing:
                log.error("Model %s: base_path %s does not exist (yet)", source.name, source.base_path)
                self._missing.add(source.base_path)
        else:
            self._missing.discard(source.base_path)
        aspired = source.aspired(list_versions(source.base_path))
        self._gave_up = {(name, v) for name, v in self._gave_up if name != source.name or v in aspired}
        for version in sorted(aspired, reverse=True):  # newest first, as TF Serving
            self._maybe_load(source.name, version, os.path.join(source.base_path, str(version)))
        loaded = self._servables.get(source.name, {})
        leaving = sorted(v for v in loaded if v not in aspired)
        if aspired and not any(v in loaded for v in aspired):
            leaving = leaving[:-1]  # availability-preserving: keep the newest until a successor serves
        self._unload(source.name, leaving)

    def _set_status(self, name: str, version: int, status: VersionStatus) -> None:
        with self._lock:
            self._status = {**self._status, name: {**self._status.get(name, {}), version: status}}

    def _maybe_load(self, name: str, version: int, path: str) -> None:
        current = self._status.get(name, {}).get(version)
        if version in self._servables.get(name, {}) or (name, version) in self._gave_up:
            return
        retrying = current if current is not None and current.state == State.LOADING else None
        if retrying is not None and self._clock() < retrying.next_attempt:
            return
        attempts = retrying.attempts + 1 if retrying is not None else 1
        started = time.monotonic()
        try:
            if not os.path.isfile(os.path.join(path, "saved_model.pb")):
                raise FileNotFoundError(f"SavedModel not found in {path} (no saved_model.pb yet)")
            self._set_status(name, version, VersionStatus(State.LOADING, attempts=attempts))
            servable = Servable.load(name, version, path)
            records = servable.warm_up()
        except Exception as error:  # a broken version must not stop the others
            message = error.message if isinstance(error, ServingError) else f"{type(error).__name__}: {error}"
            if attempts > self.policy.max_num_load_retries:
                log.error("Loading %s version %d failed for good: %s", name, version, message)
                self._gave_up.add((name, version))
                self._set_status(name, version, VersionStatus(State.END, message, attempts))
            else:
                retry_at = self._clock() + self.policy.load_retry_interval_seconds
                self._set_status(name, version, VersionStatus(State.LOADING, message, attempts, retry_at))
                log.warning("Loading %s version %d failed (attempt %d): %s", name, version, attempts, message)
            return
        with self._lock:
            self._servables = {**self._servables, name: {**self._servables.get(name, {}), version: servable}}
        self._set_status(name, version, VersionStatus(State.AVAILABLE))
        log.info(
            "Serving %s version %d (%.1f s, %d warmup requests) from %s",
            name,
            version,
            time.monotonic() - started,
            records,
            path,
        )

    def _unload(self, name: str, versions: Sequence[int]) -> None:
        for version in versions:
            self._set_status(name, version, VersionStatus(State.UNLOADING))
            with self._lock:
                remaining = {v: s for v, s in self._servables.get(name, {}).items() if v != version}
                self._servables = {**self._servables, name: remaining}
            self._set_status(name, version, VersionStatus(State.END))
            log.info("Unloaded %s version %d", name, version)

    # -- lookups (any thread)
    def resolve_version(self, name: str, version: int | None, label: str | None) -> int | None:
        if version is not None and label:
            raise invalid(
                f"Both model version ({version}) and model version label ({label}) cannot be supplied."
            )
        if label:
            labels = self._labels.get(name, {})
            if label not in labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            return labels[label]
        return version

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        version = self.resolve_version(name, version, label)
        versions = self._servables.get(name, {})
        if version is None:
            if not versions:
                raise not_found(f"Servable not found for request: Latest({name})")
            return versions[max(versions)]
        if version not in versions:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return versions[version]

    def status(self, name: str, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus: one version or all of them (TF Serving ignores a version label here)."""
        statuses = self._status.get(name, {})
        if not statuses:
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None and version not in statuses:
            raise not_found(f"Could not find version {version} of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for number in sorted(statuses, reverse=True):
            if version is None or number == version:
                entry = response.model_version_status.add(version=number, state=statuses[number].state)
                entry.status.SetInParent()  # TF Serving always sends a status (error_code OK when fine)
                if statuses[number].error:
                    entry.status.error_code = 2  # tensorflow.error.UNKNOWN
                    entry.status.error_message = statuses[number].error
        return response

    def labels(self, name: str) -> dict[str, int]:
        return dict(self._labels.get(name, {}))

    def available(self, name: str) -> list[int]:
        return sorted(self._servables.get(name, {}))

    def state(self, name: str, version: int) -> str:
        """The version's state name ('' when unknown): what clients see in status answers."""
        status = self._status.get(name, {}).get(version)
        return State.Name(status.state) if status is not None else ""
