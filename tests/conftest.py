"""Shared fixtures: the tiny real pipeline run that integration tests read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import visiontfx  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

os.environ.setdefault("VISIONTFX_QUIET", "1")
REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / "pipeline" / "configs" / "tiny.yaml"
# An image folder as the source, all of it used, split 70/15/15 by hash.
FOLDER_SOURCE = (
    "data.source=folder",
    "data.max_train_images=0",
    "data.max_eval_images=0",
    "data.max_test_images=0",
    "data.splits.train=0.7",
    "data.splits.eval=0.15",
    "data.splits.test=0.15",
)


def tiny_config(root: Path, *overrides: str) -> Any:
    from visiontfx.pipeline.config import load_config

    return load_config(
        TINY_CONFIG,
        [f"pipeline.root={root}", f"serving.serving_dir={root / 'serving'}", *overrides],
    )


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny DAG run twice on the same data: fresh, then (expected) fully cached."""
    from visiontfx.pipeline.local_runner import run_pipeline

    root = tmp_path_factory.mktemp("tiny_pipeline")
    config = tiny_config(root)
    first = run_pipeline(config)
    second = run_pipeline(config)
    return {"config": config, "root": root, "first": first, "second": second}
