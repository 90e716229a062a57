"""The runtime choice (portraitsr.runtimes): which runtime `auto` picks, parity with ONNX Runtime fp32
on real faces (shipped models, repository faces), and refusals when a runtime is not installed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from service_helpers import REPO

from portraitsr.manifest import load_manifest
from portraitsr.runtimes import (
    FP32_CPU_RUNTIME,
    REFERENCE,
    RuntimeRequest,
    RuntimeUnavailable,
    choose_runtime,
    cpu_flags,
)
from service.faces.detector import FaceDetector
from training.runtime_parity import BF16_MIN_PSNR_DB, FP32_TOLERANCE, check_runtimes

SHIPPED = load_manifest(REPO / "model" / "release" / "manifest.json")
BF16_FLAGS = frozenset({"avx512f", "avx512_bf16"})
BF16_HERE = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def pick(request: RuntimeRequest, flags=frozenset(), cuda=False) -> tuple[str, str, str]:
    choice = choose_runtime(request, flags=flags, cuda=cuda)
    return choice.runtime, choice.device, choice.precision


def test_auto_picks_cuda_then_openvino_bf16_then_the_faster_fp32_runtime():
    assert pick(RuntimeRequest(), BF16_FLAGS, cuda=True) == ("onnxruntime", "cuda", "fp32")
    assert pick(RuntimeRequest(), BF16_FLAGS) == ("openvino", "cpu", "bf16")
    assert pick(RuntimeRequest(), frozenset({"amx_bf16", "amx_tile"})) == ("openvino", "cpu", "bf16")
    assert pick(RuntimeRequest(), frozenset({"avx2"})) == (FP32_CPU_RUNTIME, "cpu", "fp32")
    # Settings narrow the choice: the CPU only, fp32 only, or one runtime.
    assert pick(RuntimeRequest(device="cpu"), BF16_FLAGS, cuda=True) == ("openvino", "cpu", "bf16")
    assert pick(RuntimeRequest(precision="fp32"), BF16_FLAGS) == (FP32_CPU_RUNTIME, "cpu", "fp32")
    assert pick(RuntimeRequest("onnxruntime"), BF16_FLAGS) == ("onnxruntime", "cpu", "fp32")
    assert pick(RuntimeRequest("openvino"), frozenset({"avx2"})) == ("openvino", "cpu", "fp32")


def test_what_cannot_be_had_is_said():
    choice = choose_runtime(RuntimeRequest("openvino", "bf16"), flags=frozenset({"avx2"}), cuda=False)
    assert choice.precision == "fp32" and "avx512_bf16" in choice.fallback_reason
    choice = choose_runtime(RuntimeRequest(device="cuda"), flags=BF16_FLAGS, cuda=False)
    assert choice.device == "cpu" and "CUDA" in choice.fallback_reason
    with pytest.raises(RuntimeUnavailable, match="fp32 only"):
        choose_runtime(RuntimeRequest("onnxruntime", "bf16"))
    with pytest.raises(RuntimeUnavailable, match="runs on the CPU"):
        choose_runtime(RuntimeRequest("openvino", device="cuda"))


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda spec: spec.name)
def test_openvino_matches_onnxruntime_on_real_faces(spec):
    result = check_runtimes(spec.onnx_path, spec.scale, threads=2)
    rows = {(row["runtime"], row["precision"]): row for row in result["runtimes"] if row["device"] == "cpu"}
    assert len(result["faces"]) == 4
    fp32 = rows["openvino", "fp32"]
    assert fp32["checked"] and fp32["max_abs_diff"] <= FP32_TOLERANCE
    bf16 = rows["openvino", "bf16"]
    if not BF16_HERE:
        assert not bf16["checked"] and "avx512_bf16" in bf16["reason"]
        return
    # bf16 moves single pixels by a few levels (not held per pixel), not the picture, nor its quality.
    assert bf16["checked"] and bf16["max_abs_diff"] > FP32_TOLERANCE
    assert bf16["min_psnr_y_vs_reference"] >= BF16_MIN_PSNR_DB
    assert bf16["psnr_y_delta"] >= -0.05  # dB against the HR faces (Helen-50: −0.017 at ×8)


@pytest.mark.parametrize("picture", ["astronaut-photo-128.png", "hopper-face-128.png", "astronaut-face-128.png"])
def test_the_face_detector_finds_the_same_faces_on_the_default_runtime(picture):
    rgb = np.asarray(Image.open(REPO / "docs" / "images" / picture).convert("RGB"))
    expected = FaceDetector(runtime=REFERENCE.with_threads(1)).detect(rgb)
    found = FaceDetector().detect(rgb)
    assert len(found) == len(expected) == 1
    # Within a tenth of the inter-ocular distance (bf16 moves them by up to 0.07 on these faces).
    assert np.abs(found[0].landmarks - expected[0].landmarks).max() <= 0.1 * expected[0].inter_ocular
    assert abs(found[0].score - expected[0].score) < 1e-3


def run_without(package: str, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`portraitsr ARGV` in a Python where ``package`` cannot be imported: ``sys.modules[name] = None``
    is Python's own marker for that (import raises ModuleNotFoundError, importlib.util.find_spec
    returns None), as for a package that is not installed."""
    code = (f"import runpy, sys; sys.modules[{package!r}] = None; sys.argv = ['portraitsr', *{list(argv)!r}]; "
            "runpy.run_module('portraitsr', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=env)


def clean_env(**settings: str) -> dict[str, str]:
    import os

    env = {key: value for key, value in os.environ.items() if not key.startswith("PORTRAITSR_")}
    return env | {f"PORTRAITSR_{key.upper()}": value for key, value in settings.items()}


@pytest.mark.parametrize("package", ["openvino", "onnxruntime"])
def test_a_runtime_named_and_not_installed_is_refused_by_the_service(package):
    result = run_without(package, "worker", env=clean_env(runtime=package))
    assert result.returncode != 0
    assert f"'{package}' package is not installed" in result.stderr and "PORTRAITSR_RUNTIME" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_runtime_named_and_not_installed_is_refused_by_upscale(tmp_path):
    face = tmp_path / "face.png"
    Image.open(REPO / "docs" / "images" / "astronaut-face-16.png").save(face)
    result = run_without("openvino", "upscale", str(face), "-o", str(tmp_path / "out"), "--runtime", "openvino")
    assert result.returncode == 2 and "'openvino' package is not installed" in result.stderr
    assert not (tmp_path / "out" / "face.png").exists()


@pytest.mark.parametrize(("missing", "runs"), [("openvino", "onnxruntime"), ("onnxruntime", "openvino")])
def test_auto_runs_on_whichever_runtime_is_installed(tmp_path, missing, runs):
    face = tmp_path / "face.png"
    Image.open(REPO / "docs" / "images" / "astronaut-face-16.png").save(face)
    result = run_without(missing, "upscale", str(face), "-o", str(tmp_path / "out"), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "portraitsr-small-x8" in result.stdout and f", {runs} " in result.stdout
    assert Image.open(tmp_path / "out" / "face.png").size == (128, 128)


def test_the_manifest_records_the_runtime_parity_of_the_shipped_models():
    document = json.loads((REPO / "model" / "release" / "manifest.json").read_text())
    for entry in document["models"]:
        parity = entry["runtime_parity"]
        assert parity["reference"]["runtime"] == "onnxruntime" and len(parity["faces"]) == 4
        recorded = {(row["runtime"], row["device"], row["precision"]): row for row in parity["runtimes"]}
        assert set(recorded) == {("onnxruntime", "cuda", "fp32"), ("openvino", "cpu", "fp32"), ("openvino", "cpu", "bf16")}
        assert all(row["passed"] for row in recorded.values() if row["checked"])


def test_a_model_a_runtime_cannot_run_is_refused_not_recorded(tmp_path):
    """The flip ensemble's graph (model/export.py) is one OpenVINO 2026.4 cannot convert: the export's
    parity check must refuse it (a failed row with the error), never pass it or crash without saying."""
    import torch

    from model.config import load_model_config
    from model.export import export_onnx
    from model.network import PortraitSR
    from training.runtime_parity import RuntimeParityError

    torch.manual_seed(0)
    onnx_path = export_onnx(PortraitSR(load_model_config("tiny-x4")).eval(), tmp_path / "flip.onnx", flip_ensemble=True)
    try:
        result = check_runtimes(onnx_path, 4, threads=1)
    except RuntimeParityError as error:
        assert "'error': " in str(error) and "openvino" in str(error)
        return
    assert all(row["passed"] for row in result["runtimes"] if row["checked"])  # a later OpenVINO reads it
