"""Does the API keep a burst of photos' memory? (the soak's API RSS step, docs/service.md)

Runs the API's side of ``POST /restore`` in-process, as the API does: the photo decoded, its faces
found (:mod:`service.faces.detector`), the background upscaled, stand-in faces pasted and the result
encoded, on a pool of 40 threads that live on (anyio's default, which FastAPI runs sync work on).
Rounds of 2, 8, 16, 32, ... photos at once, each photo twice; after each round, the process's RSS.
Each variant runs in a fresh process:

    python -m benchmarks.api_malloc                       # glibc's defaults, then the API's settings
    python -m benchmarks.api_malloc --variants tuned --rounds 40,40

``tuned`` is what ``portraitsr api`` sets (``service.core.memory.tune_api_malloc``); ``default`` is
glibc as it comes. CPU seconds and minor page faults are the settings' price: memory given back is
faulted in again by the next photo. Run it with nothing else on the machine for the CPU figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks.restore_api_load import photo_bytes
from benchmarks.serve_stack import rss_mib

VARIANTS = ("default", "tuned")
ANYIO_THREADS = 40


def enlarged(crop: np.ndarray, scale: int) -> np.ndarray:
    return (np.repeat(np.repeat(crop, scale, axis=0), scale, axis=1).clip(0, 1) * 255).astype(np.uint8)


def run_variant(variant: str, rounds: list[int], photo_side: int, scale: int) -> dict:
    """In this process: the rounds, with this process's malloc as ``variant`` says."""
    from service.core.images import compose_output, decode_image, encode_image
    from service.core.memory import tune_api_malloc
    from service.faces.detector import DetectorSettings, FaceDetector
    from service.faces.restoration import RestorePolicy, paste_faces, plan_faces, upscale_background

    tuned = tune_api_malloc() if variant == "tuned" else False
    data = photo_bytes(photo_side, faces=2)
    detector = FaceDetector(settings=DetectorSettings())
    policy = RestorePolicy()

    def restore_once() -> bytes:
        image = decode_image(data)
        plans = plan_faces(image.rgb, detector.detect(image.rgb), scale, policy)
        background = upscale_background(image.rgb, scale)
        # The workers' faces stand in as the aligned crops, enlarged: the same sizes to paste.
        restored = [(plan, enlarged(plan.crop, scale)) for plan in plans if plan.crop is not None]
        pasted = paste_faces(background, restored, scale, policy) if restored else background
        return encode_image(compose_output(pasted, image.alpha), "png")

    restore_once()
    started = time.perf_counter()
    after: list[dict] = [{"photos_at_once": 1, "rss_mib": round(rss_mib(os.getpid()), 1)}]
    with ThreadPoolExecutor(ANYIO_THREADS) as pool:
        for at_once in rounds:
            list(pool.map(lambda _: (restore_once(), restore_once()), range(at_once)))
            after.append({"photos_at_once": at_once, "rss_mib": round(rss_mib(os.getpid()), 1)})
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"variant": variant, "tuned": tuned, "rounds": after, "photos": 1 + 2 * sum(rounds),
            "wall_s": round(time.perf_counter() - started, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "minor_faults": usage.ru_minflt}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: default, tuned")
    parser.add_argument("--rounds", default="2,8,16,32,16,32,40,40", help="photos at once, round by round")
    parser.add_argument("--photo-side", type=int, default=384, help="the soak's photo")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--json", help="append each variant's result to this JSON-lines file")
    parser.add_argument("--_in-process", dest="in_process", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds = [int(value) for value in args.rounds.split(",")]
    if args.in_process:  # the child: one variant, its result on stdout
        print(json.dumps(run_variant(args.in_process, rounds, args.photo_side, args.scale)))
        return
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r} ({', '.join(VARIANTS)})")
        command = [sys.executable, "-m", "benchmarks.api_malloc", "--_in-process", variant, "--rounds", args.rounds,
                   "--photo-side", str(args.photo_side), "--scale", str(args.scale)]
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        steps = "  ".join(f"{r['photos_at_once']}: {r['rss_mib']}" for r in result["rounds"])
        print(f"{variant:<8} RSS MiB after photos at once  {steps}")
        print(f"{'':<8} {result['photos']} photos, {result['wall_s']} s, CPU {result['cpu_s']} s, "
              f"{result['minor_faults']:,} minor faults", flush=True)
        if args.json:
            with open(args.json, "a") as file:
                file.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
