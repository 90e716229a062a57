"""Does ``POST /restore`` keep the API responsive? /livez latency while large photos are restored.

Starts ``portraitsr serve`` (private Redis, one worker, the given release) on a free port, then
for each output format sends ``--requests`` photos of ``--side`` px with drawn faces, one after
another, while a poller asks ``/livez`` every 25 ms. Reports the /restore times and the /livez
latency during them (the background upscale, paste-back and encoding run on the API's thread
pool; the event loop should stay free).

    python -m benchmarks.restore_api_load --manifest model/release/manifest.json --side 1024
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.run_benchmark import stop
from service.supervisor import free_port
from training.data.synthetic import synthetic_face

REPO = Path(__file__).resolve().parent.parent


def photo_bytes(side: int, faces: int) -> bytes:
    height = side * 3 // 4
    yy, xx = np.mgrid[0:height, 0:side] / side
    array = np.stack([0.4 + 0.3 * xx, 0.5 + 0.2 * np.sin(9 * yy), 0.45 + 0.3 * yy], axis=2)
    canvas = Image.fromarray(np.clip(array * 255 + np.random.default_rng(0).normal(0, 6, array.shape), 0, 255).astype(np.uint8))
    for k in range(faces):
        canvas.paste(synthetic_face(40, hue_shift=20 * k), (20 + (k % 8) * (side // 8), 20 + (k // 8) * 60))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def get_ms(url: str) -> float | None:
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
    except OSError:
        return None
    return (time.perf_counter() - began) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=REPO / "model" / "release" / "manifest.json")
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--faces", type=int, default=8)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3)
    args = parser.parse_args(argv)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PORTRAITSR_")}
    env.update({"PORTRAITSR_MANIFEST_PATH": str(args.manifest.resolve()), "PORTRAITSR_WORKER_METRICS_PORT": str(free_port()),
                "PORTRAITSR_JOB_DEADLINE_S": "120", "PORTRAITSR_INTRA_OP_THREADS": "1"})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = subprocess.Popen([sys.executable, "-m", "portraitsr", "serve", "--port", str(port), "--log-level", "WARNING"],
                               env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and get_ms(f"{url}/readyz") is None:
            time.sleep(0.5)
        data = photo_bytes(args.side, args.faces)
        print(f"{args.side}×{args.side * 3 // 4} photo, {args.faces} drawn faces, ×{args.scale}, {args.requests} requests per format")
        print("| format | /restore s (each) | faces | /livez ms p50 | p99 | max |")
        print("|---|---|---|---|---|---|")
        for output_format in ("jpeg", "png"):
            latencies: list[float] = []
            done = threading.Event()

            def poll(samples=latencies, finished=done):
                while not finished.is_set():
                    value = get_ms(f"{url}/livez")
                    if value is not None:
                        samples.append(value)
                    time.sleep(0.025)

            poller = threading.Thread(target=poll)
            poller.start()
            times, faces = [], "?"
            for _ in range(args.requests):
                began = time.perf_counter()
                request = urllib.request.Request(f"{url}/restore?scale={args.scale}&format={output_format}", data=data,
                                                 method="POST", headers={"Content-Type": "image/jpeg"})
                with urllib.request.urlopen(request, timeout=300) as response:
                    response.read()
                    faces = response.headers.get("X-Faces")
                times.append(time.perf_counter() - began)
            done.set()
            poller.join()
            p50, p99 = np.percentile(latencies, [50, 99])
            print(f"| {output_format} | {', '.join(f'{t:.1f}' for t in times)} | {faces} | {p50:.1f} | {p99:.1f} "
                  f"| {max(latencies):.1f} |")
    finally:
        stop(service)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
