"""Worker memory per input size, with ONNX Runtime's CPU arena on or off (issue 11, finding 9).

Each configuration runs in a fresh process: load the shipped ×4 and ×8 models (1 thread), run
a light batch (8 faces), then a heavy ×4 input, then the light batch again; prints RSS after each
step and the light batch's time. Usage: python -m benchmarks.worker_memory [--manifest PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import numpy as np
import portraitsr.runtimes as runtimes
from portraitsr.manifest import load_manifest
from portraitsr.runtimes import REFERENCE
from service.core.inference import ModelRunner

arena, manifest, heavy_side = sys.argv[1] == "on", sys.argv[2], int(sys.argv[3])

def rss_mib(field="VmRSS"):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) // 1024

original = runtimes.session_options
def options(threads, spinning):
    chosen = original(threads, spinning)
    chosen.enable_cpu_mem_arena = arena
    return chosen
runtimes.session_options = options
runners = {spec.scale: ModelRunner(spec, REFERENCE.with_threads(1)) for spec in load_manifest(manifest) if spec.variant == "clean"}
report = {"arena": arena, "loaded_mib": rss_mib()}
light = np.random.rand(8, 3, 16, 16).astype(np.float32)
runners[8].run(light)
started = time.perf_counter(); runners[8].run(light); report["light_batch_s"] = round(time.perf_counter() - started, 3)
report["after_light_mib"] = rss_mib()
heavy = np.random.rand(1, 3, heavy_side, heavy_side).astype(np.float32)
runners[4].run(heavy)
report[f"after_x4_{heavy_side}px_mib"] = rss_mib()
runners[8].run(light)
report["after_light_again_mib"] = rss_mib()
report["peak_mib"] = rss_mib("VmHWM")
print(json.dumps(report))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="model/release/manifest.json")
    parser.add_argument("--heavy-side", type=int, default=128, help="side of the heavy ×4 input (default 128)")
    args = parser.parse_args()
    for arena in ("on", "off"):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", CHILD, arena, args.manifest, str(args.heavy_side)],
                                capture_output=True, text=True, check=True)
        report = json.loads(result.stdout.strip().splitlines()[-1])
        report["wall_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
