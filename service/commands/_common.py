"""Shared bits of the service commands: settings from flags + environment, logging."""

from __future__ import annotations

import argparse
import logging


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of service settings (keys as in ServiceSettings)")
    parser.add_argument("--redis-url", help="Redis to use (env PORTRAITSR_REDIS_URL)")
    parser.add_argument("--manifest", dest="manifest_path", help="release manifest (env PORTRAITSR_MANIFEST_PATH)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")


def add_file_arguments(parser: argparse.ArgumentParser, input_metavar: str, default_scale: int) -> None:
    """What `upscale` and `restore` read and write: input files or folders, output folder, scale, format,
    and the model (in-process or with --url alike)."""
    from pathlib import Path

    parser.add_argument("inputs", nargs="+", type=Path, metavar=input_metavar, help="image files or folders (searched recursively)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder (created if missing)")
    parser.add_argument("--scale", type=int, choices=(4, 8), default=default_scale, help=f"upscaling factor (default: {default_scale})")
    parser.add_argument(
        "--format", choices=("png", "jpeg", "webp"), default=None, dest="output_format",
        help="output format (default: the input's, PNG for GIF and BMP)",
    )  # fmt: skip
    parser.add_argument(
        "--model", choices=("auto", "clean", "real"), default="auto",
        help="auto (default): the real-photo model for JPEGs and noisy images, as the API decides, for each file; "
             "clean: the model trained on clean bicubic-shrunk faces; real: the one trained on degraded faces",
    )  # fmt: skip


def add_in_process_model_arguments(parser: argparse.ArgumentParser, batch_help: str) -> None:
    """How `upscale` and `restore` run the shipped models in-process (docs/service.md, "Runtimes")."""
    from pathlib import Path

    parser.add_argument("--batch-size", type=int, default=8, help=f"{batch_help} (default: 8)")
    parser.add_argument("--manifest", type=Path, default=None, help="release manifest (default: model/release/manifest.json)")
    parser.add_argument("--runtime", choices=("auto", "onnxruntime", "openvino"), default="auto",
                        help="inference runtime (default: auto: ONNX Runtime on a CUDA GPU, else OpenVINO)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="default: auto: bf16 on CPUs with AVX-512 BF16 or AMX (OpenVINO), else fp32")
    parser.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto", help="device (default: auto)")
    parser.add_argument("--threads", type=int, default=0, help="inference threads; 0 = all cores (default)")


def open_models(args: argparse.Namespace, specs: list):
    """``(ModelChoice of --model, runtime request)``: a runner per spec, on the in-process model
    arguments' runtime; None (after saying why) when the runtime asked for cannot run here."""
    import sys

    from portraitsr.runtimes import RuntimeRequest, RuntimeUnavailable, default_cache_dir
    from service.core.inference import ModelRunner
    from service.files.model_choice import ModelChoice

    request = RuntimeRequest(args.runtime, args.precision, args.provider, args.threads, cache_dir=default_cache_dir())
    runners = {}
    for spec in specs:
        try:
            runners[spec.variant] = runner = ModelRunner(spec, request)
        except RuntimeUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            return None
        if runner.fallback_reason:
            print(f"note: {runner.fallback_reason}", file=sys.stderr)
    return ModelChoice(runners, args.model), request


def settings_from_args(args: argparse.Namespace, **overrides):
    """The settings, or exit with what is wrong in them (e.g. a runtime that is not installed)."""
    from pydantic import ValidationError

    from service.core.settings import load_settings

    try:
        return load_settings(args.config, redis_url=args.redis_url, manifest_path=args.manifest_path, **overrides)
    except ValidationError as error:
        raise SystemExit(f"error: invalid settings: {error}") from None


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")


EXIT_SOME_FAILED, EXIT_USAGE = 1, 2


def collect_or_report(args: argparse.Namespace):
    """``(inputs, report)`` of the image files named by ``args.inputs``, the skipped ones printed;
    None (after saying why) when there is nothing to do."""
    import sys

    from service.files.upscale import UpscaleReport, collect_inputs

    report = UpscaleReport()
    inputs = collect_inputs(args.inputs, report)
    for path, reason in report.failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not inputs:
        print("error: no image files found in the inputs", file=sys.stderr)
        return None
    return inputs, report


def release_specs(args: argparse.Namespace):
    """The manifest entries ``--model`` may run at ``args.scale`` (``--manifest`` or the shipped
    release): every variant for ``auto``, else the one named; None (after saying why) when the
    manifest is unreadable or has no such model."""
    import sys

    from portraitsr.manifest import ManifestError, load_manifest
    from service.core.input_quality import AUTO
    from service.core.settings import DEFAULT_MANIFEST

    manifest_path = args.manifest or DEFAULT_MANIFEST
    try:
        specs = load_manifest(manifest_path)
    except ManifestError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    at_scale = [spec for spec in specs if spec.scale == args.scale]
    if not at_scale:
        scales = sorted({spec.scale for spec in specs})
        print(f"error: {manifest_path} has no ×{args.scale} model (it has ×{', ×'.join(map(str, scales))})",
              file=sys.stderr)
        return None
    chosen = [spec for spec in at_scale if args.model in (AUTO, spec.variant)]
    if not chosen:
        has = ", ".join(sorted(spec.variant for spec in at_scale))
        print(f"error: {manifest_path} has no {args.model} model at ×{args.scale} (it has: {has})", file=sys.stderr)
        return None
    return chosen


def start_in_process(args: argparse.Namespace, positive: tuple[str, ...]):
    """What `upscale` and `restore` need before running the shipped models here: ``(inputs,
    report, models, runtime request, the longest input side --max-output-side allows)``; None
    (after saying why) on a flag out of range, no such model, no input files or a runtime that
    cannot run here. ``positive`` names the flags (as typed) that must be at least 1."""
    import sys

    if min(getattr(args, flag.lstrip("-").replace("-", "_")) for flag in positive) < 1 or args.threads < 0:
        print(f"error: {', '.join(positive[:-1])} and {positive[-1]} must be at least 1, --threads at least 0",
              file=sys.stderr)
        return None
    specs = release_specs(args)
    collected = None if specs is None else collect_or_report(args)
    if collected is None:
        return None
    opened = open_models(args, specs)
    if opened is None:
        return None
    return (*collected, *opened, max(1, args.max_output_side // args.scale))


def finish(report, wrote: str) -> int:
    """Print what was written and what failed; the exit status."""
    import sys

    outputs = len(report.written)
    print(f"wrote {outputs} file{'s' * (outputs != 1)} to {wrote}")
    if report.failed:
        print(f"{len(report.failed)} input(s) failed:", file=sys.stderr)
        for path, reason in report.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


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

    from service.files.remote import RemoteOptions, send_files

    if args.concurrency < 1 or args.max_retries < 0:
        print("error: --concurrency must be at least 1, --max-retries at least 0", file=sys.stderr)
        return EXIT_USAGE
    collected = collect_or_report(args)
    if collected is None:
        return EXIT_USAGE
    inputs, report = collected
    options = RemoteOptions(
        url=args.url, endpoint=endpoint, scale=args.scale, model=args.model, output_dir=args.output,
        output_format=args.output_format,
        key=args.key or os.environ.get("PORTRAITSR_API_KEY") or None, concurrency=args.concurrency,
        max_retries=args.max_retries,
    )
    send_files(inputs, options, report, on_result=lambda item, answer: print(f"{item.path}: {describe(answer)}"))
    return finish(report, f"{args.output} (×{args.scale}, {args.url}/{endpoint})")
