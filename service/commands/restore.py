"""`portraitsr restore PHOTO... -o OUT`: restore the faces of whole photos in-process (no server needed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.commands._common import EXIT_USAGE

HELP = "restore the faces in whole photos (find, align, restore, paste back), in-process or with --url on a service"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from service.commands._common import add_remote_arguments

    parser.add_argument("inputs", nargs="+", type=Path, metavar="PHOTO", help="image files or folders (searched recursively)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder (created if missing)")
    parser.add_argument("--scale", type=int, choices=(4, 8), default=4, help="upscaling factor (default: 4)")
    parser.add_argument(
        "--format", choices=("png", "jpeg", "webp"), default=None, dest="output_format",
        help="output format (default: the input's, PNG for GIF and BMP)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="faces per model run (default: 8)")
    parser.add_argument("--manifest", type=Path, default=None, help="release manifest (default: model/release/manifest.json)")
    parser.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto", help="ONNX Runtime device (default: auto)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads; 0 = all cores (default)")
    parser.add_argument(
        "--max-output-side", type=int, default=4096, metavar="PIXELS",
        help="refuse photos whose output would have a longer side, as the API does (default: 4096)",
    )
    parser.add_argument("--min-inter-ocular", type=float, default=2.0, metavar="PIXELS",
                        help="faces with eyes closer than this stay as the upscaled photo (default: 2)")
    parser.add_argument("--min-score", type=float, default=0.9, metavar="SCORE",
                        help="detections scoring lower stay as the upscaled photo (default: 0.9)")
    add_remote_arguments(parser)


def describe_answer(answer) -> str:
    return f"{answer.headers.get('x-faces', '?')} of {answer.headers.get('x-faces-detected', '?')} faces restored"


def run(args: argparse.Namespace) -> int:
    if args.url:
        from service.commands._common import run_remote

        return run_remote(args, "restore", describe_answer)
    from service.commands._common import collect_or_report, finish, release_spec
    from service.face_detector import FaceDetector
    from service.images import ImageLimits
    from service.inference import ModelRunner
    from service.photo_restore import RestorePolicy
    from service.restore_files import RestoreOptions, describe, restore_files

    if min(args.batch_size, args.max_output_side) < 1 or args.threads < 0:
        print("error: --batch-size and --max-output-side must be at least 1, --threads at least 0", file=sys.stderr)
        return EXIT_USAGE
    spec = release_spec(args)
    collected = None if spec is None else collect_or_report(args)
    if collected is None:
        return EXIT_USAGE
    inputs, report = collected

    max_side = max(1, args.max_output_side // args.scale)
    runner = ModelRunner(spec, preference=args.provider, intra_op_threads=args.threads)
    options = RestoreOptions(
        output_dir=args.output, output_format=args.output_format, batch_size=args.batch_size,
        limits=ImageLimits(max_bytes=64 * 1024 * 1024, max_pixels=max_side**2, max_side=max_side,
                           too_large_hint=" (see --max-output-side)"),
        policy=RestorePolicy(min_inter_ocular=args.min_inter_ocular, min_score=args.min_score),
    )
    restore_files(inputs, runner, FaceDetector(), options, report,
                  on_result=lambda item, plans: print(f"{item.path}: {describe(plans)}"))
    return finish(report, f"{args.output} (×{args.scale}, {runner.spec.name}, {runner.provider})")
