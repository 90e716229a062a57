"""`portraitsr upscale INPUT... -o OUT`: upscale image files with the shipped ONNX models, in-process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.commands._common import EXIT_USAGE

HELP = "upscale image files or folders with the shipped ONNX models (no server needed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders (searched recursively)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder (created if missing)")
    parser.add_argument("--scale", type=int, choices=(4, 8), default=8, help="upscaling factor (default: 8)")
    parser.add_argument(
        "--format", choices=("png", "jpeg", "webp"), default=None, dest="output_format",
        help="output format (default: the input's, PNG for GIF and BMP)",
    )
    parser.add_argument(
        "--compare", action="store_true",
        help="also write NAME_compare.png: input (nearest), bicubic and PortraitSR side by side",
    )
    parser.add_argument(
        "--compare-zoom", type=int, default=1, metavar="N",
        help="enlarge the comparison panels N times with nearest neighbour (default: 1)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="same-size images per model run (default: 8)")
    parser.add_argument("--manifest", type=Path, default=None, help="release manifest (default: model/release/manifest.json)")
    parser.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto", help="ONNX Runtime device (default: auto)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads; 0 = all cores (default)")
    parser.add_argument(
        "--max-output-side", type=int, default=512, metavar="PIXELS",
        help="refuse inputs whose output would have a longer side, as the API does (default: 512: 64-px inputs at x8)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from service.commands._common import add_remote_arguments

    add_remote_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.url:
        from service.commands._common import run_remote

        return run_remote(args, "upscale", lambda answer: f"batch of {answer.headers.get('x-batch-size', '?')}")
    from tqdm import tqdm

    from service.commands._common import collect_or_report, finish, release_spec
    from service.images import ImageLimits
    from service.inference import ModelRunner
    from service.upscale_files import UpscaleOptions, upscale_files

    if min(args.batch_size, args.max_output_side, args.compare_zoom) < 1 or args.threads < 0:
        print("error: --batch-size, --max-output-side and --compare-zoom must be at least 1, --threads at least 0", file=sys.stderr)
        return EXIT_USAGE
    spec = release_spec(args)
    collected = None if spec is None else collect_or_report(args)
    if collected is None:
        return EXIT_USAGE
    inputs, report = collected

    max_side = max(1, args.max_output_side // args.scale)
    runner = ModelRunner(spec, preference=args.provider, intra_op_threads=args.threads)
    if runner.fallback_reason:
        print(f"note: {runner.fallback_reason}", file=sys.stderr)
    options = UpscaleOptions(
        output_dir=args.output,
        output_format=args.output_format,
        batch_size=args.batch_size,
        compare=args.compare,
        compare_zoom=args.compare_zoom,
        limits=ImageLimits(max_bytes=64 * 1024 * 1024, max_pixels=max_side**2, max_side=max_side),
    )
    with tqdm(total=len(inputs), unit="image", disable=args.no_progress, file=sys.stderr) as progress:
        upscale_files(
            inputs, runner, options, report,
            on_message=lambda text: tqdm.write(text, file=sys.stderr),
            on_progress=progress.update,
        )

    status = finish(report, f"{args.output} (×{args.scale}, {runner.spec.name}, {runner.provider})")
    if report.ignored:
        print(f"ignored {len(report.ignored)} file(s) without an image extension in the input folders", file=sys.stderr)
    return status
