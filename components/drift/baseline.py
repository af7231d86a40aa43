"""The drift baseline: statistics of the newest data a Trainer trained on, other than the candidate's.

Excluding the candidate keeps an unchanged re-run fully cached (its statistics
come from the cache and would otherwise become their own baseline), the same
reasoning as the Evaluator's baseline (components/evaluator/baseline_resolver.py).
Requiring a completed Trainer on the same Examples makes the baseline "what the
current model learned from", not merely the last data that was ingested.
"""

from __future__ import annotations

from typing import Any

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver

STATISTICS_KEY = "statistics"
CANDIDATE_KEY = "candidate"
TRAINER_TYPE_SUFFIX = ".Trainer"
_COMPLETE = metadata_store_pb2.Execution.COMPLETE
_INPUT = metadata_store_pb2.Event.INPUT
_OUTPUTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def trained_examples_ids(store: Any) -> set[int]:
    """Ids of every Examples artifact a completed Trainer execution read."""
    trainer_types = [t.name for t in store.get_execution_types() if t.name.endswith(TRAINER_TYPE_SUFFIX)]
    executions = [e for name in trainer_types for e in store.get_executions_by_type(name)]
    complete = [e.id for e in executions if e.last_known_state == _COMPLETE]
    if not complete:
        return set()
    return {
        event.artifact_id
        for event in store.get_events_by_execution_ids(complete)
        if event.type == _INPUT and event.path.steps and event.path.steps[0].key == "examples"
    }


def source_examples_ids(store: Any, statistics_id: int) -> set[int]:
    """Ids of the artifacts the execution that produced ``statistics_id`` read."""
    producers = [
        e.execution_id for e in store.get_events_by_artifact_ids([statistics_id]) if e.type in _OUTPUTS
    ]
    if not producers:
        return set()
    return {e.artifact_id for e in store.get_events_by_execution_ids(producers) if e.type == _INPUT}


def previous_trained_statistics(
    store: Any, statistics: list[types.Artifact], excluded_ids: set[int]
) -> list[types.Artifact]:
    """[the newest statistics of trained-on data not in ``excluded_ids``], or []."""
    trained = trained_examples_ids(store)
    for artifact in sorted(statistics, key=lambda a: a.id, reverse=True):
        if artifact.id not in excluded_ids and source_examples_ids(store, artifact.id) & trained:
            return [artifact]
    return []


class PreviousTrainedStatisticsStrategy(resolver.ResolverStrategy):
    """Resolves ``statistics``; ``candidate`` (this run's StatisticsGen output) is excluded."""

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[types.Artifact]]) -> dict[str, list]:
        candidates = list(input_dict.get(CANDIDATE_KEY, []))
        baseline = previous_trained_statistics(
            store, list(input_dict.get(STATISTICS_KEY, [])), {a.id for a in candidates}
        )
        return {STATISTICS_KEY: baseline, CANDIDATE_KEY: candidates}
