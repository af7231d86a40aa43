"""``visiontfx lr-find``: the learning-rate range test on the pipeline's own data and model.

Trains the model the Trainer would build (its first phase: the head on a
frozen pretrained backbone, or the whole network from scratch) for a few
dozen steps while the learning rate grows exponentially, and records the loss
at each rate. The loss first falls faster and faster, then flattens and
finally blows up; a good starting rate is where it falls fastest. The data
are the latest run's Examples and Transform graph, found in ML Metadata, so
``visiontfx run`` must have run at least up to Transform (``--prepare`` runs
the pipeline that far).

Writes ``lr_finder.json`` (rates, losses, smoothed losses, suggested_rate) and
``lr_finder.png``. Imports nothing heavy at module level: ``visiontfx --help``
stays instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import types
from typing import Any, Sequence

JSON_FILE = "lr_finder.json"
PLOT_FILE = "lr_finder.png"
DEFAULT_MIN_RATE = 1e-6
DEFAULT_MAX_RATE = 1.0
DEFAULT_STEPS = 100
SMOOTHING = 0.9  # exponential moving average of the loss (with bias correction)
DIVERGENCE = 4.0  # stop once the smoothed loss exceeds 4× its best


@dataclasses.dataclass(frozen=True)
class RangeTestResult:
    rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested_rate: float
    min_loss_rate: float
    stopped_early: bool

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def exponential_rates(min_rate: float, max_rate: float, steps: int) -> list[float]:
    """``steps`` rates from ``min_rate`` to ``max_rate``, equally spaced in log scale."""
    if not 0 < min_rate < max_rate:
        raise ValueError(f"Need 0 < min rate < max rate, got {min_rate:g} and {max_rate:g}")
    if steps < 2:
        raise ValueError(f"Need at least 2 steps, got {steps}")
    ratio = (max_rate / min_rate) ** (1.0 / (steps - 1))
    return [min_rate * ratio**index for index in range(steps)]


def smooth(losses: Sequence[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average (one noisy batch must not decide)."""
    average, smoothed = 0.0, []
    for index, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta**index))
    return smoothed


def suggest_rate(rates: Sequence[float], smoothed: Sequence[float]) -> float:
    """The rate where the smoothed loss falls fastest (per log-rate), before its minimum.

    Falls back to a tenth of the minimum's rate (the usual rule of thumb) when
    the curve is too short to have a slope.
    """
    import numpy as np

    best = int(np.argmin(smoothed))
    if best < 3:
        return max(rates[0], rates[best] / 10.0)
    slopes = np.gradient(np.asarray(smoothed[: best + 1]), np.log(np.asarray(rates[: best + 1])))
    return float(rates[int(np.argmin(slopes))])


def range_test(
    model: Any,
    dataset: Any,
    loss: Any,
    min_rate: float = DEFAULT_MIN_RATE,
    max_rate: float = DEFAULT_MAX_RATE,
    steps: int = DEFAULT_STEPS,
    policy: str = "float32",
    strategy: Any = None,
) -> RangeTestResult:
    """Sweeps the learning rate over ``steps`` training batches; the model's weights are restored after."""
    import tensorflow as tf
    import tf_keras

    from visiontfx.components.trainer import hardware

    strategy = strategy or tf.distribute.get_strategy()
    rates = exponential_rates(min_rate, max_rate, steps)
    initial_weights = model.get_weights()
    with strategy.scope():
        optimizer = hardware.scaled_optimizer(tf_keras.optimizers.Adam(min_rate), policy)
        model.compile(optimizer=optimizer, loss=loss, jit_compile=False)
    seen_rates: list[float] = []
    losses: list[float] = []
    stopped_early = False
    try:
        batches = iter(dataset)
        for rate in rates:
            tf_keras.backend.set_value(model.optimizer.learning_rate, rate)
            images, labels = next(batches)
            value = float(model.train_on_batch(images, labels))
            seen_rates.append(rate)
            losses.append(value if math.isfinite(value) else float("inf"))
            smoothed = smooth(losses)
            if not math.isfinite(value) or smoothed[-1] > DIVERGENCE * min(smoothed):
                stopped_early = True
                break
    finally:
        model.set_weights(initial_weights)
    smoothed = smooth(losses)
    finite = [index for index, value in enumerate(smoothed) if math.isfinite(value)]
    kept_rates = [seen_rates[index] for index in finite]
    kept_smoothed = [smoothed[index] for index in finite]
    best = min(range(len(kept_smoothed)), key=kept_smoothed.__getitem__)
    return RangeTestResult(
        rates=seen_rates,
        losses=losses,
        smoothed=smoothed,
        suggested_rate=suggest_rate(kept_rates, kept_smoothed),
        min_loss_rate=kept_rates[best],
        stopped_early=stopped_early,
    )


def save_plot(result: RangeTestResult, path: str, title: str = "") -> str:
    """Loss against learning rate (log scale), the suggested rate marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=100)
    finite = [(r, loss) for r, loss in zip(result.rates, result.losses, strict=True) if math.isfinite(loss)]
    axes.plot(
        [r for r, _ in finite], [loss for _, loss in finite], color="0.75", lw=1, label="loss per batch"
    )
    axes.plot(result.rates, result.smoothed, color="C0", lw=2, label="smoothed loss")
    axes.axvline(result.suggested_rate, color="C3", ls="--", label=f"suggested {result.suggested_rate:.2g}")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    upper = max(result.smoothed[0] * 1.5, min(result.smoothed) * 2) if result.smoothed else 1.0
    axes.set_ylim(bottom=0, top=upper)
    axes.set_title(title or "Learning-rate range test")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


# --------------------------------------------------------------------------
# The command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from visiontfx.pipeline.config import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--run", default="latest", help="pipeline run id whose data to use (default: latest)")
    parser.add_argument("--output", help="output folder (default: <pipeline.root>/lr_finder)")
    parser.add_argument("--min-lr", type=float, default=DEFAULT_MIN_RATE, help="first learning rate")
    parser.add_argument("--max-lr", type=float, default=DEFAULT_MAX_RATE, help="last learning rate")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training batches in the sweep")
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="first run the pipeline up to Transform (cached when already done); no full run needed",
    )


def run_until_transform(config: Any) -> tuple[str, str]:
    """Runs the DAG only up to Transform (a TFX partial run, cached like a full run) and
    returns its (Examples URI, Transform graph URI): what lr-find, benchmarks and tests need
    before, or without, a whole training run."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # not via tfx.v1 (see dag.py)
    from tfx.orchestration.pipeline import RunOptions

    from visiontfx.pipeline.local_runner import local_pipeline

    _, pipeline = local_pipeline(config)
    LocalDagRunner().run(pipeline, run_options=RunOptions(to_nodes=["Transform"]))
    return pipeline_inputs(config)


def pipeline_inputs(config: Any, run_id: str = "latest") -> tuple[str, str]:
    """(Examples URI, Transform graph URI) of a run, read from ML Metadata."""
    from visiontfx.pipeline import metadata
    from visiontfx.pipeline.local_runner import local_locations

    locations = local_locations(config)
    if not os.path.isfile(locations.metadata_path):
        raise FileNotFoundError(
            f"No ML Metadata at {locations.metadata_path}: run `visiontfx run` with this config first "
            "(or add --prepare to run it up to Transform only)."
        )
    run = metadata.load_run(locations.metadata_path, config.pipeline.name, run_id)
    examples = next(
        (
            component.outputs["examples"][0].uri
            for node, component in run.components.items()
            if node.endswith("ExampleGen") and component.outputs.get("examples")
        ),
        None,
    )
    transform_graph = run.uri("Transform", "transform_graph")
    if not examples or not transform_graph:
        raise FileNotFoundError(
            f"Run {run.run_id} has no Examples or no Transform graph: "
            "it must have run at least up to Transform."
        )
    return examples, transform_graph


def find_learning_rate(
    config: Any,
    run_id: str = "latest",
    min_rate: float = DEFAULT_MIN_RATE,
    max_rate: float = DEFAULT_MAX_RATE,
    steps: int = DEFAULT_STEPS,
) -> tuple[RangeTestResult, dict[str, Any]]:
    """The range test on a run's data with the model of the Trainer's first phase."""
    from visiontfx.components.trainer import data, hardware
    from visiontfx.components.trainer.autograph import skip_tf_keras_in_autograph
    from visiontfx.components.trainer.losses import make_loss
    from visiontfx.components.trainer.run import build_model, configure_trainable, plan_phases, prepare
    from visiontfx.components.trainer.settings import TrainerSettings
    from visiontfx.pipeline.dag import trainer_custom_config
    from visiontfx.pipeline.dag_inputs import tfrecord_class_names
    from visiontfx.pipeline.local_runner import local_locations

    skip_tf_keras_in_autograph()
    examples, transform_graph = pipeline_inputs(config, run_id)
    class_names = tfrecord_class_names(config, config.data.path)
    settings = TrainerSettings.from_custom_config(
        trainer_custom_config(config, local_locations(config).pipeline_root, class_names)
    )
    fn_args = types.SimpleNamespace(
        train_files=[data.split_pattern(examples, "train")],
        eval_files=[data.split_pattern(examples, "eval")],
        transform_output=transform_graph,
    )
    with hardware.restoring_precision_policy():
        setup = prepare(fn_args, settings)
        model, backbone = build_model(setup)
        phase = plan_phases(settings)[0]
        with setup.strategy.scope():
            configure_trainable(backbone, phase)
        print(setup.describe())
        print(f"[lr-find] sweeping {min_rate:g} → {max_rate:g} in {steps} steps ({phase.name} phase)")
        result = range_test(
            model,
            setup.train_dataset,
            make_loss(len(setup.class_names), settings.training),
            min_rate,
            max_rate,
            steps,
            setup.policy,
            setup.strategy,
        )
    context = {
        "phase": phase.name,
        "configured_rate": phase.learning_rate,
        "backbone": settings.model.backbone,
        "image_size": settings.image_size,
        "global_batch": setup.global_batch,
        "examples": examples,
        "transform_graph": transform_graph,
    }
    return result, context


def main(args: argparse.Namespace) -> int:
    from visiontfx.pipeline.config import load_config

    config = load_config(args.config, args.overrides)
    output = os.path.abspath(args.output or os.path.join(config.pipeline.root, "lr_finder"))
    try:
        if args.prepare:
            run_until_transform(config)
        result, context = find_learning_rate(config, args.run, args.min_lr, args.max_lr, args.steps)
    except (FileNotFoundError, LookupError) as error:
        print(f"visiontfx lr-find: {error}")
        return 2
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, JSON_FILE), "w") as handle:
        json.dump({**result.as_dict(), **context}, handle, indent=2)
    title = f"{context['backbone']} @ {context['image_size']}px, {context['phase']} phase"
    plot = save_plot(result, os.path.join(output, PLOT_FILE), title)
    print(
        f"[lr-find] suggested learning rate {result.suggested_rate:.2g} (lowest loss at "
        f"{result.min_loss_rate:.2g}; configured {context['configured_rate']:g})\n"
        f"[lr-find] try: training.learning_rate={result.suggested_rate:.2g}\n"
        f"[lr-find] wrote {os.path.join(output, JSON_FILE)} and {plot}"
    )
    return 0
