"""The container command of every compiled task: TFX's entrypoint, made to accept what the
open-source Kubeflow Pipelines 2.x backend hands over.

``visiontfx compile`` sets this module as the command of every task
(``python -m visiontfx.pipeline.kfp_entrypoint`` with TFX's own arguments, see
``kubeflow.ENTRYPOINT_COMMAND``). It repairs the executor input (the
``{{$}}`` argument) and then runs TFX 1.16's
``kubeflow_v2_run_executor`` unchanged. Two things in what the open-source
backend builds break TFX's entrypoint:

- Upstream artifacts arrive with an empty ``type.instanceSchema`` (the backend
  does not store the schema in ML Metadata); TFX reads the artifact class from
  it and fails on ``None.get`` (tensorflow/tfx#7768). Filled here from the
  task's declared input types (TFX's ``--json_serialized_inputs_spec_args``)
  and output types (``--json_serialized_outputs_spec_args``, added by
  ``visiontfx compile``).
- Backends from 2.5 on add an output ``executor-logs`` (schema title
  ``system.Artifact``) that the launcher itself writes; TFX cannot import a
  class for it. Outputs the component does not declare are dropped here.

Vertex AI fills every schema and adds no outputs, so there this changes
nothing. Only the standard library is imported before TFX, so TensorFlow is
first imported by TFX, after ``visiontfx`` has set ``TF_USE_LEGACY_KERAS``.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from typing import Any, Mapping, Sequence

import visiontfx  # noqa: F401  (TF_USE_LEGACY_KERAS before TFX imports TensorFlow)

INVOCATION_FLAG = "--json_serialized_invocation_args"
INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"
OUTPUTS_SPEC_FLAG = "--json_serialized_outputs_spec_args"  # ours: TFX's entrypoint does not know it

log = logging.getLogger("visiontfx.kfp_entrypoint")


class EntrypointError(ValueError):
    """The executor input cannot be repaired (an artifact of a type the task does not declare)."""


def flag_value(argv: Sequence[str], flag: str) -> tuple[str | None, list[str]]:
    """The value of ``flag`` (``--f v`` or ``--f=v``) and the arguments without it."""
    rest: list[str] = []
    value = None
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == flag and index + 1 < len(argv):
            value = argv[index + 1]
            index += 2
            continue
        if arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
        else:
            rest.append(arg)
        index += 1
    return value, rest


def _has_type(artifact: Mapping[str, Any]) -> bool:
    kind = artifact.get("type") or {}
    return bool(kind.get("instanceSchema") or kind.get("schemaTitle") or kind.get("schemaUri"))


def _declared_types(spec: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """artifact key -> its ``artifactType`` from a Component{Inputs,Outputs}Spec JSON dict."""
    artifacts = (spec or {}).get("artifacts", {})
    return {key: dict(body.get("artifactType", {})) for key, body in artifacts.items()}


def _fill_types(
    artifacts: Mapping[str, Any], declared: Mapping[str, Mapping[str, Any]], side: str
) -> list[str]:
    """Gives every untyped artifact its key's declared type; returns what was filled."""
    filled = []
    for key, artifact_list in artifacts.items():
        for artifact in artifact_list.get("artifacts", []):
            if _has_type(artifact):
                continue
            if key not in declared:
                raise EntrypointError(
                    f"{side} artifact {key!r} has no type and the task declares none for it "
                    f"(declared: {', '.join(sorted(declared)) or 'none'})."
                )
            artifact["type"] = copy.deepcopy(dict(declared[key]))
            filled.append(f"{side} {key}")
    return filled


def _is_platform_artifact(artifact_list: Mapping[str, Any]) -> bool:
    """A KFP system type (``system.Artifact`` …): no TFX class exists for it."""
    artifacts = artifact_list.get("artifacts", [])
    return bool(artifacts) and all(
        (artifact.get("type") or {}).get("schemaTitle", "").startswith("system.") for artifact in artifacts
    )


def repair_executor_input(
    executor_input: Mapping[str, Any],
    inputs_spec: Mapping[str, Any] | None,
    outputs_spec: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], list[str]]:
    """The executor input TFX's entrypoint can parse, and a line per change made.

    - Input and output artifacts without a type get the one the task declares.
    - Outputs the task does not declare are dropped (the launcher manages them).
      Without a declared outputs spec (a spec compiled before this module
      existed) outputs of KFP's ``system.*`` types are dropped instead.
    """
    repaired = copy.deepcopy(dict(executor_input))
    changes: list[str] = []
    outputs = repaired.get("outputs", {}).get("artifacts", {})
    declared_outputs = _declared_types(outputs_spec)
    for key in sorted(outputs):
        unknown = (
            key not in declared_outputs if outputs_spec is not None else _is_platform_artifact(outputs[key])
        )
        if unknown:
            del outputs[key]
            changes.append(f"dropped output {key} (not declared by the component; the launcher writes it)")
    inputs = repaired.get("inputs", {}).get("artifacts", {})
    changes += [
        f"filled the type of {name}" for name in _fill_types(inputs, _declared_types(inputs_spec), "input")
    ]
    changes += [f"filled the type of {name}" for name in _fill_types(outputs, declared_outputs, "output")]
    return repaired, changes


def _load_json(text: str | None, flag: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise EntrypointError(f"{flag} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise EntrypointError(f"{flag} must be a JSON object.")
    return value


def repaired_arguments(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """TFX's entrypoint arguments with the executor input repaired (and our flag removed)."""
    outputs_text, args = flag_value(argv, OUTPUTS_SPEC_FLAG)
    invocation_text, _ = flag_value(args, INVOCATION_FLAG)
    if invocation_text is None:
        raise EntrypointError(f"{INVOCATION_FLAG} is required (the executor input, '{{{{$}}}}').")
    inputs_text, _ = flag_value(args, INPUTS_SPEC_FLAG)
    executor_input = _load_json(invocation_text, INVOCATION_FLAG) or {}
    repaired, changes = repair_executor_input(
        executor_input,
        _load_json(inputs_text, INPUTS_SPEC_FLAG),
        _load_json(outputs_text, OUTPUTS_SPEC_FLAG),
    )
    if not changes:
        return args, changes
    _, rest = flag_value(args, INVOCATION_FLAG)
    return [INVOCATION_FLAG, json.dumps(repaired), *rest], changes


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args, changes = repaired_arguments(list(sys.argv[1:] if argv is None else argv))
    for change in changes:
        log.info(change)
    from absl import app  # TFX's entrypoint is an absl app; importing it imports TensorFlow
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    app.run(
        kubeflow_v2_run_executor.main,
        argv=[sys.argv[0], *args],
        flags_parser=kubeflow_v2_run_executor._parse_flags,  # TFX's own parser, unchanged
    )


if __name__ == "__main__":
    main()
