"""The Pusher component the DAG uses: TFX's Pusher spec plus what goes beside each version.

Same inputs, outputs and blessing check as ``tfx.components.Pusher``, with
optional extra inputs the executor copies or summarizes into the pushed
version: ``edge_model`` (EdgeExport's TFLite folder → ``assets.extra/edge/``)
and, for the model card (``assets.extra/model_card.md``/``.html``),
``examples``, ``model_run`` and ``evaluation``. ``model_card`` carries what no
artifact knows (the data source, the evaluated split) as JSON.
"""

from __future__ import annotations

from typing import Any

from tfx import types
from tfx.components.pusher import component as tfx_pusher_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import json_utils

from visiontfx.components.edge_export.component import EdgeModel
from visiontfx.components.pusher.executor import Executor
from visiontfx.components.pusher.release_assets import (
    EDGE_MODEL_KEY,
    EVALUATION_KEY,
    EXAMPLES_KEY,
    MODEL_CARD_KEY,
    MODEL_RUN_KEY,
)


class ServingPusherSpec(standard_component_specs.PusherSpec):
    PARAMETERS = {
        **standard_component_specs.PusherSpec.PARAMETERS,
        MODEL_CARD_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        EDGE_MODEL_KEY: ChannelParameter(type=EdgeModel, optional=True),
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
        MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun, optional=True),
        EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
    }


class ServingPusher(tfx_pusher_component.Pusher):
    """TFX's Pusher with our executor: atomic pushes, kept versions, TF Serving configs, warmup,
    the TFLite models and the model card inside every version."""

    SPEC_CLASS = ServingPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel,
        push_destination: pusher_pb2.PushDestination,
        custom_config: dict[str, Any],
        edge_model: types.BaseChannel | None = None,
        examples: types.BaseChannel | None = None,
        model_run: types.BaseChannel | None = None,
        evaluation: types.BaseChannel | None = None,
        model_card: dict[str, Any] | None = None,
    ) -> None:
        spec = ServingPusherSpec(
            model=model,
            model_blessing=model_blessing,
            push_destination=push_destination,
            custom_config=json_utils.dumps(custom_config),
            edge_model=edge_model,
            examples=examples,
            model_run=model_run,
            evaluation=evaluation,
            model_card=json_utils.dumps(model_card or {}),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
        )
        # Skip tfx Pusher.__init__ (it builds the stock spec); BaseComponent takes ours.
        super(tfx_pusher_component.Pusher, self).__init__(spec=spec)
