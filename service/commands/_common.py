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


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """``--url`` and friends: send the files to a running service instead of running the models here."""
    remote = parser.add_argument_group("sending to a running service")
    remote.add_argument("--url", default=None, help="the service's base URL (e.g. http://127.0.0.1:8000); no local models")
    remote.add_argument("--key", default=None,
                        help="API key, sent as Authorization: Bearer (default: env PORTRAITSR_API_KEY)")
    remote.add_argument("--concurrency", type=int, default=4, help="requests in flight at most (default: 4)")
    remote.add_argument("--max-retries", type=int, default=5, help="retries of a 429 after its Retry-After (default: 5)")


def run_remote(args: argparse.Namespace, endpoint: str, describe) -> int:
    """Send ``args.inputs`` to ``args.url``/``endpoint``; exit status 0, 1 (some failed) or 2 (usage)."""
    import os
    import sys

    from service.remote_files import RemoteOptions, send_files
    from service.upscale_files import UpscaleReport, collect_inputs

    if args.concurrency < 1 or args.max_retries < 0:
        print("error: --concurrency must be at least 1, --max-retries at least 0", file=sys.stderr)
        return 2
    report = UpscaleReport()
    inputs = collect_inputs(args.inputs, report)
    for path, reason in report.failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not inputs:
        print("error: no image files found in the inputs", file=sys.stderr)
        return 2
    options = RemoteOptions(
        url=args.url, endpoint=endpoint, scale=args.scale, output_dir=args.output, output_format=args.output_format,
        key=args.key or os.environ.get("PORTRAITSR_API_KEY") or None, concurrency=args.concurrency,
        max_retries=args.max_retries,
    )
    send_files(inputs, options, report, on_result=lambda item, answer: print(f"{item.path}: {describe(answer)}"))
    outputs = len(report.written)
    print(f"wrote {outputs} file{'s' * (outputs != 1)} to {args.output} (×{args.scale}, {args.url}/{endpoint})")
    if report.failed:
        print(f"{len(report.failed)} input(s) failed:", file=sys.stderr)
        for path, reason in report.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0
