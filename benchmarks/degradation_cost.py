"""What the degradation model costs per face, beside what a training step costs per face.

    python -m benchmarks.degradation_cost --cache data-cache/faces --faces 400

CPU time (``time.process_time``), not wall time, so other jobs on the machine hardly move the
figures. The degradation runs in a DataLoader worker, so on a machine whose cores the training
step already fills, its CPU time is what the run loses: the slowdown is about
degradation ÷ (degradation + step) per face. The step is the real-x{4,8} recipe's (L1 + parsing,
bf16 autocast, eager; torch.compile makes the step cheaper and the share larger, so the
compiled figure from docs/benchmarks.md is used as well when given with --compiled-faces-per-cpu-s).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def degradation_ms_per_face(hr: np.ndarray, scale: int, seed: int = 0) -> float:
    from training.degradations.config import DegradationConfig
    from training.degradations.pipeline import degrade

    config = DegradationConfig(enabled=True)
    rng = np.random.default_rng(seed)
    start = time.process_time()
    for face in hr:
        degrade(face, scale, config, rng)
    return 1000 * (time.process_time() - start) / len(hr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="data-cache/faces")
    parser.add_argument("--faces", type=int, default=400)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from benchmarks.train_speed import measure
    from training.data.cache import TrainingCache

    torch.set_num_threads(1)
    hr = np.asarray(TrainingCache(args.cache).hr()[: args.faces])
    rows = []
    for scale, model in ((4, "small-fast-x4"), (8, "small-deep-x8")):
        degrade_ms = degradation_ms_per_face(hr, scale)
        step = measure(model, "bf16", batch=8, steps=args.steps, warmup=2, recipe="release")
        step_ms = 1000 / step["faces_per_cpu_s"]
        rows.append({"scale": scale, "model": model, "degradation_cpu_ms_per_face": round(degrade_ms, 2),
                     "train_step_cpu_ms_per_face": round(step_ms, 1),
                     "slowdown_share": round(degrade_ms / (degrade_ms + step_ms), 4)})  # fmt: skip
    print("| scale | model | degradation (CPU ms/face) | training step, bf16 eager (CPU ms/face) | share of the run |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| ×{row['scale']} | {row['model']} | {row['degradation_cpu_ms_per_face']} | "
              f"{row['train_step_cpu_ms_per_face']} | {100 * row['slowdown_share']:.1f} % |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"faces": len(hr), "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
