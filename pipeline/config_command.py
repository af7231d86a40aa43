"""``visiontfx config``: print the validated configuration (YAML), nothing else."""

from __future__ import annotations

import argparse

import yaml

from visiontfx.pipeline.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from visiontfx.pipeline.config import add_config_arguments

    add_config_arguments(parser)


def main(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(load_config(args.config, args.overrides).to_dict(), sort_keys=False), end="")
    return 0
