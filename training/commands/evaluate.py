"""`portraitsr evaluate`: PSNR-Y / SSIM-Y / LPIPS of a model and of bicubic on a folder of HR faces."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Score a checkpoint or ONNX model against bicubic (PSNR-Y, SSIM-Y, LPIPS) on a folder of HR faces."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="checkpoint (.pt) or exported model (.onnx); omit for bicubic only",
    )
    parser.add_argument(
        "--config", default=None, help="model config name or YAML path, if the checkpoint does not carry one"
    )
    parser.add_argument("--scale", type=int, default=None, help="4 or 8 (default: the checkpoint's, else 8)")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("../shared/data/helen50/hr"),
        help="folder of HR images (default: Helen-50), or a prepare-data cache (a folder with index.json)",
    )
    parser.add_argument("--split", default="val", help="with a cache: which split to score (default: val)")
    parser.add_argument("--source", default=None, help="with a cache: only this dataset (e.g. utkface)")
    parser.add_argument(
        "--inputs", choices=("bicubic", "benchmark"), default="bicubic",
        help="bicubic (default): the paper's protocol; benchmark: each face through one row of the fixed "
             "degradation table in rotation (the real models' checkpoint selection, docs/degradations.md)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write per-image and mean scores here")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS (no pretrained weights needed)")
    parser.add_argument("--weights-dir", default=None, help="pretrained-weights cache (see fetch-weights)")
    parser.add_argument("--device", default="cpu", help="torch device for checkpoints and LPIPS")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--runtime", choices=("onnxruntime", "openvino", "auto"), default="onnxruntime",
                        help="ONNX models: the runtime (default: onnxruntime, the reference; auto: what the service picks here)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32", help="ONNX models (default: fp32)")


def run(args: argparse.Namespace) -> int:
    import torch

    from training.data.cache import is_cache
    from training.evaluation import (
        CheckpointUpscaler,
        OnnxUpscaler,
        evaluate_images,
        format_table,
        load_hr_cache,
        load_hr_folder,
    )
    from training.metrics import load_lpips

    upscaler = None
    scale = args.scale
    if args.model is not None:
        if args.model.suffix.lower() == ".onnx":
            scale = scale or 8
            from portraitsr.runtimes import RuntimeRequest

            upscaler = OnnxUpscaler(args.model, scale, runtime=RuntimeRequest(args.runtime, args.precision, "cpu"))
        else:
            upscaler = CheckpointUpscaler(args.model, args.config, args.device)
            if scale is not None and scale != upscaler.scale:
                raise SystemExit(f"--scale {scale} but {args.model} is a ×{upscaler.scale} model")
            scale = upscaler.scale
    scale = scale or 8
    lpips_net = None if args.no_lpips else load_lpips(args.weights_dir, args.device)
    with torch.inference_mode():
        if is_cache(args.data):
            images = load_hr_cache(args.data, args.split, args.source)
            where = f"{args.data} (split {args.split}, {args.source or 'all sources'})"
            result = evaluate_images(images, where, scale, upscaler, lpips_net, args.batch_size, args.inputs)
        else:
            images = load_hr_folder(args.data, scale)
            result = evaluate_images(images, str(args.data), scale, upscaler, lpips_net, args.batch_size, args.inputs)
    result["model"] = None if args.model is None else str(args.model)
    if isinstance(upscaler, OnnxUpscaler):
        result["runtime"] = f"{upscaler.model.runtime} {upscaler.model.precision}"
    print(format_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
