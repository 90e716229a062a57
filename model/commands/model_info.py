"""`portraitsr model-info CONFIG`: parameters and MACs of a model configuration, as JSON."""

from __future__ import annotations

import argparse
import json

HELP = "Print one JSON object with the parameter count and MACs of a model configuration."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a named configuration (paper-x8, small-x4, ...) or a YAML file")


def run(args: argparse.Namespace) -> int:
    from model.config import load_model_config
    from model.info import model_info

    print(json.dumps(model_info(load_model_config(args.config)), indent=2))
    return 0
