"""Typed settings: frozen dataclasses built from plain values and checked key by key.

The run's configuration (``pipeline/config.py``, from YAML and the command line)
and each component's ``custom_config`` (JSON in an exec property) are trees of
:class:`Settings` dataclasses. :func:`build` turns a mapping into one: unknown
keys, wrong types and values outside their allowed set fail with a
:class:`ConfigError` naming the key (``'training.batch_size' must be at least
1.``); then each dataclass checks the rules types alone cannot express in its
own :meth:`Settings.validate`. :meth:`Settings.to_dict` / :meth:`Settings.to_json`
write the same tree back, so a component's settings round-trip through JSON.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from typing import Any, Literal, Mapping, Sequence, TypeVar, Union, get_args, get_origin

SettingsType = TypeVar("SettingsType", bound="Settings")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


def require(condition: bool, message: str) -> None:
    """Raises :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def key_path(prefix: str, key: str) -> str:
    """``training`` + ``batch_size`` → ``training.batch_size`` (the name a message shows)."""
    return f"{prefix}.{key}" if prefix else key


class Settings:
    """Base of every settings dataclass: validation, building and JSON round trips.

    Subclasses are frozen dataclasses whose fields are bool, int, float, str,
    a Literal of str, ``tuple[str, ...]`` or another Settings dataclass.
    """

    def validate(self, prefix: str = "") -> None:
        """Range and cross-field rules that types alone cannot express (raise ConfigError).

        ``prefix`` is where this section sits (``training``), for the messages.
        """

    @classmethod
    def from_dict(
        cls: type[SettingsType], values: Mapping[str, Any] | None, prefix: str = ""
    ) -> SettingsType:
        """Builds and validates an instance from a (possibly partial) mapping."""
        return build(cls, values or {}, prefix)

    @classmethod
    def from_json(cls: type[SettingsType], text: str | None, prefix: str = "") -> SettingsType:
        values = json.loads(text) if text else {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"'{prefix or cls.__name__}' must be a JSON object, got {text!r}.")
        return cls.from_dict(values, prefix)

    @classmethod
    def of(cls: type[SettingsType], section: Any, **values: Any) -> SettingsType:
        """An instance with its fields from ``section`` (a config section that extends this
        class), or from ``values`` where given; validated."""
        taken = {
            field.name: getattr(section, field.name)
            for field in dataclasses.fields(cls)  # type: ignore[arg-type]
            if field.name not in values
        }
        instance = cls(**taken, **values)
        instance.validate()
        return instance

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able values (lists, not tuples).

        A section's own keys come before those it extends (``data.source`` first), so
        ``visiontfx config`` reads top-down.
        """
        own = vars(type(self)).get("__annotations__", {})
        fields = sorted(dataclasses.fields(self), key=lambda field: field.name not in own)  # type: ignore[arg-type]
        return {field.name: _plain(getattr(self, field.name)) for field in fields}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _plain(value: Any) -> Any:
    if isinstance(value, Settings):
        return value.to_dict()
    return [_plain(item) for item in value] if isinstance(value, tuple) else value


def _fail_unknown(key: str, path: str, allowed: Sequence[str]) -> None:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"Unknown config key '{path}'.{hint} Allowed keys here: {', '.join(sorted(allowed))}.")


def build(cls: type[SettingsType], values: Mapping[str, Any], prefix: str = "") -> SettingsType:
    """An instance of the dataclass ``cls`` from ``values``: every key checked, then validated."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [field.name for field in fields]
    kwargs = {}
    for key, value in values.items():
        path = key_path(prefix, str(key))
        if key not in names:
            _fail_unknown(str(key), path, names)
        kwargs[key] = coerce(value, hints[key], path)
    for field in fields:
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        require(not required or field.name in kwargs, f"Missing config key '{key_path(prefix, field.name)}'.")
    instance = cls(**kwargs)
    instance.validate(prefix)
    return instance


def coerce(value: Any, annotation: Any, path: str) -> Any:
    """Checks (and for YAML/CLI/JSON scalars converts) one value against its type."""
    origin = get_origin(annotation)
    if origin is Literal:
        allowed = get_args(annotation)
        if value not in allowed:
            raise ConfigError(
                f"Invalid value {value!r} for '{path}'. Allowed values: {', '.join(map(str, allowed))}."
            )
        return value
    if origin is Union:
        raise TypeError(f"Unsupported config type at {path}")
    if origin is tuple:  # tuple[str, ...]: a YAML/JSON list, or "a,b,c" on the command line
        items = [item.strip() for item in value.split(",")] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"'{path}' must be a list, got {value!r}.")
        return tuple(coerce(item, get_args(annotation)[0], f"{path}[{i}]") for i, item in enumerate(items))
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{path}' must be a mapping of keys, got {value!r}.")
        return build(annotation, value, path)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"'{path}' must be true or false, got {value!r}.")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"'{path}' must be an integer, got {value!r}.")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"'{path}' must be a number, got {value!r}.")
    if annotation is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"'{path}' must be a string, got {value!r}.")
    raise TypeError(f"Unsupported config type {annotation!r} at {path}")
