"""The Evaluator's baseline: the latest blessed model *other than the candidate*.

TFX's LatestBlessedModelStrategy returns the newest blessed model even when
that is the candidate itself (a re-run with nothing changed): the Evaluator's
inputs then differ from the first run, so it re-runs, compares the model with
itself and the Pusher pushes a duplicate version. Excluding the candidate keeps
"nothing changed" fully cached and never makes a model its own baseline.
"""

from __future__ import annotations

from typing import Any

from tfx import types
from tfx.dsl.components.common import resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)

MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"
CANDIDATE_KEY = "candidate"


def latest_blessed_excluding(
    models: list[types.Artifact], blessings: list[types.Artifact], excluded_ids: set[int]
) -> tuple[list[types.Artifact], list[types.Artifact]]:
    """([model], [blessing]) of the newest blessed model not in ``excluded_ids``, or ([], [])."""
    blessed = {
        b.get_int_custom_property("current_model_id"): b
        for b in blessings
        if b.get_int_custom_property("blessed") == 1
    }
    for model in sorted(models, key=lambda m: m.id, reverse=True):
        if model.id in blessed and model.id not in excluded_ids:
            return [model], [blessed[model.id]]
    return [], []


class LatestBlessedOtherModelStrategy(resolver.ResolverStrategy):
    """Resolves ``model``/``model_blessing``; ``candidate`` (the Trainer's model) is excluded."""

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[types.Artifact]]) -> dict[str, list]:
        candidates = {a.id for a in input_dict.get(CANDIDATE_KEY, [])}
        model, blessing = latest_blessed_excluding(
            input_dict.get(MODEL_KEY, []), input_dict.get(BLESSING_KEY, []), candidates
        )
        return {
            MODEL_KEY: model,
            BLESSING_KEY: blessing,
            CANDIDATE_KEY: list(input_dict.get(CANDIDATE_KEY, [])),
        }


__all__ = ["LatestBlessedModelStrategy", "LatestBlessedOtherModelStrategy", "latest_blessed_excluding"]
