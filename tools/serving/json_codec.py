"""JSON ⇄ tensors, following TF Serving's util/json_tensor.cc rules."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from visiontfx.tools.serving.errors import invalid
from visiontfx.tools.serving.servable import float32_value

# Deep enough for any tensor (a batch of images is 4 levels inside 2 or 3 of objects).
MAX_JSON_DEPTH = 64
BYTES_SUFFIX = "_bytes"  # TF Serving's REST API writes such string outputs as {"b64": ...}


def _json_type(value: Any) -> str:
    names = {dict: "Object", list: "Array", str: "String", bool: "True" if value is True else "False"}
    return "Null" if value is None else names.get(type(value), "Number")


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _json_leaf(value: Any, dtype: tf.DType) -> Any:
    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode()
        if _is_b64(value):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise invalid("Unable to base64 decode") from None
        if isinstance(value, dict):
            raise invalid(f"JSON Value: {json.dumps(value)} not formatted correctly for base64 data")
    elif isinstance(value, bool):
        if dtype == tf.bool:
            return value
    elif dtype.is_integer and isinstance(value, int):
        if not dtype.min <= value <= dtype.max:  # numpy would wrap it around silently
            raise invalid(f"JSON Value: {value} is out of range for {dtype.name}")
        return value
    elif dtype.is_floating and isinstance(value, (int, float)):
        return value
    raise invalid(
        f"JSON Value: {json.dumps(value)} Type: {_json_type(value)} is not of expected type: {dtype.name}"
    )


def json_to_array(value: Any, dtype: tf.DType) -> np.ndarray:
    """A (nested) JSON list as a dense array of ``dtype``; ragged lists are refused."""
    shape: list[int] = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    leaves: list[Any] = []

    def walk(item: Any, level: int) -> None:
        if isinstance(item, list):
            if level >= len(shape):
                raise invalid(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
            if len(item) != shape[level]:
                raise invalid(
                    f"Encountered list at unexpected size: {len(item)} at level: {level} "
                    f"expected size: {shape[level]}"
                )
            for element in item:
                walk(element, level + 1)
        elif level != len(shape):
            raise invalid(
                f"JSON Value: {json.dumps(item)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {len(shape)}"
            )
        else:
            leaves.append(_json_leaf(item, dtype))

    walk(value, 0)
    numpy_dtype = object if dtype == tf.string else dtype.as_numpy_dtype
    array = np.empty(len(leaves), dtype=numpy_dtype)
    try:
        array[:] = leaves
    except OverflowError:
        raise invalid(f"JSON Value out of range for {dtype.name}") from None
    return array.reshape(shape)


def json_inputs(
    request: Mapping[str, Any], signature: meta_graph_pb2.SignatureDef
) -> tuple[dict[str, np.ndarray], str]:
    """``instances`` (row) or ``inputs`` (columnar) → named arrays, and which format was used."""
    dtypes = {name: tf.dtypes.as_dtype(info.dtype) for name, info in signature.inputs.items()}
    if "instances" in request and "inputs" in request:
        raise invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" in request:
        return _row_inputs(request["instances"], dtypes), "row"
    if "inputs" in request:
        return _columnar_inputs(request["inputs"], dtypes), "columnar"
    raise invalid("Missing 'inputs' or 'instances' key")


def _row_inputs(instances: Any, dtypes: Mapping[str, tf.DType]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise invalid("Excepting 'instances' to be an list/array")
    if not instances:
        raise invalid("No values in 'instances' array")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named and len(dtypes) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors required "
            "as per tensorinfo_map"
        )
    columns: dict[str, list[Any]] = {name: [] for name in dtypes}
    for index, item in enumerate(instances):
        is_object = isinstance(item, dict) and not _is_b64(item)
        if is_object != named:
            kind = "object but got list" if named else "value/list but got object"
            raise invalid(f"Expecting {kind} at item {index} of input list")
        if not named:
            columns[next(iter(dtypes))].append(item)
            continue
        for key in item:
            if key not in dtypes:
                raise invalid(
                    f"Failed to process element: {index} key: {key} of 'instances' list. "
                    f"Error: Invalid argument: JSON object: does not have named input: {key}"
                )
        if set(item) != set(dtypes):
            raise invalid(
                f"Failed to process element: {index} of 'instances' list. JSON object: {json.dumps(item)} "
                f"keys must be equal to: {','.join(sorted(dtypes))}"
            )
        for key, value in item.items():
            columns[key].append(value)
    return {name: json_to_array(values, dtypes[name]) for name, values in columns.items()}


def _columnar_inputs(inputs: Any, dtypes: Mapping[str, tf.DType]) -> dict[str, np.ndarray]:
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(dtypes) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required "
                "as per tensorinfo_map"
            )
        name = next(iter(dtypes))
        return {name: json_to_array(inputs, dtypes[name])}
    arrays = {}
    for name, dtype in dtypes.items():
        if name not in inputs:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = json_to_array(inputs[name], dtype)
    return arrays


def array_to_json(array: np.ndarray, name: str) -> Any:
    """Like TF Serving: shortest float32 text, strings as text or {"b64"} for *_bytes outputs."""
    if array.dtype == object:
        if name.endswith(BYTES_SUFFIX):
            convert: Callable[[Any], Any] = lambda v: {"b64": base64.b64encode(v).decode()}  # noqa: E731
        else:
            convert = lambda v: v.decode("utf-8", "replace")  # noqa: E731
    elif array.dtype == np.float32:
        convert = float32_value
    else:
        return array.tolist()
    flat = [convert(value) for value in array.flat]
    return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]


def outputs_to_json(outputs: Mapping[str, np.ndarray], style: str) -> dict[str, Any]:
    names = sorted(outputs)
    if style == "columnar":
        values = {name: array_to_json(outputs[name], name) for name in names}
        return {"outputs": values if len(names) > 1 else values[names[0]]}
    batch = {len(outputs[name]) for name in names}
    if len(batch) != 1:
        raise invalid(f"Output tensors have inconsistent batch sizes {sorted(batch)}")
    rows = {name: array_to_json(outputs[name], name) for name in names}
    if len(names) == 1:
        return {"predictions": rows[names[0]]}
    return {"predictions": [{name: rows[name][i] for name in names} for i in range(batch.pop())]}


def json_example(value: Any, where: str) -> bytes:
    """A JSON object of features → a serialized tf.Example (json_tensor.cc's rules)."""
    if not isinstance(value, dict):
        raise invalid(f"Example must be JSON object but got JSON {_json_type(value)}")
    example = tf.train.Example()
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            if isinstance(item, (bool, int)):
                kind, item = "int64_list", int(item)
            elif isinstance(item, float):
                kind = "float_list"
            elif isinstance(item, str):
                kind, item = "bytes_list", item.encode()
            elif _is_b64(item):
                kind, item = "bytes_list", _json_leaf(item, tf.string)
            else:
                raise invalid(f"Feature: {name} has element with unexpected JSON type: {_json_type(item)}")
            if feature.WhichOneof("kind") not in (None, kind):
                raise invalid(f"Unexpected element type in feature: {name} in {where}")
            try:
                getattr(feature, kind).value.append(item)
            except (ValueError, OverflowError):  # an integer beyond int64
                raise invalid(f"Feature: {name} has a value out of range for {kind} in {where}") from None
    return example.SerializeToString()


def json_classify_examples(request: Mapping[str, Any]) -> list[bytes]:
    context = json_example(request["context"], "context") if "context" in request else b""
    examples = request.get("examples")
    if examples is None:
        raise invalid("When method is classify, key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise invalid("Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid("'examples' value is an empty array")
    return [context + json_example(item, f"example {index}") for index, item in enumerate(examples)]


def parse_json_body(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object; anything malformed is INVALID_ARGUMENT (HTTP 400), as in TF Serving.

    Strict UTF-8 (``json.loads`` on bytes would also guess UTF-16/32), no lone
    surrogates (RapidJSON refuses them), bounded nesting (so neither the parser
    nor the tensor conversion can run out of stack).
    """
    if not body.strip():
        raise invalid("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise invalid(f"JSON Parse error: Invalid encoding in string at offset: {error.start}") from None
    try:
        request = json.loads(text)
    except json.JSONDecodeError as error:
        raise invalid(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    except RecursionError:
        raise invalid(f"JSON Parse error: nesting deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as error:  # e.g. an integer literal of more than 4,300 digits
        raise invalid(f"JSON Parse error: {error}") from None
    _check_document(request, check_strings="\\u" in text)
    if not isinstance(request, dict):
        raise invalid(f"JSON Value: {json.dumps(request)[:200]} Is not object")
    return request


def _check_document(document: Any, check_strings: bool) -> None:
    """Refuses nesting deeper than MAX_JSON_DEPTH and (when escapes were used) lone surrogates."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            if depth > MAX_JSON_DEPTH:
                raise invalid(f"JSON Parse error: nesting deeper than {MAX_JSON_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if check_strings and isinstance(key, str):
                    _check_text(key)
                if isinstance(item, (list, dict, str)):
                    stack.append((item, depth + 1))
        elif check_strings and isinstance(value, str):
            _check_text(value)


def _check_text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        code_point = ord(value[error.start])
        message = f"JSON Parse error: The surrogate pair in string is invalid (U+{code_point:04X})"
        raise invalid(message) from None
