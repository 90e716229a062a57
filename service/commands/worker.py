"""`portraitsr worker`: one batching ONNX Runtime worker on the Redis job stream."""

from __future__ import annotations

import argparse

from service.commands._common import add_settings_arguments, configure_logging, settings_from_args

HELP = "run a worker: batched ONNX Runtime inference on jobs from the Redis stream"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--metrics-port", dest="worker_metrics_port", type=int,
                        help="port of /livez, /readyz, /metrics (default 9100, env PORTRAITSR_WORKER_METRICS_PORT)")


def run(args: argparse.Namespace) -> int:
    from service.queue.worker import run_worker

    configure_logging(args.log_level)
    return run_worker(settings_from_args(args, worker_metrics_port=args.worker_metrics_port))
