"""`portraitsr serve`: everything on one machine — private Redis, workers, API on 127.0.0.1:8000."""

from __future__ import annotations

import argparse

from service.commands._common import add_settings_arguments, configure_logging, settings_from_args

HELP = "serve on one machine: a private redis-server (unless --redis-url), worker(s) and the API"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--host", dest="api_host", help="API bind address (default 127.0.0.1, env PORTRAITSR_API_HOST)")
    parser.add_argument("--port", dest="api_port", type=int, help="API port (default 8000, env PORTRAITSR_API_PORT)")
    parser.add_argument("--workers", type=int, help="worker processes (default 1, env PORTRAITSR_WORKERS)")


def run(args: argparse.Namespace) -> int:
    from service.supervisor import serve

    configure_logging(args.log_level)
    settings = settings_from_args(args, api_host=args.api_host, api_port=args.api_port, workers=args.workers)
    return serve(settings, args.log_level)
