"""``visiontfx predict IMAGE...``: top-k classes from a running TF Serving (or the local server).

visiontfx predict shoe.png bag.jpg --url http://127.0.0.1:8501 --model fashion
visiontfx predict shoe.png --grpc 127.0.0.1:8500 --label canary --json
visiontfx predict photos/ --out predictions.csv | --tflite | --explain   (tools/predict_local.py)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visiontfx.tools.prediction_output import print_results
from visiontfx.tools.serving.client import ServingClient, ServingClientError, TopK

BATCH = 32  # images per request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help="JPEG, PNG, GIF or BMP files (--out: a folder, TFRecords)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="REST endpoint (default: http://127.0.0.1:8501)")
    where.add_argument("--grpc", metavar="HOST:PORT", help="gRPC endpoint, e.g. 127.0.0.1:8500")
    parser.add_argument("--model", help="model name (default: serving.model_name of --config)")
    parser.add_argument("--config", help="YAML config file giving the default model name")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="a specific model version")
    which.add_argument("--label", help="a version label, e.g. stable or canary")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    from visiontfx.tools import predict_local

    predict_local.add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from visiontfx.tools import predict_local

    if predict_local.is_local(args):  # --out / --tflite / --explain: the pushed model in this process
        return predict_local.main(args)
    model = args.model
    if not model:
        from visiontfx.pipeline.config import load_config

        model = load_config(args.config).serving.model_name
    paths = [Path(name) for name in args.images]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        print(f"visiontfx predict: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    url = None if args.grpc else (args.url or "http://127.0.0.1:8501")
    client = ServingClient(
        url=url,
        grpc_target=args.grpc,
        model=model,
        version=args.version,
        label=args.label,
        timeout=args.timeout,
    )
    results: list[tuple[str, TopK]] = []
    try:
        with client:
            for start in range(0, len(paths), BATCH):
                chunk = paths[start : start + BATCH]
                answers = client.predict([path.read_bytes() for path in chunk])
                results.extend(zip((str(path) for path in chunk), answers, strict=True))
    except ServingClientError as error:
        problem = (
            "cannot be reached" if error.code == "UNAVAILABLE" else f"refused the request ({error.code})"
        )
        print(f"visiontfx predict: {client.endpoint} {problem}: {error.message}", file=sys.stderr)
        return 1
    except OSError as error:  # connection refused, DNS, timeout
        print(f"visiontfx predict: cannot reach {client.endpoint}: {error}", file=sys.stderr)
        return 1
    target = (
        f"version {args.version}"
        if args.version is not None
        else f"label {args.label}"
        if args.label
        else "latest"
    )
    print_results(
        results,
        args.json,
        f"model {model} ({target}) at {client.endpoint}",
        endpoint=client.endpoint,
        model=model,
        version=args.version,
        label=args.label,
    )
    return 0
