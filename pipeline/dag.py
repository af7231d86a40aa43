"""The visiontfx DAG, one function for every runner (local Beam and Kubeflow).

ExampleGen → StatisticsGen → ImportSchemaGen → ExampleValidator → Transform →
Trainer → Evaluator (against the latest blessed model) → EdgeExport (TFLite) →
Pusher (SavedModel, TFLite files and model card), plus optionally
InferenceExampleGen → BulkInferrer (``inference.path``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal, Sequence

from google.protobuf import message

# TFX's own components and DSL, imported from their modules rather than through
# `tfx.v1`: that facade also imports the Google Cloud extensions (aiplatform),
# ~5 s of every run, cached re-runs included.
from tfx.components import (
    BulkInferrer,
    Evaluator,
    ExampleValidator,
    ImportExampleGen,
    StatisticsGen,
    Trainer,
    Transform,
    Tuner,
)
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.orchestration import metadata
from tfx.orchestration.data_types import RuntimeParameter
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import bulk_inferrer_pb2, example_gen_pb2, pusher_pb2
from tfx.types import standard_artifacts
from tfx.types.channel import Channel
from tfx.utils import json_utils, proto_utils

from visiontfx.components.drift.baseline import PreviousTrainedStatisticsStrategy
from visiontfx.components.drift.comparators import SPLIT_PAIR, distribution_validator_config
from visiontfx.components.drift.gate import DriftGate
from visiontfx.components.drift.validator import NODE_ID as DRIFT_VALIDATOR_ID
from visiontfx.components.drift.validator import ColdStartDistributionValidator
from visiontfx.components.edge_export.component import EdgeExport
from visiontfx.components.edge_export.settings import EdgeSettings
from visiontfx.components.evaluator.baseline_resolver import LatestBlessedOtherModelStrategy
from visiontfx.components.evaluator.eval_config import build_eval_config
from visiontfx.components.image_example_gen.component import ImageExampleGen
from visiontfx.components.image_example_gen.settings import IngestSettings
from visiontfx.components.pusher.component import ServingPusher
from visiontfx.components.pusher.settings import PushTargets
from visiontfx.components.serving.signatures import EXAMPLES_SIGNATURE
from visiontfx.components.trainer.settings import TrainerSettings
from visiontfx.components.transform.settings import TransformSettings
from visiontfx.contracts.edge import EDGE_EXPORT_ID
from visiontfx.contracts.ids import BASELINE_RESOLVER_ID, DRIFT_BASELINE_RESOLVER_ID
from visiontfx.pipeline.config import Config
from visiontfx.pipeline.dag_inputs import DagInputs

# How the Evaluator finds its baseline (see make_baseline_resolver).
Baseline = Literal["exclude_candidate", "latest_blessed", "none"]
PREPROCESSING_FN = "visiontfx.components.transform.preprocessing.preprocessing_fn"
RUN_FN = "visiontfx.components.trainer.run.run_fn"
TUNER_FN = "visiontfx.components.trainer.tuning.tuner_fn"


@dataclasses.dataclass(frozen=True)
class RunLocations:
    """Where a run writes. Kubeflow passes URIs (gs://…) and RuntimeParameters."""

    pipeline_root: str
    serving_dir: str
    metadata_path: str | None = None  # local SQLite; None on Kubeflow (the cluster's MLMD)
    data_root: Any = None  # str or RuntimeParameter; default: config.data.path
    # Trainer backups under <pipeline_root>/_trainer_checkpoints, shared by runs so a re-run
    # resumes. False on clusters, where a run may override the compiled pipeline root: the
    # Trainer then backs up inside its own model_run output.
    shared_checkpoints: bool = True


def ingest_settings(config: Config) -> IngestSettings:
    """ImageExampleGen's settings: the ingestion keys of the ``data`` section."""
    return IngestSettings.of(config.data)


def make_example_gen(config: Config, data_root: Any, has_test_split: bool) -> Any:
    if config.data.source == "tfrecord":
        splits = [example_gen_pb2.Input.Split(name=name, pattern=f"{name}/*") for name in ("train", "eval")]
        if has_test_split:
            splits.append(example_gen_pb2.Input.Split(name="test", pattern="test/*"))
        return ImportExampleGen(input_base=data_root, input_config=example_gen_pb2.Input(splits=splits))
    return ImageExampleGen(source=config.data.source, input_base=data_root, options=ingest_settings(config))


def trainer_settings(config: Config, pipeline_root: str, class_names: Sequence[str] = ()) -> TrainerSettings:
    """The Trainer's (and Tuner's) settings: the config's sections as they are, and where to back up."""
    return TrainerSettings(
        model=config.model,
        training=config.training,
        augmentation=config.augmentation,
        top_k=config.serving.top_k,
        # "" (no pipeline root given): the Trainer keeps its backups in its model_run output.
        checkpoint_root=os.path.join(pipeline_root, "_trainer_checkpoints") if pipeline_root else "",
        class_names=tuple(class_names),
    )


def trainer_custom_config(
    config: Config, pipeline_root: str, class_names: Sequence[str] = ()
) -> dict[str, Any]:
    """:func:`trainer_settings` as the JSON-able custom_config TFX stores (on Kubeflow: the
    runtime parameter ``trainer_custom_config``)."""
    return trainer_settings(config, pipeline_root, class_names).as_custom_config()


def transform_settings(config: Config) -> TransformSettings:
    """Transform's settings: the backbone (its pixel scaling) and the input size."""
    return TransformSettings(backbone=config.model.backbone, image_size=config.model.image_size)


def describe_source(config: Config, data_root: Any) -> str:
    """For the model card: the source and where it was read (a Kubeflow runtime root by name)."""
    where = config.data.tfds_name or (data_root if isinstance(data_root, str) else config.data.path)
    return f"{config.data.source} ({where or 'its default location'})"


def edge_custom_config(config: Config, class_names: Sequence[str] = ()) -> dict[str, Any]:
    """EdgeExport's settings (the ``edge`` section, the backbone and its input size) as its custom_config."""
    return EdgeSettings.of(
        config.edge,
        backbone=config.model.backbone,
        image_size=config.model.image_size,
        class_names=tuple(class_names),
    ).to_dict()


def make_bulk_inferrer(config: Config, model: Any, model_blessing: Any) -> tuple[Any, Any] | None:
    """(ImportExampleGen, BulkInferrer) labelling ``inference.path`` with the blessed model, or None.

    BulkInferrer runs the SavedModel's serialized-Example signature; it skips
    itself when the model is not blessed. Its PredictionLogs hold the
    probabilities, the top-k classes and their scores.
    """
    if not config.inference.path:
        return None
    inference_examples = ImportExampleGen(
        input_base=config.inference.path,
        input_config=example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="unlabelled", pattern="*")]
        ),
    ).with_id("InferenceExampleGen")
    bulk_inferrer = BulkInferrer(
        examples=inference_examples.outputs["examples"],
        model=model,
        model_blessing=model_blessing,
        data_spec=bulk_inferrer_pb2.DataSpec(),
        model_spec=bulk_inferrer_pb2.ModelSpec(model_signature_name=[EXAMPLES_SIGNATURE]),
    )
    return inference_examples, bulk_inferrer


def make_baseline_resolver(candidate: Any, baseline: Baseline) -> Resolver | None:
    """The latest blessed model to compare against, or None when the runner cannot resolve one.

    - ``exclude_candidate`` (local): the candidate is excluded, so a re-run stays
      fully cached (see baseline_resolver.py).
    - ``latest_blessed`` (Vertex AI): the Kubeflow V2 compiler only knows TFX's
      own strategy, which it turns into Vertex resolver queries.
    - ``none`` (open-source Kubeflow Pipelines 2.x): its backend cannot run
      resolver executors ("resolver executors not implemented"), so there is no
      baseline and only the absolute accuracy bound applies (TFX skips change
      thresholds when the baseline is missing).
    """
    if baseline == "none":
        return None
    channels: dict[str, Any] = {
        "model": Channel(type=standard_artifacts.Model),
        "model_blessing": Channel(type=standard_artifacts.ModelBlessing),
    }
    if baseline == "exclude_candidate":
        return Resolver(
            strategy_class=LatestBlessedOtherModelStrategy, candidate=candidate, **channels
        ).with_id(BASELINE_RESOLVER_ID)
    return Resolver(strategy_class=LatestBlessedModelStrategy, **channels).with_id(BASELINE_RESOLVER_ID)


def make_drift_nodes(config: Config, statistics: Any, baseline: Baseline) -> list[Any]:
    """Resolver → DistributionValidator (→ DriftGate with ``drift.action: fail``), or nothing.

    The baseline statistics come from a custom resolver strategy, which runs
    only locally: the Kubeflow V2 compiler accepts TFX's own strategies only,
    and open-source KFP runs no resolver (see docs/continuous_training.md).
    On the first span there is no baseline: the validator rubber-stamps.
    """
    if config.drift.action == "off" or baseline != "exclude_candidate":
        return []
    resolver = Resolver(
        strategy_class=PreviousTrainedStatisticsStrategy,
        candidate=statistics,
        statistics=Channel(type=standard_artifacts.ExampleStatistics),
    ).with_id(DRIFT_BASELINE_RESOLVER_ID)
    drift = config.drift
    validator = ColdStartDistributionValidator(
        statistics=statistics,
        baseline_statistics=resolver.outputs["statistics"],
        config=distribution_validator_config(
            drift.label_threshold, drift.format_threshold, drift.size_threshold
        ),
        include_split_pairs=[SPLIT_PAIR],
    ).with_id(DRIFT_VALIDATOR_ID)
    nodes = [resolver, validator]
    if drift.action == "fail":
        nodes.append(DriftGate(anomalies=validator.outputs["anomalies"]))
    return nodes


def as_runtime_parameter(name: str, value: Any) -> Any:
    """``value`` (a JSON-able dict or a proto) as a runtime parameter of that name defaulting to
    it, serialized the way TFX stores the execution property; the value itself without a name.

    TFX takes a str RuntimeParameter for a whole JSON dict or proto property, never for a
    value inside one (see docs/kubeflow.md).
    """
    if not name:
        return value
    if isinstance(value, message.Message):
        default = proto_utils.proto_to_json(value)
    else:
        default = json_utils.dumps(value)
    return RuntimeParameter(name=name, ptype=str, default=default)


def create_pipeline(
    config: Config,
    locations: RunLocations,
    inputs: DagInputs,
    beam_pipeline_args: Sequence[str] = (),
    baseline: Baseline | None = None,
) -> Pipeline:
    """Assembles the DAG; reads like the DAG. Pure wiring: what it needs from outside (schema,
    class names, runtime parameters) the runner gathered into ``inputs`` (see dag_inputs.py).

    ``baseline`` defaults to ``exclude_candidate`` with a local metadata store
    and ``latest_blessed`` otherwise (see make_baseline_resolver).
    """
    data_root = locations.data_root if locations.data_root is not None else config.data.path
    class_names = inputs.class_names

    example_gen = make_example_gen(config, data_root, inputs.has_test_split)
    examples = example_gen.outputs["examples"]

    statistics_gen = StatisticsGen(examples=examples)
    if baseline is None:
        baseline = "exclude_candidate" if locations.metadata_path is not None else "latest_blessed"
    drift_nodes = make_drift_nodes(config, statistics_gen.outputs["statistics"], baseline)
    schema_gen = ImportSchemaGen(schema_file=inputs.schema_file)
    schema = schema_gen.outputs["schema"]
    example_validator = ExampleValidator(statistics=statistics_gen.outputs["statistics"], schema=schema)

    transform = Transform(
        examples=examples,
        schema=schema,
        preprocessing_fn=PREPROCESSING_FN,
        materialize=False,  # the Trainer applies the graph per batch: no copy of decoded images
        disable_statistics=True,
        custom_config=transform_settings(config).to_dict(),
    )

    checkpoint_parent = locations.pipeline_root if locations.shared_checkpoints else ""
    custom_config = trainer_custom_config(config, checkpoint_parent, class_names)
    tuner = (
        Tuner(
            tuner_fn=TUNER_FN,
            examples=examples,
            transform_graph=transform.outputs["transform_graph"],
            schema=schema,
            custom_config=custom_config,
        )
        if config.training.tune
        else None
    )

    trainer = Trainer(
        run_fn=RUN_FN,
        examples=examples,
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        custom_config=as_runtime_parameter(inputs.trainer_config_parameter, custom_config),
    )

    for node in drift_nodes:
        if isinstance(node, DriftGate):
            trainer.add_upstream_node(node)  # drift beyond a threshold stops the run before training
    latest_blessed_model = make_baseline_resolver(trainer.outputs["model"], baseline)

    evaluated_split = "test" if inputs.has_test_split else "eval"
    evaluator = Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=latest_blessed_model.outputs["model"] if latest_blessed_model else None,
        schema=schema,
        eval_config=as_runtime_parameter(
            inputs.eval_config_parameter,
            build_eval_config(config.evaluation.min_accuracy, config.evaluation.max_accuracy_drop),
        ),
        example_splits=[evaluated_split],
    )

    edge_export = (
        EdgeExport(
            model=trainer.outputs["model"],
            model_run=trainer.outputs["model_run"],
            examples=examples,
            custom_config=edge_custom_config(config, class_names),
        ).with_id(EDGE_EXPORT_ID)
        if config.edge.enabled
        else None
    )
    bulk_inference = make_bulk_inferrer(config, trainer.outputs["model"], evaluator.outputs["blessing"])

    pusher = ServingPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=os.path.join(locations.serving_dir, config.serving.model_name)
            )
        ),
        custom_config=PushTargets.of(config.serving).to_dict(),
        edge_model=edge_export.outputs["edge_model"] if edge_export else None,
        examples=examples,
        model_run=trainer.outputs["model_run"],
        evaluation=evaluator.outputs["evaluation"],
        model_card={
            "data_source": describe_source(config, data_root),
            "evaluated_split": evaluated_split,
        },
    ).with_id("Pusher")

    return Pipeline(
        pipeline_name=config.pipeline.name,
        pipeline_root=locations.pipeline_root,
        components=[
            component
            for component in (
                example_gen,
                statistics_gen,
                schema_gen,
                example_validator,
                *drift_nodes,
                transform,
                tuner,
                trainer,
                latest_blessed_model,
                evaluator,
                edge_export,
                *(bulk_inference or ()),
                pusher,
            )
            if component is not None
        ],
        enable_cache=config.pipeline.enable_cache,
        metadata_connection_config=(
            metadata.sqlite_metadata_connection_config(locations.metadata_path)
            if locations.metadata_path
            else None
        ),
        beam_pipeline_args=list(beam_pipeline_args),
    )
