"""Shared bits of the service commands: settings from flags + environment, logging."""

from __future__ import annotations

import argparse
import logging


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of service settings (keys as in ServiceSettings)")
    parser.add_argument("--redis-url", help="Redis to use (env PORTRAITSR_REDIS_URL)")
    parser.add_argument("--manifest", dest="manifest_path", help="release manifest (env PORTRAITSR_MANIFEST_PATH)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")


def settings_from_args(args: argparse.Namespace, **overrides):
    from service.settings import load_settings

    return load_settings(
        args.config, redis_url=args.redis_url, manifest_path=args.manifest_path, **overrides
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
