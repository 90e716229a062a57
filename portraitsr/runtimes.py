"""Inference sessions: ONNX Runtime (CUDA or CPU) and OpenVINO (CPU), fp32 or bf16.

The only place a session is made. :func:`choose_runtime` turns a :class:`RuntimeRequest` (the
settings ``runtime``, ``precision``, ``device``) into a :class:`RuntimeChoice`, and
:func:`open_session` opens a :class:`Session` on it: ``run(batch) -> outputs`` whichever runtime
runs it, and it says what it runs on (``runtime``, ``device``, ``precision``, ``provider``).

``auto`` means: ONNX Runtime on CUDA where it has a GPU; else OpenVINO in bf16 on CPUs with
AVX-512 BF16 or AMX (read from /proc/cpuinfo); else :data:`FP32_CPU_RUNTIME`, the faster of the
two in fp32 (docs/benchmarks.md). ONNX Runtime in fp32 is the reference every other choice is
checked against (:data:`REFERENCE`, the release manifest's ``runtime_parity``). Runtimes are
imported when a session is opened, never at import time; a runtime that is asked for by name
and not installed is refused (:class:`RuntimeUnavailable`).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

RuntimeName = Literal["auto", "onnxruntime", "openvino"]
PrecisionName = Literal["auto", "fp32", "bf16"]
DeviceName = Literal["auto", "cuda", "cpu"]
RUNTIMES = ("onnxruntime", "openvino")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# CPU flags (Linux /proc/cpuinfo names) with which OpenVINO runs bf16 in hardware.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Without bf16, the faster fp32 runtime on the CPU. Measured on the shipped models, batch 1, 8 and
# 32, both runtimes in the same run (benchmarks/runtimes.py, docs/benchmarks.md).
FP32_CPU_RUNTIME = "openvino"
# What the service installs (pyproject.toml's `service` extra), for the refusal's message.
INSTALL_HINT = "pip install 'portraitsr[service]'"


class RuntimeUnavailable(RuntimeError):
    """A runtime, device or precision was asked for that this machine or environment cannot give."""


@dataclass(frozen=True)
class RuntimeRequest:
    """What the settings ask for. ``threads``: intra-op threads, 0 = the runtime's default (all cores)."""

    runtime: RuntimeName = "auto"
    precision: PrecisionName = "auto"
    device: DeviceName = "auto"
    threads: int = 0
    allow_spinning: bool = False  # ONNX Runtime only: spinning threads burn cores others share
    cache_dir: Path | None = None  # OpenVINO's compiled-model cache (CACHE_DIR); None: no cache

    def with_threads(self, threads: int) -> RuntimeRequest:
        return replace(self, threads=threads)


# The runtime every other is held to: ONNX Runtime, fp32, CPU.
REFERENCE = RuntimeRequest("onnxruntime", "fp32", "cpu")


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: str  # onnxruntime | openvino
    device: str  # cuda | cpu
    precision: str  # fp32 | bf16
    reason: str  # why (auto), or "asked for"
    fallback_reason: str | None = None  # something asked for that this machine cannot do, and what runs instead


def default_cache_dir() -> Path:
    """Where the service keeps OpenVINO's compiled models unless told: the user's cache folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "portraitsr" / "openvino"


def installed(runtime: str) -> bool:
    """Whether the runtime's package can be imported here (found, not imported)."""
    return importlib.util.find_spec(runtime) is not None


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cuda_available() -> bool:
    """ONNX Runtime here has the CUDA provider (onnxruntime-gpu); whether it starts is seen when a session opens."""
    if not installed("onnxruntime"):
        return False
    import onnxruntime as ort

    return CUDA in ort.get_available_providers()


def _require(runtime: str, why: str) -> None:
    if not installed(runtime):
        raise RuntimeUnavailable(f"{why}, but the {runtime!r} package is not installed here ({INSTALL_HINT})")


def check_request(request: RuntimeRequest) -> None:
    """Refuse (:class:`RuntimeUnavailable`) what no machine could give this environment: a runtime
    named and not installed, or a combination no runtime runs. Cheap: imports no runtime."""
    if request.runtime == "onnxruntime" and request.precision == "bf16":
        raise RuntimeUnavailable("runtime 'onnxruntime' runs the models in fp32 only; bf16 needs runtime 'openvino' (or 'auto')")
    if request.device == "cuda" and (request.runtime == "openvino" or request.precision == "bf16"):
        raise RuntimeUnavailable(
            f"device 'cuda' runs ONNX Runtime in fp32 only; runtime {request.runtime!r} with precision "
            f"{request.precision!r} runs on the CPU (ask for device 'cpu' or 'auto')"
        )
    if request.runtime != "auto":
        _require(request.runtime, f"runtime {request.runtime!r} was asked for")
    elif request.precision == "bf16":
        _require("openvino", "precision 'bf16' was asked for (OpenVINO runs it)")
    elif not any(installed(runtime) for runtime in RUNTIMES):
        raise RuntimeUnavailable(f"no inference runtime is installed here: neither onnxruntime nor openvino ({INSTALL_HINT})")


def choose_runtime(
    request: RuntimeRequest, flags: frozenset[str] | None = None, cuda: bool | None = None
) -> RuntimeChoice:
    """What runs a model for ``request`` on this machine (``flags`` and ``cuda``: this machine's unless given)."""
    check_request(request)
    flags = cpu_flags() if flags is None else flags
    bf16_cpu = bool(flags & BF16_CPU_FLAGS)
    wants_gpu = request.device != "cpu" and request.runtime != "openvino" and request.precision != "bf16"
    if wants_gpu and (cuda_available() if cuda is None else cuda):
        return RuntimeChoice("onnxruntime", "cuda", "fp32", "a CUDA GPU is there" if request.runtime == "auto" else "asked for")
    fallback = "CUDA was requested but onnxruntime has no CUDAExecutionProvider" if request.device == "cuda" else None

    if request.runtime == "onnxruntime":
        return RuntimeChoice("onnxruntime", "cpu", "fp32", "asked for", fallback)
    if request.runtime == "openvino":
        return _openvino_choice(request.precision, bf16_cpu, "asked for", fallback)
    # auto, on the CPU
    if request.precision == "bf16":
        return _openvino_choice("bf16", bf16_cpu, "bf16 was asked for", fallback)
    if not installed("openvino"):
        return RuntimeChoice("onnxruntime", "cpu", "fp32", "openvino is not installed", fallback)
    if bf16_cpu and request.precision == "auto":
        found = ", ".join(sorted(flags & BF16_CPU_FLAGS))
        return RuntimeChoice("openvino", "cpu", "bf16", f"the CPU has {found}", fallback)
    fp32_runtime = FP32_CPU_RUNTIME if installed(FP32_CPU_RUNTIME) else "openvino"
    why = "fp32 was asked for" if request.precision == "fp32" else "the CPU has no bf16"
    return RuntimeChoice(fp32_runtime, "cpu", "fp32", f"{why}; {fp32_runtime} is the faster in fp32", fallback)


def _openvino_choice(precision: str, bf16_cpu: bool, reason: str, fallback: str | None) -> RuntimeChoice:
    if precision == "fp32" or (precision == "auto" and not bf16_cpu):
        return RuntimeChoice("openvino", "cpu", "fp32", reason, fallback)
    if not bf16_cpu and precision == "bf16":
        # bf16 is worth its error only where the CPU computes it in hardware: fp32 instead, and say so.
        fallback = "bf16 was requested but this CPU has neither avx512_bf16 nor amx_bf16; running fp32"
        return RuntimeChoice("openvino", "cpu", "fp32", reason, fallback)
    return RuntimeChoice("openvino", "cpu", "bf16", reason, fallback)


class Session(Protocol):
    """One model on one runtime: ``run(batch)`` feeds the model's single input, returns its outputs in order."""

    runtime: str
    device: str
    precision: str
    provider: str  # ONNX Runtime's execution provider, or "OpenVINO:CPU"
    reason: str  # why this runtime (RuntimeChoice.reason)
    fallback_reason: str | None
    input_names: list[str]
    output_names: list[str]

    def run(self, batch: np.ndarray) -> list[np.ndarray]: ...


def session_options(intra_op_threads: int = 0, allow_spinning: bool = False) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = intra_op_threads
    # No CPU arena: with it a worker keeps the peak of its largest batch for good (measured: 269 ->
    # 454 MiB after one 128 px ×4 input, never returned); without it, memory returns to ~150 MiB
    # at no measurable cost in speed (benchmarks/worker_memory.py, docs/service.md).
    options.enable_cpu_mem_arena = False
    # Spinning threads burn the cores that the API and Redis share with the worker between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    return options


def onnxruntime_session(
    model: str | Path | bytes, providers: list[str] | None = None, intra_op_threads: int = 0, allow_spinning: bool = False
) -> Any:
    """A plain ONNX Runtime ``InferenceSession`` (the reference runtime's own API), for the tools that
    need it: the export's parity check, the face-parser and face-detector exports, tests."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(
        source, sess_options=session_options(intra_op_threads, allow_spinning), providers=providers or [CPU]
    )


class OnnxRuntimeSession:
    def __init__(self, model: str | Path, choice: RuntimeChoice, request: RuntimeRequest):
        providers = [CUDA, CPU] if choice.device == "cuda" else [CPU]
        self.session = onnxruntime_session(model, providers, request.threads, request.allow_spinning)
        self.runtime, self.precision, self.reason = "onnxruntime", "fp32", choice.reason
        self.provider = self.session.get_providers()[0]
        self.device = "cuda" if self.provider == CUDA else "cpu"
        self.fallback_reason = choice.fallback_reason
        if choice.device == "cuda" and self.device != "cuda":
            self.fallback_reason = "CUDAExecutionProvider is installed but could not start; running on CPU"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_names[0]: batch})


OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16"}


class OpenVinoSession:
    """A model compiled by OpenVINO for the CPU. An infer request is not thread-safe and keeps buffers
    for the largest input it ran: each run takes an idle one from a shared pool and puts it back, so
    the session holds as many as ever ran at once, not one per thread that ever ran (the API's
    thread pool has 40)."""

    def __init__(self, model: str | Path, choice: RuntimeChoice, request: RuntimeRequest):
        import openvino as ov

        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[choice.precision],
            # One stream, all threads on each run: the worker runs one batch at a time.
            "PERFORMANCE_HINT": "LATENCY",
            # Threads free to move between cores, as ONNX Runtime's: the worker shares its cores with
            # the API and Redis, and a thread pinned to a busy core waits for it (measured beside
            # training: 1.2-1.6x the wall-clock speed unpinned, the same per CPU-second).
            "ENABLE_CPU_PINNING": False,
        }
        if request.threads:
            config["INFERENCE_NUM_THREADS"] = request.threads
        self.fallback_reason = choice.fallback_reason
        if request.cache_dir is not None:
            try:
                Path(request.cache_dir).mkdir(parents=True, exist_ok=True)
                config["CACHE_DIR"] = str(request.cache_dir)
            except OSError as error:  # a read-only home in a container: slower start, same model
                self.fallback_reason = f"no compiled-model cache ({error}); compiling at every start"
        # From the file's path, so that a cached compiled model is loaded without reading the ONNX.
        self.compiled = ov.Core().compile_model(str(model), "CPU", config)
        self.runtime, self.device, self.provider, self.reason = "openvino", "cpu", "OpenVINO:CPU", choice.reason
        compiled_type = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = {ov.Type.bf16: "bf16", ov.Type.f32: "fp32"}.get(compiled_type, str(compiled_type))
        if self.precision != choice.precision:
            self.fallback_reason = f"{choice.precision} was requested but OpenVINO compiled the model in {self.precision}"
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]
        self._idle_requests: list[Any] = []
        self._requests_lock = threading.Lock()
        self.infer_requests_made = 0  # the most runs ever in flight at once

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        with self._requests_lock:
            infer_request = self._idle_requests.pop() if self._idle_requests else None
        if infer_request is None:
            infer_request = self.compiled.create_infer_request()
            with self._requests_lock:
                self.infer_requests_made += 1
        try:
            # The request's output buffers are reused by the next run: the results are copies.
            result = infer_request.infer({0: batch}, share_inputs=True, share_outputs=False)
            return [result[port] for port in self.compiled.outputs]
        finally:
            with self._requests_lock:
                self._idle_requests.append(infer_request)


def open_session(model: str | Path, request: RuntimeRequest = REFERENCE) -> Session:
    """A session on an ONNX file, on the runtime :func:`choose_runtime` picks for ``request``."""
    choice = choose_runtime(request)
    session_class = OpenVinoSession if choice.runtime == "openvino" else OnnxRuntimeSession
    session = session_class(model, choice, request)
    if len(session.input_names) != 1:
        raise ValueError(f"{model}: a session feeds one input; the model has {session.input_names}")
    return session
