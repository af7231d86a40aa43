"""TFX's DistributionValidator, runnable on the first span (no baseline yet).

Its executor already rubber-stamps when the baseline is missing ("cold start"),
but its spec declares the baseline required, so the launcher fails the node on
an empty resolver output instead. Same executor and inputs; the baseline optional.
"""

from __future__ import annotations

from typing import Sequence

from tfx import types
from tfx.components.distribution_validator.component import DistributionValidator
from tfx.dsl.components.base import base_component
from tfx.proto import distribution_validator_pb2
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

NODE_ID = "DistributionValidator"


class OptionalBaselineSpec(specs.DistributionValidatorSpec):
    INPUTS = {
        **specs.DistributionValidatorSpec.INPUTS,
        specs.BASELINE_STATISTICS_KEY: ChannelParameter(
            type=standard_artifacts.ExampleStatistics, optional=True
        ),
    }


class ColdStartDistributionValidator(base_component.BaseComponent):
    SPEC_CLASS = OptionalBaselineSpec
    EXECUTOR_SPEC = DistributionValidator.EXECUTOR_SPEC

    def __init__(
        self,
        statistics: types.BaseChannel,
        baseline_statistics: types.BaseChannel,
        config: distribution_validator_pb2.DistributionValidatorConfig,
        include_split_pairs: Sequence[tuple[str, str]],
    ) -> None:
        super().__init__(
            spec=OptionalBaselineSpec(
                **{
                    specs.STATISTICS_KEY: statistics,
                    specs.BASELINE_STATISTICS_KEY: baseline_statistics,
                    specs.DISTRIBUTION_VALIDATOR_CONFIG_KEY: config,
                    specs.INCLUDE_SPLIT_PAIRS_KEY: json_utils.dumps([list(p) for p in include_split_pairs]),
                    specs.ANOMALIES_KEY: types.Channel(type=standard_artifacts.ExampleAnomalies),
                }
            )
        )
