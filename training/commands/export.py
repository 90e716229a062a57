"""`portraitsr export`: a training checkpoint → ONNX (release contract), parity check, manifest entry."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a checkpoint to ONNX with a PyTorch parity check, and write its model/release manifest entry"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (e.g. runs/<name>/best.pt)")
    parser.add_argument("--name", required=True, help="release name; files <name>.onnx and <name>.pt")
    parser.add_argument("--release-dir", type=Path, default=None, help="default: model/release")
    parser.add_argument("--metrics", type=Path, help="`portraitsr evaluate --json` output of the exported ONNX file")
    parser.add_argument("--no-manifest", action="store_true", help="write the files but leave manifest.json alone")
    parser.add_argument("--no-checkpoint", action="store_true", help="skip the fine-tuning checkpoint <name>.pt")
    parser.add_argument(
        "--reuse-onnx",
        action="store_true",
        help="keep an existing <name>.onnx (the file you evaluated) instead of exporting again; parity still checked",
    )
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |ONNX Runtime − PyTorch| allowed")
    parser.add_argument(
        "--flip-ensemble",
        action="store_true",
        help="the ONNX averages the face and its mirror image: ~0.1 dB for twice the model time",
    )


def run(args: argparse.Namespace) -> int:
    import json

    from training.export import DEFAULT_RELEASE_DIR, export_release

    entry = export_release(
        args.checkpoint,
        args.name,
        release_dir=args.release_dir or DEFAULT_RELEASE_DIR,
        evaluation_json=args.metrics,
        write_manifest=not args.no_manifest,
        write_finetune_checkpoint=not args.no_checkpoint,
        tolerance=args.tolerance,
        reuse_onnx=args.reuse_onnx,
        flip_ensemble=args.flip_ensemble,
    )
    print(f"{entry['onnx']}: sha256 {entry['sha256']}, parity max |diff| {entry['parity']['max_abs_diff']:.2e}")
    if entry.get("replaced"):
        print(f"manifest: replaced {', '.join(map(str, entry['replaced']))}")
    print(json.dumps({key: entry[key] for key in ("name", "scale", "onnx", "sha256", "input", "output")}, indent=2))
    return 0
