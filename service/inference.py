"""ONNX Runtime sessions for the released models: provider choice, batched runs, warm-up.

One :class:`ModelRunner` per manifest entry. CUDA is used when it is asked for (or ``auto``) and
actually available; otherwise CPU, and the fallback is reported in ``fallback_reason`` instead of
being hidden.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from service.images import DecodedImage, compose_output, sr_to_uint8, to_model_input
from service.manifest import ModelSpec

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# The network works on the upscaled image down to 1/8 of it (design.md §1), so the upscaled
# side must be a multiple of this; inputs are edge-padded to fit and the output is cropped.
OUTPUT_MULTIPLE = 8


@dataclass(frozen=True)
class ProviderChoice:
    providers: list[str]
    fallback_reason: str | None


def choose_providers(preference: str) -> ProviderChoice:
    """The provider list for a preference ``auto`` / ``cuda`` / ``cpu``."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if preference == "cpu":
        return ProviderChoice([CPU], None)
    if CUDA in available:
        return ProviderChoice([CUDA, CPU], None)
    reason = "CUDA was requested but onnxruntime has no CUDAExecutionProvider" if preference == "cuda" else None
    return ProviderChoice([CPU], reason)


def session_options(intra_op_threads: int, allow_spinning: bool):
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


class ModelRunner:
    """One ONNX Runtime session: ``run(lr)`` maps N×3×h×w to N×3×(s·h)×(s·w), float32 in [0, 1]."""

    def __init__(self, spec: ModelSpec, preference: str = "auto", intra_op_threads: int = 0, allow_spinning: bool = False):
        import onnxruntime as ort

        self.spec = spec
        self.scale = spec.scale
        choice = choose_providers(preference)
        self.session = ort.InferenceSession(
            str(spec.onnx_path), sess_options=session_options(intra_op_threads, allow_spinning), providers=choice.providers
        )
        self.provider = self.session.get_providers()[0]
        self.fallback_reason = choice.fallback_reason
        if choice.providers[0] == CUDA and self.provider != CUDA:
            self.fallback_reason = "CUDAExecutionProvider is installed but could not start; running on CPU"
        self.input_multiple = int(spec.extra.get("input_multiple", OUTPUT_MULTIPLE // math.gcd(OUTPUT_MULTIPLE, spec.scale)))
        self.warmed = False

    def run(self, lr: np.ndarray) -> np.ndarray:
        lr = np.ascontiguousarray(lr, dtype=np.float32)
        height, width = lr.shape[2], lr.shape[3]
        pad_h, pad_w = -height % self.input_multiple, -width % self.input_multiple
        if pad_h or pad_w:
            lr = np.pad(lr, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="edge")
        (sr,) = self.session.run([self.spec.output_name], {self.spec.input_name: lr})
        return sr[:, :, : height * self.scale, : width * self.scale]

    def warm_up(self, sizes: tuple[tuple[int, int], ...] = ((16, 16),), batch_sizes: tuple[int, ...] = (1,)) -> float:
        """Run the model once per (batch, size) so first requests do not pay for lazy init; seconds spent."""
        started = time.perf_counter()
        for batch in batch_sizes:
            for height, width in sizes:
                self.run(np.full((batch, 3, height, width), 0.5, dtype=np.float32))
        self.warmed = True
        return time.perf_counter() - started


def load_runners(
    specs: list[ModelSpec], preference: str = "auto", intra_op_threads: int = 0, allow_spinning: bool = False
) -> dict[int, ModelRunner]:
    """One runner per scale."""
    return {spec.scale: ModelRunner(spec, preference, intra_op_threads, allow_spinning) for spec in specs}


def default_warmup_size(scale: int) -> tuple[int, int]:
    """The input size the models are made for: 128×128 faces, so 16×16 at ×8 and 32×32 at ×4."""
    side = max(1, 128 // scale)
    return side, side


def upscale(runner: ModelRunner, image: DecodedImage):
    """A decoded image upscaled by the runner's model, alpha re-attached: a Pillow image."""
    sr = runner.run(to_model_input(image.rgb))[0]
    return compose_output(sr_to_uint8(sr), image.alpha)
