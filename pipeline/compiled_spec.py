"""Reading compiled pipelines: the files ``visiontfx compile`` writes, for every reader.

One place knows their shape: a KFP ``PipelineSpec`` (YAML, maybe followed by a
kfp-kubernetes platform spec document) or a Vertex AI ``PipelineJob`` (JSON,
the spec under ``pipelineSpec``). Used by compile's summary line, submit and
schedule, and the tests that run a compiled spec the way the KFP backend does.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from visiontfx.pipeline.config import ConfigError

_PARAMETER_TYPES = {"STRING": str, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "BOOLEAN": bool}


def load_documents(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A compiled file's documents: the PipelineSpec (YAML) or PipelineJob (JSON) first, then
    any KFP platform spec."""
    text = Path(path).read_text()
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]  # JSON is YAML
    if not documents or not all(isinstance(doc, dict) for doc in documents):
        raise ConfigError(f"{path} holds no pipeline spec.")
    return documents


def load_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A compiled file's pipeline document: a PipelineSpec (YAML) or a PipelineJob (JSON)."""
    return load_documents(path)[0]


def platform_spec_of(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file's KFP platform spec (its documents after the first, merged); {} when none."""
    merged: dict[str, Any] = {}
    for document in load_documents(path)[1:]:
        merged.update(document)
    return merged


def pipeline_spec_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """The PipelineSpec inside a compiled document (a PipelineJob keeps it under ``pipelineSpec``)."""
    if "pipelineSpec" in document:
        spec = copy.deepcopy(dict(document["pipelineSpec"]))
        root = document.get("runtimeConfig", {}).get("gcsOutputDirectory")
        if root and "defaultPipelineRoot" not in spec:
            spec["defaultPipelineRoot"] = root
        return spec
    if "root" in document and "pipelineInfo" in document:
        return copy.deepcopy(dict(document))
    raise ConfigError("Not a compiled pipeline: neither a PipelineSpec nor a PipelineJob.")


def spec_parameters(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The pipeline's runtime parameters: name -> {"type": STRING|…, "default": value or None}."""
    parameters = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {
        name: {
            "type": body.get("parameterType") or body.get("type", "STRING"),
            "default": body.get("defaultValue"),
        }
        for name, body in sorted(parameters.items())
    }


def parse_parameter_value(name: str, raw: str, parameter_type: str) -> Any:
    """A ``--param`` value typed like the spec declares it."""
    try:
        if parameter_type in ("STRUCT", "LIST"):
            return json.loads(raw)
        kind = _PARAMETER_TYPES.get(parameter_type, str)
        if kind is bool:
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            return raw.lower() == "true"
        return kind(raw)
    except ValueError:  # json.JSONDecodeError is a ValueError too
        raise ConfigError(f"Parameter {name!r} is {parameter_type}; {raw!r} is not.") from None


def executor_containers(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Component id -> its executor's container spec (TFX labels executors ``<id>_executor``)."""
    found = {}
    for label, executor in spec["deploymentSpec"]["executors"].items():
        if "container" in executor:
            found[label.removesuffix("_executor")] = executor["container"]
    return found
