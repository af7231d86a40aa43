"""EdgeExport: a custom TFX component after the Evaluator (spec / executor / component).

Inputs: the Trainer's ``model`` and ``model_run`` (the class vocabulary), the
``examples`` (training images calibrate int8; the test split — else eval —
measures parity). Output: an ``EdgeModel`` folder with ``model_float16.tflite``,
``model_int8.tflite``, ``labels.txt`` and ``edge_parity.json``, which the Pusher
copies into the pushed version as ``assets.extra/edge/``.
"""

from __future__ import annotations

from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import json_utils

from visiontfx.components.edge_export import executor


class EdgeModel(types.Artifact):
    """TFLite models of a trained classifier, their labels and their measured parity."""

    TYPE_NAME = "visiontfx.EdgeModel"


class EdgeExportSpec(types.ComponentSpec):
    PARAMETERS = {executor.CUSTOM_CONFIG_KEY: ExecutionParameter(type=str)}
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun, optional=True),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {executor.EDGE_MODEL_KEY: ChannelParameter(type=EdgeModel)}


class EdgeExport(base_component.BaseComponent):
    SPEC_CLASS = EdgeExportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        examples: types.BaseChannel,
        custom_config: dict[str, Any],
        model_run: types.BaseChannel | None = None,
    ) -> None:
        spec = EdgeExportSpec(
            model=model,
            model_run=model_run,
            examples=examples,
            custom_config=json_utils.dumps(custom_config),
            edge_model=types.Channel(type=EdgeModel),
        )
        super().__init__(spec=spec)
