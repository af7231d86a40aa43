"""What the Pusher adds to a version besides the SavedModel: the TFLite folder and the model card.

Written into the staged copy before it is renamed into place, so a version
appears with its card and edge models or not at all.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

from tfx import types
from tfx.types import artifact_utils
from tfx.utils import io_utils, json_utils

from visiontfx.contracts import edge

EDGE_MODEL_KEY = "edge_model"
EXAMPLES_KEY = "examples"
MODEL_RUN_KEY = "model_run"
EVALUATION_KEY = "evaluation"
MODEL_CARD_KEY = "model_card"
LINEAGE_KEYS = ("model", "model_blessing", EXAMPLES_KEY, MODEL_RUN_KEY, EVALUATION_KEY, EDGE_MODEL_KEY)


@dataclasses.dataclass(frozen=True)
class ReleaseInputs:
    """The artifact URIs and ids the card and the edge copy need (all optional)."""

    model_name: str
    edge_uri: str = ""
    examples_uri: str = ""
    spans: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_run_uri: str = ""
    evaluation_uri: str = ""
    lineage: dict[str, Any] = dataclasses.field(default_factory=dict)
    card_settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # data_source, evaluated_split

    @classmethod
    def from_artifacts(
        cls,
        model_name: str,
        input_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
        pipeline_run_id: str | None,
    ) -> ReleaseInputs:
        def uri(key: str) -> str:
            artifacts = input_dict.get(key) or []
            return artifacts[0].uri if artifacts else ""

        lineage: dict[str, Any] = {
            f"{key} artifact": input_dict[key][0].id for key in LINEAGE_KEYS if input_dict.get(key)
        }
        if pipeline_run_id:
            lineage["pipeline run"] = pipeline_run_id
        spans: dict[str, Any] = {}
        if input_dict.get(EXAMPLES_KEY):
            examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
            spans = {name: _property(examples, name) for name in ("span", "version")}
        card = json_utils.loads(exec_properties.get(MODEL_CARD_KEY) or "null") or {}
        return cls(
            model_name=model_name,
            edge_uri=uri(EDGE_MODEL_KEY),
            examples_uri=uri(EXAMPLES_KEY),
            spans=spans,
            model_run_uri=uri(MODEL_RUN_KEY),
            evaluation_uri=uri(EVALUATION_KEY),
            lineage=lineage,
            card_settings=dict(card),
        )

    def write(self, staging: str, version: str) -> None:
        """Copies the TFLite folder and writes the model card into the staged version."""
        from visiontfx.components.model_card import card, render

        if self.edge_uri:
            io_utils.copy_dir(self.edge_uri, os.path.join(staging, edge.PUSHED_EDGE_DIR))
        facts = card.gather_facts(
            model_name=self.model_name,
            version=version,
            pushed_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            examples_uri=self.examples_uri,
            spans=self.spans,
            model_run_uri=self.model_run_uri,
            evaluation_uri=self.evaluation_uri,
            edge_uri=self.edge_uri,
            lineage=self.lineage,
            data_source=str(self.card_settings.get("data_source", "")),
            evaluated_split=str(self.card_settings.get("evaluated_split", "")),
        )
        if facts.class_names:  # what local tools label with (line i = output index i)
            io_utils.write_string_file(
                os.path.join(staging, edge.PUSHED_LABELS), "".join(f"{name}\n" for name in facts.class_names)
            )
        parts = card.sections(facts)
        io_utils.write_string_file(
            os.path.join(staging, edge.MODEL_CARD_MD), render.to_markdown(facts, parts)
        )
        io_utils.write_string_file(os.path.join(staging, edge.MODEL_CARD_HTML), render.to_html(facts, parts))

    def mark(self, pushed_model: types.Artifact, serving_path: str) -> None:
        """Points the PushedModel's ML Metadata at the card (and the TFLite folder) inside the version."""
        pushed_model.set_string_custom_property(
            edge.MODEL_CARD_PROPERTY, os.path.join(serving_path, edge.MODEL_CARD_MD)
        )
        if self.edge_uri:
            pushed_model.set_string_custom_property(
                edge.EDGE_PROPERTY, os.path.join(serving_path, edge.PUSHED_EDGE_DIR)
            )


def _property(artifact: types.Artifact, name: str) -> Any:
    return getattr(artifact, name) if artifact.has_property(name) else None
