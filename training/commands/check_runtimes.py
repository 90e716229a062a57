"""`portraitsr check-runtimes`: each runtime the service may pick, against ONNX Runtime fp32, on real faces."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "hold every runtime the service may pick to ONNX Runtime fp32 on real faces (--record: into the manifest)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, default=None, help="release manifest (default: model/release/manifest.json)")
    parser.add_argument("--record", action="store_true", help="write each result into its manifest entry (runtime_parity)")
    parser.add_argument("--threads", type=int, default=0, help="inference threads; 0 = all cores (default)")


def run(args: argparse.Namespace) -> int:
    import json

    from training.export import DEFAULT_RELEASE_DIR
    from training.runtime_parity import RuntimeParityError, check_runtimes

    manifest_path = args.manifest or DEFAULT_RELEASE_DIR / "manifest.json"
    document = json.loads(manifest_path.read_text())
    status = 0
    for entry in document["models"]:
        try:
            result = check_runtimes(manifest_path.parent / entry["onnx"], int(entry["scale"]), threads=args.threads)
        except RuntimeParityError as error:
            print(f"FAILED: {error}")
            status = 1
            continue
        print(f"{entry['name']}: reference (onnxruntime cpu fp32) PSNR-Y {result['reference']['psnr_y']:.4f} dB "
              f"on {len(result['faces'])} faces")
        for row in result["runtimes"]:
            name = f"  {row['runtime']} {row['device']} {row['precision']}"
            if not row["checked"]:
                print(f"{name}: not checked ({row['reason']})")
            elif "error" in row:
                print(f"{name}: FAILED, cannot run it: {row['error'][:300]}")
            else:
                agreement = row["min_psnr_y_vs_reference"]
                print(f"{name}: PSNR-Y {row['psnr_y_delta']:+.4f} dB, "
                      + ("identical pixels" if agreement is None else f"{agreement:.1f} dB from the reference's output")
                      + f", max |diff| {row['max_abs_diff']:.2e}, "
                      f"{'passed' if row['passed'] else 'FAILED'} ({row['tolerance']})")
        entry["runtime_parity"] = result
    if args.record and status == 0:
        manifest_path.write_text(json.dumps(document, indent=2) + "\n")
        print(f"recorded in {manifest_path}")
    return status
