"""``visiontfx predict`` without a server: batch CSV, TFLite and Grad-CAM, on the pushed model.

visiontfx predict photos/ --out predictions.csv              # a folder (or TFRecords) → CSV
visiontfx predict shoe.png --tflite [--tflite-variant int8]   # the pushed version's TFLite model
visiontfx predict shoe.png --explain [--out shoe_gradcam.png] # Grad-CAM overlay PNG

The model is the newest version the Pusher wrote under
``serving.serving_dir/serving.model_name`` (from ``--config``) unless
``--model-dir`` names one.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from visiontfx.contracts import edge
from visiontfx.tools.prediction_output import print_results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    local = parser.add_argument_group("local prediction (no server)")
    local.add_argument(
        "--out",
        help="batch mode: label the folder / TFRecords given as IMAGE and write this CSV (bad files go to "
        "<out>.errors.csv); with --explain: the overlay PNG (one image) or a folder",
    )
    local.add_argument("--tflite", action="store_true", help="run the pushed version's TFLite model")
    local.add_argument(
        "--tflite-variant", choices=edge.VARIANTS, default=edge.FLOAT16, help="which TFLite model"
    )
    local.add_argument("--tflite-file", help="a .tflite file to run instead (labels.txt beside it)")
    local.add_argument("--explain", action="store_true", help="write a Grad-CAM overlay PNG per image")
    local.add_argument("--model-dir", help="a pushed version (default: the newest under serving.serving_dir)")
    local.add_argument(
        "--serving-dir", help="where the Pusher wrote (default: serving.serving_dir of --config)"
    )
    local.add_argument("--top-k", type=int, help="classes per image (default: serving.top_k of --config)")


def is_local(args: argparse.Namespace) -> bool:
    return bool(args.out or args.tflite or args.tflite_file or args.explain)


def main(args: argparse.Namespace) -> int:
    from visiontfx.pipeline.config import load_config
    from visiontfx.tools import batch_predict, local_models, pushed_model

    config = load_config(args.config)
    top_k = args.top_k or config.serving.top_k
    try:
        saved_model = (
            None
            if args.tflite_file
            else pushed_model.resolve_saved_model(
                args.model_dir,
                args.serving_dir or config.serving.serving_dir,
                args.model or config.serving.model_name,
            )
        )
        if args.explain:
            return explain(args, saved_model or "", top_k)
        if args.tflite or args.tflite_file:
            path = pushed_model.resolve_tflite(args.tflite_file, saved_model, args.tflite_variant)
            predictor: Any = local_models.TFLitePredictor(path)
            if not predictor.recommended:
                print(
                    f"visiontfx predict: warning: {path} is NOT recommended ({predictor.parity_note})",
                    file=sys.stderr,
                )
        else:
            predictor = local_models.SavedModelPredictor(saved_model or "")
    except FileNotFoundError as error:
        print(f"visiontfx predict: {error}", file=sys.stderr)
        return 2
    if args.out:
        if len(args.images) != 1:
            print("visiontfx predict: --out takes one folder, TFRecord file or glob", file=sys.stderr)
            return 2
        from tqdm import tqdm

        try:
            items, total = batch_predict.read_items(args.images[0])
        except FileNotFoundError as error:
            print(f"visiontfx predict: {error}", file=sys.stderr)
            return 2
        result = batch_predict.run(items, predictor, args.out, top_k, total, progress=tqdm)
        batch_predict.report(result)
        return 0
    return predict_files(args, predictor, top_k)


def predict_files(args: argparse.Namespace, predictor: Any, top_k: int) -> int:
    """A few images, printed like the server answers (one bad file is reported, the others printed)."""
    from visiontfx.tools import batch_predict

    results = []
    failed = 0
    for name in args.images:
        item = batch_predict.read_image(name, name)
        probabilities = None if item.error else batch_predict.predict_batch(predictor, [item])[0]
        if probabilities is None:
            print(f"visiontfx predict: {name}: {item.error}", file=sys.stderr)
            failed += 1
            continue
        ranked = batch_predict.top_k_pairs(probabilities, predictor.class_names, top_k)
        results.append((name, ranked))
    print_results(results, args.json, f"model {predictor.path} (local)", model=predictor.path)
    return 1 if failed else 0


def explain(args: argparse.Namespace, saved_model: str, top_k: int) -> int:
    from visiontfx.tools import batch_predict
    from visiontfx.tools.explain import GradCam, overlay_png
    from visiontfx.tools.local_models import saved_model_labels

    explainer = GradCam(saved_model)
    class_names = saved_model_labels(saved_model)
    failed = 0
    for name in args.images:
        item = batch_predict.read_image(name, name)
        if not item.error:
            try:
                heatmaps, probabilities = explainer.heatmaps([item.data])
            except Exception as error:  # looks like an image but does not decode
                item.error = f"cannot be decoded: {batch_predict.first_line(error)}"
        if item.error:
            print(f"visiontfx predict: {name}: {item.error}", file=sys.stderr)
            failed += 1
            continue
        target = overlay_target(args.out, name, len(args.images))
        with open(target, "wb") as handle:
            handle.write(overlay_png(item.data, heatmaps[0]))
        ranked = batch_predict.top_k_pairs(probabilities[0], class_names, top_k)
        best, score = ranked[0]
        print(f"{name}: {best} ({score:.1%}); Grad-CAM ({explainer.layer_name}) overlay → {target}")
    return 1 if failed else 0


def overlay_target(out: str | None, image: str, count: int) -> str:
    """--out as the PNG for one image, as a folder for several; default <image stem>_gradcam.png here."""
    stem = os.path.splitext(os.path.basename(image))[0] + "_gradcam.png"
    if out and (count > 1 or os.path.isdir(out)):
        os.makedirs(out, exist_ok=True)
        return os.path.join(out, stem)
    return out or stem
