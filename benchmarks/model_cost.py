"""What a model configuration costs to train on a GPU, to bring back and to serve on this CPU.

    python benchmarks/model_cost.py small-deep-x8 small-full-x8 paper-x8 --json benchmarks/results/model-cost-x8.json

Per configuration: parameters (all, and those the exported model keeps), MACs per 128×128 face
(`portraitsr model-info`), the ONNX file's size (an untrained export: the size does not depend
on the weights) against the 16 MiB a returned file may have, ONNX Runtime's CPU time per face at
batch 1 and 8, one thread (the service's path, `portraitsr.release.ReleaseModel`), and an ESTIMATE of
training faces/s on an H100: 3 × the forward MACs per face (forward, and backward for activations
and weights), 2 FLOPs per MAC, at a stated fraction of the 798 bf16 TFLOP/s measured on the
project's H100 (docs/training.md#one-gpu-call says why each fraction). Not a measurement.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

H100_BF16_FLOPS = 798e12  # an 8192³ bf16 matrix product on the project's H100 (the device tool's KINDS.md)
RETURN_FILE_BYTES = 16 * 2**20


def utilisation(dim: int) -> float:
    """The fraction of the bf16 peak assumed for a model of width ``dim`` (an assumption, stated).

    These networks are memory-bound on a GPU: a 1×1 convolution over C channels does C MACs per
    value it reads and writes, so its arithmetic intensity grows with the width. At dim 16 the
    full-resolution layers sit far below the H100's ridge point (~240 FLOP/byte); torch.compile
    fuses the element-wise work between them. 2 % at dim 16, growing with the width to 10 % at 48.
    """
    return min(0.10, 0.02 * dim / 16 if dim <= 16 else 0.02 + 0.08 * (dim - 16) / 32)


def ort_ms_per_face(onnx_path: Path, scale: int, batch: int, threads: int, seconds: float) -> dict[str, float]:
    """Wall-clock and CPU milliseconds per face. On a shared machine the CPU time is the steadier
    figure (threads do not spin: it counts the work, not the wait); with 1 thread it is the
    latency an idle core would give."""
    from portraitsr.release import ReleaseModel

    model = ReleaseModel(onnx_path, scale, intra_op_threads=threads)
    side = 128 // scale
    lr = np.random.default_rng(0).random((batch, 3, side, side), dtype=np.float32)
    model.run(lr)  # warm-up
    runs, start, start_cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds or runs < 3:
        model.run(lr)
        runs += 1
    faces = runs * batch
    return {
        "wall": round((time.perf_counter() - start) / faces * 1e3, 1),
        "cpu": round((time.process_time() - start_cpu) / faces * 1e3, 1),
    }


def measure(name: str, threads: int, seconds: float) -> dict:
    import torch

    from model.config import load_model_config
    from model.export import export_onnx
    from model.info import model_info
    from model.network import PortraitSR

    config = load_model_config(name)
    info = model_info(config)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = export_onnx(PortraitSR(config).eval(), Path(folder) / "model.onnx")
        onnx_bytes = onnx_path.stat().st_size
        ms = {batch: ort_ms_per_face(onnx_path, config.scale, batch, threads, seconds) for batch in (1, 8)}
    train_flops = 3 * 2 * info["macs"]
    share = utilisation(config.dim)
    return {
        "model": name,
        "params": info["params"],
        "params_inference": info["params_inference"],
        "gmacs_per_face": round(info["macs"] / 1e9, 3),
        "onnx_mib": round(onnx_bytes / 2**20, 2),
        "onnx_fits_one_returned_file": onnx_bytes <= RETURN_FILE_BYTES,
        "checkpoint_fp32_mib": round(info["params"] * 4 / 2**20, 2),
        "ort_ms_per_face": {f"batch{batch}": value for batch, value in ms.items()},
        "h100_estimate": {
            "assumed_share_of_bf16_peak": share,
            "train_faces_per_s": round(H100_BF16_FLOPS * share / train_flops),
            "note": "estimate from MACs and the assumed share of peak, not a measurement",
        },
        "config": info["config"],  # the whole model config: a row can be rebuilt from it
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="named model configs or YAML paths")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default: 1)")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per batch size")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = [measure(name, args.threads, args.seconds) for name in args.models]
    print("| model | params (inference) | GMACs/face | ONNX MiB | ORT CPU-ms/face b1 / b8 (wall) | H100 train faces/s (estimate) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        ms, h100 = row["ort_ms_per_face"], row["h100_estimate"]
        print(f"| {row['model']} | {row['params'] / 1e6:.2f} M ({row['params_inference'] / 1e6:.2f} M) | "
              f"{row['gmacs_per_face']} | {row['onnx_mib']} | {ms['batch1']['cpu']} / {ms['batch8']['cpu']} "
              f"({ms['batch1']['wall']} / {ms['batch8']['wall']}) | "
              f"~{h100['train_faces_per_s']} at {h100['assumed_share_of_bf16_peak']:.0%} of peak |")  # fmt: skip
    if args.json is not None:
        result = {"machine": f"{platform.processor() or platform.machine()}, threads {args.threads}", "rows": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
