"""Is the mirror-image ensemble worth offering now that bf16 is the default? (issue 26, part 5)

    portraitsr export --checkpoint model/release/portraitsr-small-x8.pt --name flip-x8 \\
        --release-dir /tmp/flip --no-manifest --no-checkpoint --flip-ensemble   # fails at OpenVINO's parity
    python -m benchmarks.flip_ensemble --flip-onnx /tmp/flip/flip-x8.onnx --helen ../shared/data/helen50/hr

The ×8 model plain and as the flip ensemble (the face and its mirror image, outputs averaged), on
ONNX Runtime fp32 (the exported ensemble graph) and on OpenVINO bf16. OpenVINO 2026.4 cannot
convert the exported ensemble graph (training/runtime_parity.py refuses it), so there the
ensemble is made around the plain model: both images in one batch, the outputs averaged and
clamped (the graph averages before clamping: a difference only where an output leaves [0, 1]).
Helen-50 PSNR-Y (evaluation only) and images per wall-clock and per CPU-second at batch 8, the
variants taking turns for three rounds; ratios to the plain model on ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.runtimes import images_per_s
from portraitsr.release import ReleaseModel, to_model_input, to_uint8
from portraitsr.runtimes import REFERENCE, RuntimeRequest
from training.evaluation import evaluate_folder

REPO = Path(__file__).resolve().parent.parent


class MirrorEnsemble:
    """The flip ensemble around a plain model: mean of sr(lr) and mirror(sr(mirror(lr))), one batch."""

    def __init__(self, model: ReleaseModel) -> None:
        self.model = model

    def run(self, lr: np.ndarray) -> np.ndarray:
        count = len(lr)
        sr = self.model.run(np.concatenate([lr, lr[..., ::-1]]))
        return np.clip((sr[:count] + sr[count:][..., ::-1]) / 2, 0.0, 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain-onnx", type=Path, default=REPO / "model" / "release" / "portraitsr-small-x8.onnx")
    parser.add_argument("--flip-onnx", type=Path, required=True, help="`portraitsr export --flip-ensemble` of the same model")
    parser.add_argument("--helen", type=Path, required=True, help="Helen-50 HR folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    bf16 = RuntimeRequest("openvino", "bf16", "cpu")
    variants = {
        "plain, onnxruntime fp32": ReleaseModel(args.plain_onnx, 8, runtime=REFERENCE),
        "flip, onnxruntime fp32 (exported graph)": ReleaseModel(args.flip_onnx, 8, runtime=REFERENCE),
        "plain, openvino bf16": ReleaseModel(args.plain_onnx, 8, runtime=bf16),
        "flip, openvino bf16 (around the plain model)": MirrorEnsemble(ReleaseModel(args.plain_onnx, 8, runtime=bf16)),
    }
    lr = np.random.default_rng(8).random((8, 3, 16, 16), dtype=np.float32)
    speed: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, model in variants.items():
            speed[name].append(images_per_s(model, lr, 1.5))
    base = speed["plain, onnxruntime fp32"]
    rows = []
    for name, model in variants.items():
        result = evaluate_folder(args.helen, 8, lambda images, model=model: to_uint8(model.run(to_model_input(images))))
        rows.append({
            "variant": name, "helen50_psnr_y": round(result["mean"]["model"]["psnr_y"], 4),
            "images_per_s": round(statistics.median(v[0] for v in speed[name]), 2),
            "images_per_cpu_s": round(statistics.median(v[1] for v in speed[name]), 2),
            "x_plain_onnxruntime": round(statistics.median(a[0] / b[0] for a, b in zip(speed[name], base, strict=True)), 2),
            "x_plain_onnxruntime_cpu": round(statistics.median(a[1] / b[1] for a, b in zip(speed[name], base, strict=True)), 2),
        })
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
