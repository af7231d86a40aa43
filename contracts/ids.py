"""Node ids of the DAG that code outside pipeline/dag.py must name (no TensorFlow import)."""

from __future__ import annotations

# The Evaluator's baseline resolver: a resolver node, which never "runs" or
# caches like a component does.
BASELINE_RESOLVER_ID = "latest_blessed_model_resolver"
# The drift check's baseline statistics (pipeline/dag.py:make_drift_nodes).
DRIFT_BASELINE_RESOLVER_ID = "previous_trained_statistics_resolver"
RESOLVER_IDS = (BASELINE_RESOLVER_ID, DRIFT_BASELINE_RESOLVER_ID)
