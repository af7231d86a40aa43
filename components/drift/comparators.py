"""What is compared between the new data and the previously trained data, and how far it may move.

TFDV drift comparators, as TFX's DistributionValidator takes them: the class
distribution and the image formats by L-infinity distance, image heights and
widths by Jensen-Shannon divergence (numeric features).
"""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import path_pb2, schema_pb2
from tfx.proto import distribution_validator_pb2

from visiontfx.contracts.features import FORMAT_KEY, HEIGHT_KEY, LABEL_NAME_KEY, WIDTH_KEY

# The split compared (statistics split, baseline split): training data is what drifts a model.
SPLIT_PAIR = ("train", "train")


def distribution_validator_config(
    label_threshold: float, format_threshold: float, size_threshold: float
) -> distribution_validator_pb2.DistributionValidatorConfig:
    def linf(feature: str, threshold: float) -> distribution_validator_pb2.FeatureComparator:
        return distribution_validator_pb2.FeatureComparator(
            path=path_pb2.Path(step=[feature]),
            distribution_comparator=schema_pb2.FeatureComparator(
                infinity_norm=schema_pb2.InfinityNorm(threshold=threshold)
            ),
        )

    def jsd(feature: str, threshold: float) -> distribution_validator_pb2.FeatureComparator:
        return distribution_validator_pb2.FeatureComparator(
            path=path_pb2.Path(step=[feature]),
            distribution_comparator=schema_pb2.FeatureComparator(
                jensen_shannon_divergence=schema_pb2.JensenShannonDivergence(threshold=threshold)
            ),
        )

    config = distribution_validator_pb2.DistributionValidatorConfig()
    config.default_slice_config.feature.extend(
        [
            linf(LABEL_NAME_KEY, label_threshold),
            linf(FORMAT_KEY, format_threshold),
            jsd(HEIGHT_KEY, size_threshold),
            jsd(WIDTH_KEY, size_threshold),
        ]
    )
    return config
