"""`portraitsr restore PHOTO... -o OUT`: restore the faces of whole photos in-process (no server needed)."""

from __future__ import annotations

import argparse

from service.commands._common import (
    EXIT_USAGE,
    add_file_arguments,
    add_in_process_model_arguments,
    add_remote_arguments,
)

HELP = "restore the faces in whole photos (find, align, restore, paste back), in-process or with --url on a service"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_arguments(parser, input_metavar="PHOTO", default_scale=4)
    add_in_process_model_arguments(parser, batch_help="faces per model run")
    parser.add_argument(
        "--max-output-side", type=int, default=4096, metavar="PIXELS",
        help="refuse photos whose output would have a longer side, as the API does (default: 4096)",
    )
    # Defaults None: the API's (ServiceSettings.restore_min_*), read when the command runs.
    parser.add_argument("--min-inter-ocular", type=float, default=None, metavar="PIXELS",
                        help="faces with eyes closer than this stay as the upscaled photo (default: as the API)")
    parser.add_argument("--min-score", type=float, default=None, metavar="SCORE",
                        help="detections scoring lower stay as the upscaled photo (default: as the API)")
    add_remote_arguments(parser)


def describe_answer(answer) -> str:
    restored = f"{answer.headers.get('x-faces', '?')} of {answer.headers.get('x-faces-detected', '?')} faces restored"
    return f"{restored} ({answer.headers['x-model']})" if "x-model" in answer.headers else restored


def run(args: argparse.Namespace) -> int:
    if args.url:
        from service.commands._common import run_remote

        return run_remote(args, "restore", describe_answer)
    import dataclasses

    from service.commands._common import finish, start_in_process
    from service.core.images import ImageLimits
    from service.faces.detector import FaceDetector
    from service.faces.restoration import RestorePolicy
    from service.files.restore import RestoreOptions, describe, restore_files

    started = start_in_process(args, ("--batch-size", "--max-output-side"))
    if started is None:
        return EXIT_USAGE
    inputs, report, models, request, max_side = started
    given = {"min_inter_ocular": args.min_inter_ocular, "min_score": args.min_score}  # None: the API's default
    options = RestoreOptions(
        output_dir=args.output, output_format=args.output_format, batch_size=args.batch_size,
        limits=ImageLimits(max_bytes=64 * 1024 * 1024, max_pixels=max_side**2, max_side=max_side,
                           too_large_hint=" (see --max-output-side)"),
        policy=RestorePolicy(**{name: value for name, value in given.items() if value is not None}),
    )
    # The detector as the API runs it: on the CPU, one thread, the runtime and precision asked for.
    detector = FaceDetector(runtime=dataclasses.replace(request, device="cpu", threads=1))
    restore_files(inputs, models, detector, options, report,
                  on_result=lambda item, plans, runner: print(f"{item.path}: {describe(plans)} ({runner.spec.name})"))
    return finish(report, f"{args.output} (×{args.scale}, {models.names}, {models.runtime})")
