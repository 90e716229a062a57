"""The released models as the service runs them: one :class:`ModelRunner` per manifest entry.

Sessions and the runtime choice (ONNX Runtime or OpenVINO, fp32 or bf16, CUDA when asked for and
there; anything asked for and not had reported in ``fallback_reason``) are
:mod:`portraitsr.runtimes`'; padding and rounding are the release contract's, in
:mod:`portraitsr.release`; this adds the manifest entry and warm-up.
"""

from __future__ import annotations

import time

import numpy as np

from portraitsr.manifest import ModelSpec, ModelVariant
from portraitsr.release import ReleaseModel
from portraitsr.runtimes import REFERENCE, RuntimeRequest
from service.core.images import DecodedImage, compose_output, sr_to_uint8, to_model_input


class ModelRunner(ReleaseModel):
    """The release model of one manifest entry, with warm-up: ``run(lr)`` maps N×3×h×w to N×3×(s·h)×(s·w)."""

    def __init__(self, spec: ModelSpec, runtime: RuntimeRequest = REFERENCE):
        super().__init__(
            spec.onnx_path,
            spec.scale,
            input_name=spec.input_name,
            output_name=spec.output_name,
            input_multiple=spec.extra.get("input_multiple"),
            runtime=runtime,
        )
        self.spec = spec
        self.warmed = False

    def warm_up(self, sizes: tuple[tuple[int, int], ...] = ((16, 16),), batch_sizes: tuple[int, ...] = (1,)) -> float:
        """Run the model once per (batch, size) so first requests do not pay for lazy init; seconds spent."""
        started = time.perf_counter()
        for batch in batch_sizes:
            for height, width in sizes:
                self.run(np.full((batch, 3, height, width), 0.5, dtype=np.float32))
        self.warmed = True
        return time.perf_counter() - started


ModelSlot = tuple[int, ModelVariant]  # (scale, variant): one model of the release


def load_runners(specs: list[ModelSpec], runtime: RuntimeRequest = REFERENCE) -> dict[ModelSlot, ModelRunner]:
    """One runner per manifest model, keyed by (scale, variant)."""
    return {(spec.scale, spec.variant): ModelRunner(spec, runtime) for spec in specs}


def default_warmup_size(scale: int) -> tuple[int, int]:
    """The input size the models are made for: 128×128 faces, so 16×16 at ×8 and 32×32 at ×4."""
    side = max(1, 128 // scale)
    return side, side


def upscale(runner: ModelRunner, image: DecodedImage):
    """A decoded image upscaled by the runner's model, alpha re-attached: a Pillow image."""
    sr = runner.run(to_model_input(image.rgb))[0]
    return compose_output(sr_to_uint8(sr), image.alpha)
