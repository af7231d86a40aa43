"""DriftGate: stops the run before training when the DistributionValidator found drift beyond a threshold.

TFX's DistributionValidator records drift but never fails; with
``drift.action: fail`` this small component (spec / executor / component) is an
upstream of the Trainer and raises :class:`DriftError` naming each drift.
"""

from __future__ import annotations

from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter

from visiontfx.components.drift.results import describe, read_drift
from visiontfx.contracts.failures import DriftError

ANOMALIES_KEY = "anomalies"


class DriftGateSpec(types.ComponentSpec):
    PARAMETERS: dict[str, Any] = {}
    INPUTS = {ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies)}
    OUTPUTS: dict[str, ChannelParameter] = {}


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        anomalies = artifact_utils.get_single_instance(input_dict[ANOMALIES_KEY])
        drift = read_drift(anomalies.uri)
        if drift["exceeded"]:
            raise DriftError(
                f"The new training data drifted from the data the last model trained on: {describe(drift)}. "
                "Check the new span (labels, image sources), raise the drift.* thresholds, "
                "or set drift.action=warn to train anyway."
            )


class DriftGate(base_component.BaseComponent):
    SPEC_CLASS = DriftGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, anomalies: types.BaseChannel) -> None:
        super().__init__(spec=DriftGateSpec(anomalies=anomalies))
