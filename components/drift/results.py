"""The DistributionValidator's anomalies read back: each measured drift, its threshold, too far or not."""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2

from visiontfx.components.drift.comparators import SPLIT_PAIR
from visiontfx.contracts.features import LABEL_NAME_KEY

ANOMALIES_FILE = "SchemaDiff.pb"  # TFX's file name for anomalies


def split_pair_dir() -> str:
    return "SplitPair-" + "_".join(SPLIT_PAIR)


def read_drift(anomalies_uri: str) -> dict[str, Any]:
    """``{"compared": bool, "measurements": [...], "exceeded": [...]}`` of a DistributionValidator run.

    ``compared`` is False when there was no baseline (first span: TFX rubber-stamps).
    """
    path = os.path.join(anomalies_uri, split_pair_dir(), ANOMALIES_FILE)
    if not tf.io.gfile.exists(path):
        return {"compared": False, "measurements": [], "exceeded": []}
    anomalies = anomalies_pb2.Anomalies()
    with tf.io.gfile.GFile(path, "rb") as handle:
        anomalies.ParseFromString(handle.read())
    measure_names = anomalies_pb2.DriftSkewInfo.Measurement.Type.Name
    measurements = [
        {
            "feature": "/".join(info.path.step),
            "measure": measure_names(m.type).lower(),
            "value": float(m.value),
            "threshold": float(m.threshold),
        }
        for info in anomalies.drift_skew_info
        for m in info.drift_measurements
    ]
    for m in measurements:
        m["exceeded"] = m["value"] > m["threshold"]
    exceeded = [m for m in measurements if m["exceeded"]]
    # Comparisons TFDV could not make (a feature missing on one side) are anomalies too.
    measured = {m["feature"] for m in measurements}
    for name, info in sorted(anomalies.anomaly_info.items()):
        if name not in measured:
            exceeded.append(
                {
                    "feature": name,
                    "measure": "missing",
                    "value": None,
                    "threshold": None,
                    "exceeded": True,
                    "description": info.description,
                }
            )
    return {"compared": True, "measurements": measurements, "exceeded": exceeded}


def describe(drift: dict[str, Any]) -> str:
    """One line per drift beyond its threshold, naming the feature, measure, value and threshold."""
    return "; ".join(
        f"{m['feature']}: {m['measure']} {m['value']:.3f} > threshold {m['threshold']:.3f}"
        if m["value"] is not None
        else f"{m['feature']}: {m.get('description', 'not comparable')}"
        for m in drift["exceeded"]
    )


def label_distribution(statistics_uri: str, split: str = SPLIT_PAIR[0]) -> dict[str, float]:
    """Class name → fraction of the split's images, from StatisticsGen's output (for the report's plot)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    path = os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb")
    if not tf.io.gfile.exists(path):
        return {}
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with tf.io.gfile.GFile(path, "rb") as handle:
        stats.ParseFromString(handle.read())
    for dataset in stats.datasets:
        for feature in dataset.features:
            if feature.path.step == [LABEL_NAME_KEY] or feature.name == LABEL_NAME_KEY:
                buckets = feature.string_stats.rank_histogram.buckets or []
                counts = {b.label: b.sample_count for b in buckets}
                if not counts:
                    counts = {v.value: v.frequency for v in feature.string_stats.top_values}
                total = sum(counts.values())
                return {name: count / total for name, count in sorted(counts.items())} if total else {}
    return {}
