"""`portraitsr api`: the HTTP API only (workers and Redis run elsewhere)."""

from __future__ import annotations

import argparse
import logging

from service.commands._common import add_settings_arguments, configure_logging, settings_from_args

HELP = "run the HTTP API (POST /upscale, /readyz, /metrics) in front of a Redis job stream"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--host", dest="api_host", help="bind address (default 127.0.0.1, env PORTRAITSR_API_HOST)")
    parser.add_argument("--port", dest="api_port", type=int, help="port (default 8000, env PORTRAITSR_API_PORT)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.core.memory import API_ARENA_MAX, API_MMAP_THRESHOLD, tune_api_malloc
    from service.core.settings import effective_api_drain_s
    from service.http.app import create_app
    from service.http.limits import DrainingServer, HttpLimits, hardened_protocol

    tuned = tune_api_malloc()  # before the first photo: bursts must not leave the API at their high-water mark
    configure_logging(args.log_level)
    logging.getLogger("portraitsr.api").info(
        "malloc: %s", f"mmap threshold {API_MMAP_THRESHOLD >> 10} KiB, {API_ARENA_MAX} arenas" if tuned
        else "left as it is (GLIBC_TUNABLES sets the threshold, or the C library is not glibc)"
    )
    settings = settings_from_args(args, api_host=args.api_host, api_port=args.api_port)
    limits = HttpLimits(
        settings.http_header_timeout_s, settings.http_body_timeout_s, settings.http_max_header_bytes, settings.http_max_connections
    )
    app, drain_s = create_app(settings), effective_api_drain_s(settings)
    config = uvicorn.Config(
        app, host=settings.api_host, port=settings.api_port, http=hardened_protocol(limits),
        h11_max_incomplete_event_size=settings.http_max_header_bytes + 1024,  # ours answers 431 first
        log_level=args.log_level.lower(), access_log=False, timeout_graceful_shutdown=drain_s + 1,
    )
    DrainingServer(config, app.state.broker.release_waiting, drain_s).run()
    return 0
