"""The release contract (portraitsr.release): `evaluate` scores exactly the pixels the service serves."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from service_helpers import REPO, build_fixture_release, face_like, png_bytes

from portraitsr.manifest import load_manifest
from portraitsr.release import ReleaseModel, pad_to_multiple, to_model_input, to_uint8
from portraitsr.runtimes import REFERENCE
from service.core.images import decode_image
from service.core.inference import ModelRunner, upscale
from training.data.degrade import bicubic_downsample
from training.evaluation import OnnxUpscaler, evaluate_images
from training.metrics import psnr_y, ssim_y

SCALE = 4  # the ×4 model takes inputs in multiples of 2: odd sizes are padded


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    (spec,) = load_manifest(build_fixture_release(tmp_path_factory.mktemp("release"), scales=(SCALE,)))
    return spec


def served_pixels(spec, lr: np.ndarray) -> np.ndarray:
    """What the service answers for a PNG of ``lr``: decode, run, round (service.core.inference.upscale)."""
    runner = ModelRunner(spec, REFERENCE.with_threads(1))
    return np.asarray(upscale(runner, decode_image(png_bytes(lr))))


def test_evaluate_scores_the_pixels_the_service_serves_on_an_odd_size(spec):
    hr = face_like(13 * SCALE, 11 * SCALE, seed=3)
    lr = bicubic_downsample(hr, SCALE)
    assert lr.shape == (13, 11, 3)
    served = served_pixels(spec, lr)

    result = evaluate_images([("odd", hr)], "odd-size", SCALE, OnnxUpscaler(spec.onnx_path, SCALE))
    row = result["images"][0]["model"]
    assert row["psnr_y"] == psnr_y(served, hr) and row["ssim_y"] == ssim_y(served, hr)
    np.testing.assert_array_equal(OnnxUpscaler(spec.onnx_path, SCALE)(lr[None])[0], served)
    # The padding decides pixels for this model: unpadded, the border would differ.
    unpadded = ReleaseModel(spec.onnx_path, SCALE, input_multiple=1).upscale_uint8(lr[None])[0]
    assert unpadded.shape == served.shape and (unpadded != served).any()


def test_inputs_are_edge_padded_and_outputs_cropped(spec):
    lr = np.arange(2 * 3 * 5 * 3, dtype=np.float32).reshape(2, 3, 5, 3)
    padded = pad_to_multiple(lr, 4)
    assert padded.shape == (2, 3, 8, 4)
    np.testing.assert_array_equal(padded[:, :, :5, :3], lr)
    np.testing.assert_array_equal(padded[:, :, 7, :3], lr[:, :, 4, :])  # the last row repeated
    np.testing.assert_array_equal(padded[:, :, :5, 3], lr[:, :, :, 2])
    assert pad_to_multiple(lr, 1) is lr
    assert ReleaseModel(spec.onnx_path, SCALE).run(to_model_input(face_like(7, 5))).shape == (1, 3, 28, 20)


def test_model_input_and_rounding_follow_the_contract():
    images = np.array([[[[0, 128, 255]]]], dtype=np.uint8)  # 1×1×1×3
    lr = to_model_input(images)
    assert lr.dtype == np.float32 and lr.shape == (1, 3, 1, 1)
    np.testing.assert_array_equal(lr.ravel(), np.array([0, 128, 255], dtype=np.float32) / np.float32(255))
    np.testing.assert_array_equal(to_model_input(images[0]), lr)  # one H×W×3 image is a batch of one
    # Rounded half to even, clipped; layout back to N×H×W×3 (or H×W×3 for one image).
    sr = np.array([0.5 / 255, 1.5 / 255, 2.5 / 255, -0.2, 1.3, 0.4], dtype=np.float64).reshape(1, 3, 1, 2)
    assert to_uint8(sr).shape == (1, 1, 2, 3)
    assert to_uint8(sr).transpose(0, 3, 1, 2).ravel().tolist() == [0, 2, 2, 0, 255, 102]
    assert to_uint8(sr[0]).shape == (1, 2, 3)


def test_wrong_input_or_output_names_are_refused_when_the_model_opens(spec):
    with pytest.raises(ValueError, match="expected input 'image'"):
        ReleaseModel(spec.onnx_path, SCALE, input_name="image")


def test_the_release_module_and_the_service_import_no_torch_and_no_training():
    modules = ["portraitsr.release", "service.http.app", "service.queue.worker", "service.supervisor", "service.files.upscale",
               "service.commands.serve", "service.commands.upscale"]  # fmt: skip
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    loaded = set(json.loads(result.stdout))
    assert "service" in loaded and not loaded & {"torch", "training", "model"}
