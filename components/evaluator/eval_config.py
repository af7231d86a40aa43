"""The Evaluator's TFMA configuration: what is measured and what earns a blessing."""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from visiontfx.components.serving.signatures import EXAMPLES_SIGNATURE
from visiontfx.contracts.features import LABEL_KEY

ACCURACY_METRIC = "sparse_categorical_accuracy"


def build_eval_config(min_accuracy: float, max_accuracy_drop: float) -> tfma.EvalConfig:
    """Accuracy must reach ``min_accuracy`` and not fall more than ``max_accuracy_drop``
    below the latest blessed model (the change threshold is skipped on the first run).

    ``tf_generic`` makes TFMA call the serialized-Example signature directly:
    auto-detection would treat the model as Keras, reload it several times and
    recompute the compiled loss (measured: 5× slower, 2× the memory).
    """
    accuracy = tfma.MetricConfig(
        class_name="SparseCategoricalAccuracy",
        threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -max_accuracy_drop},
            ),
        ),
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=EXAMPLES_SIGNATURE,
                label_key=LABEL_KEY,
                prediction_key="probabilities",
                model_type="tf_generic",
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    accuracy,
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                ]
            )
        ],
    )
