"""ImageExampleGen's driver: resolves spans and the input fingerprint before TFX's cache check.

TFX's ExampleGen driver (``tfx.components.example_gen.driver.Driver``) already
records ``span``, ``version`` and ``input_fingerprint`` as exec properties (which
enter the cache key) and on the output Examples; only the resolution differs
for images (class folders, a rolling window of spans, IDX/TFDS files), so it is
delegated to :func:`spans.resolve_input`, the function the executor falls back
to when no driver ran.
"""

from __future__ import annotations

from typing import Any

from tfx.components.example_gen import driver as example_gen_driver
from tfx.orchestration import data_types

from visiontfx.components.image_example_gen import spans


class Driver(example_gen_driver.Driver):
    def resolve_exec_properties(
        self,
        exec_properties: dict[str, Any],
        pipeline_info: data_types.PipelineInfo,
        component_info: data_types.ComponentInfo,
    ) -> dict[str, Any]:
        del pipeline_info, component_info
        exec_properties.pop(spans.RESOLVED_INPUT_PROPERTY, None)  # always resolved afresh here
        spans.resolve_exec_properties(exec_properties)
        return exec_properties
