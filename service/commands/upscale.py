"""`portraitsr upscale INPUT... -o OUT`: upscale image files with the shipped ONNX models, in-process."""

from __future__ import annotations

import argparse
import sys

from service.commands._common import (
    EXIT_USAGE,
    add_file_arguments,
    add_in_process_model_arguments,
    add_remote_arguments,
)

HELP = "upscale image files or folders with the shipped ONNX models (no server needed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_arguments(parser, input_metavar="INPUT", default_scale=8)
    parser.add_argument(
        "--compare", action="store_true",
        help="also write NAME_compare.png: input (nearest), bicubic and PortraitSR side by side",
    )
    parser.add_argument(
        "--compare-zoom", type=int, default=1, metavar="N",
        help="enlarge the comparison panels N times with nearest neighbour (default: 1)",
    )
    add_in_process_model_arguments(parser, batch_help="same-size images per model run")
    parser.add_argument(
        "--max-output-side", type=int, default=512, metavar="PIXELS",
        help="refuse inputs whose output would have a longer side, as the API does (default: 512: 64-px inputs at x8)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    add_remote_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.url:
        from service.commands._common import run_remote

        return run_remote(args, "upscale", lambda answer: f"{answer.headers.get('x-model', '?')}, "
                                                          f"batch of {answer.headers.get('x-batch-size', '?')}")
    from tqdm import tqdm

    from service.commands._common import finish, start_in_process
    from service.core.images import ImageLimits
    from service.files.upscale import UpscaleOptions, upscale_files

    started = start_in_process(args, ("--batch-size", "--max-output-side", "--compare-zoom"))
    if started is None:
        return EXIT_USAGE
    inputs, report, models, _, max_side = started
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
            inputs, models, options, report,
            on_message=lambda text: tqdm.write(text, file=sys.stderr),
            on_progress=progress.update,
        )

    status = finish(report, f"{args.output} (×{args.scale}, {models.names}, {models.runtime})")
    if report.ignored:
        print(f"ignored {len(report.ignored)} file(s) without an image extension in the input folders", file=sys.stderr)
    return status
