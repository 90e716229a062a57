"""The API gives back a burst's memory (issue 27, docs/service.md#soak-an-hour-under-load).

Three causes were measured (``benchmarks/api_malloc.py``) and each has a test here: glibc's
dynamic mmap threshold (``service.core.memory``), OpenVINO infer requests held per thread
(``portraitsr.runtimes.OpenVinoSession``) and an unbounded number of photos searched at once
(``service.faces.detector.FaceDetector``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from service_helpers import REPO

from portraitsr.runtimes import RuntimeRequest, open_session
from service.core.memory import API_MMAP_THRESHOLD, tune_api_malloc
from service.faces.detector import DEFAULT_DETECTOR_DIR, FaceDetector

# A process that frees one 30 MiB block (glibc then raises its threshold to 30 MiB), writes forty
# 1.5 MiB blocks and frees all but the last: from the heap they stay resident behind it, each
# mapped on its own they are unmapped. It prints the MiB still resident over its start.
HIGH_WATER_SCRIPT = """
import ctypes, json, sys
from service.core.memory import tune_api_malloc

def rss_mib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) / 1024

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
tuned = tune_api_malloc() if sys.argv[1] == "tuned" else False
start = rss_mib()
big = libc.malloc(30 << 20); ctypes.memset(big, 1, 30 << 20); libc.free(big)
blocks = [libc.malloc(3 << 19) for _ in range(40)]
for block in blocks:
    ctypes.memset(block, 1, 3 << 19)
for block in blocks[:-1]:
    libc.free(block)
print(json.dumps({"tuned": tuned, "kept_mib": rss_mib() - start}))
"""


def kept_after_burst(variant: str) -> dict:
    result = subprocess.run([sys.executable, "-c", HIGH_WATER_SCRIPT, variant], cwd=REPO, capture_output=True,
                            text=True, check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    return json.loads(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_apis_malloc_settings_give_back_freed_images():
    plain, tuned = kept_after_burst("plain"), kept_after_burst("tuned")
    assert plain["kept_mib"] > 40, plain  # the burst's 58 MiB stay without the settings
    assert tuned["tuned"] and tuned["kept_mib"] < 8, tuned
    assert API_MMAP_THRESHOLD < 3 << 19


def test_a_users_own_glibc_threshold_wins():
    assert tune_api_malloc({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}) is False


class InFlight:
    """A session that counts the runs in flight at once (each run lingers so that runs overlap)."""

    def __init__(self, session):
        self.session, self.now, self.most, self.lock = session, 0, 0, threading.Lock()

    def run(self, batch):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.02)
            return self.session.run(batch)
        finally:
            with self.lock:
                self.now -= 1


def run_on_threads(function, threads: int) -> None:
    barrier = threading.Barrier(threads)

    def go():
        barrier.wait()
        function()

    workers = [threading.Thread(target=go) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_the_detector_searches_at_most_max_parallel_photos_at_once():
    detector = FaceDetector(max_parallel=2)
    counted = detector.sessions["pnet"] = InFlight(detector.sessions["pnet"])
    photo = np.full((96, 128, 3), 128, np.uint8)
    run_on_threads(lambda: detector.detect(photo), 8)
    assert counted.most == 2


def test_openvino_keeps_one_infer_request_per_run_in_flight_not_per_thread():
    pytest.importorskip("openvino")
    session = open_session(DEFAULT_DETECTOR_DIR / "mtcnn-rnet.onnx", RuntimeRequest("openvino", device="cpu", threads=1))
    batch = np.zeros((4, 3, 24, 24), np.float32)
    expected = session.run(batch)
    lock = threading.Lock()

    def one_at_a_time():
        with lock:
            outputs = session.run(batch)
        assert all(np.array_equal(a, b) for a, b in zip(outputs, expected, strict=True))

    run_on_threads(one_at_a_time, 8)  # eight threads, never two runs at once
    assert session.infer_requests_made == 1
