"""ImageExampleGen: the TFX component for image folders, Fashion-MNIST IDX files and TFDS.

TFX ships ExampleGens for CSV, TFRecord, BigQuery… but none for images, so
this is a custom component in the TFX style: spec, Beam executor, component.
"""

from __future__ import annotations

from typing import Any

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from visiontfx.components.image_example_gen.driver import Driver
from visiontfx.components.image_example_gen.executor import EXAMPLES_KEY, Executor
from visiontfx.components.image_example_gen.settings import IngestSettings


class ImageExampleGenSpec(types.ComponentSpec):
    """Inputs: a source kind and location; output: split Examples."""

    PARAMETERS = {
        "source": ExecutionParameter(type=str),
        "input_base": ExecutionParameter(type=str),
        # IngestSettings as JSON: splits, caps, shards, tfds_name, rejection threshold,
        # image sides, span window.
        "options": ExecutionParameter(type=str),
    }
    INPUTS: dict[str, ChannelParameter] = {}
    OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class ImageExampleGen(base_beam_component.BaseBeamComponent):
    """Reads images into GZIP TFRecord shards of tf.train.Examples, with a rejection report.

    Its driver resolves spans and fingerprints the input (see spans.py), so a
    re-run ingests again exactly when the data changed.
    """

    SPEC_CLASS = ImageExampleGenSpec
    DRIVER_CLASS = Driver
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, source: str, input_base: Any, options: IngestSettings) -> None:
        """``input_base`` may be a str or a RuntimeParameter (the data root on Kubeflow)."""
        super().__init__(
            spec=ImageExampleGenSpec(
                source=source,
                input_base=input_base,
                options=options.to_json(),
                examples=types.Channel(type=standard_artifacts.Examples),
            )
        )
