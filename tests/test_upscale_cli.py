"""`portraitsr upscale`: files and folders through the released-model contract, in-process.

The model is the contract-compliant fixture from ``service_helpers`` (no trained weights needed);
the command runs as a real subprocess so exit status and messages are what a user sees.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_helpers import REPO, build_fixture_release, png_bytes

from portraitsr.manifest import load_manifest
from portraitsr.runtimes import REFERENCE
from service.core.images import compose_output, decode_image, sr_to_uint8, to_model_input
from service.core.inference import ModelRunner
from service.files.compare_strip import StripLayout
from training.data.synthetic import synthetic_face


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return build_fixture_release(tmp_path_factory.mktemp("release"))


def run_upscale(*args: str | Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "portraitsr.cli", "upscale", *map(str, args), "--no-progress", "--threads", "1",
               "--runtime", "onnxruntime"]  # the reference runtime: outputs are compared with it
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def reference_output(manifest: Path, scale: int, image_path: Path) -> np.ndarray:
    """The fixture model run on one image alone, as uint8 H×W×3."""
    spec = next(spec for spec in load_manifest(manifest) if spec.scale == scale)
    decoded = decode_image(image_path.read_bytes())
    sr = ModelRunner(spec, REFERENCE.with_threads(1)).run(to_model_input(decoded.rgb))[0]
    return np.asarray(compose_output(sr_to_uint8(sr), decoded.alpha))


def test_folder_with_broken_and_too_large_files_writes_the_good_one_and_fails(manifest, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "face.png").write_bytes(png_bytes(synthetic_face(16)))
    good = png_bytes(synthetic_face(16, hue_shift=40))
    (inputs / "broken.png").write_bytes(good[: len(good) // 2])  # a truncated PNG
    (inputs / "large.png").write_bytes(png_bytes(synthetic_face(80)))  # ×8 would be 640 px: over 512
    output = tmp_path / "out"

    result = run_upscale(inputs, "-o", output, "--scale", "8", "--manifest", manifest)

    assert result.returncode == 1, result.stderr
    assert sorted(path.name for path in output.iterdir()) == ["face.png"]
    with Image.open(output / "face.png") as written:
        assert written.size == (128, 128)
        assert np.array_equal(np.asarray(written.convert("RGB")), reference_output(manifest, 8, inputs / "face.png"))
    assert "broken.png" in result.stderr
    assert "large.png" in result.stderr and "80×80" in result.stderr
    assert "2 input(s) failed" in result.stderr


def test_same_size_inputs_are_batched_with_the_same_results_as_alone(manifest, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    sizes = {"a.png": 32, "b.png": 32, "c.png": 32, "d.png": 24}
    for index, (name, side) in enumerate(sizes.items()):
        (inputs / name).write_bytes(png_bytes(synthetic_face(side, hue_shift=20 * index)))
    output = tmp_path / "out"

    result = run_upscale(inputs, "-o", output, "--scale", "4", "--manifest", manifest, "--batch-size", "2")

    assert result.returncode == 0, result.stderr
    for name, side in sizes.items():
        with Image.open(output / name) as written:
            assert written.size == (4 * side, 4 * side)
            assert np.array_equal(np.asarray(written.convert("RGB")), reference_output(manifest, 4, inputs / name))


@pytest.mark.parametrize("zoom", [1, 2])
def test_compare_strip_shows_nearest_bicubic_and_model_output(manifest, tmp_path, zoom):
    face = tmp_path / "face.png"
    face.write_bytes(png_bytes(synthetic_face(16)))
    output = tmp_path / "out"

    result = run_upscale(
        face, "-o", output, "--scale", "8", "--format", "webp", "--compare", "--compare-zoom", str(zoom), "--manifest", manifest
    )

    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in output.iterdir()) == ["face.webp", "face_compare.png"]
    side = 128 * zoom
    layout = StripLayout(side, side)
    with Image.open(output / "face_compare.png") as strip:
        strip = strip.convert("RGB")
    assert strip.size == layout.size
    assert strip.size[0] >= 3 * side and strip.size[1] >= side

    def panel(index: int) -> np.ndarray:
        x, y = layout.panel_origin(index)
        return np.asarray(strip.crop((x, y, x + side, y + side)))

    def zoomed(image: Image.Image) -> np.ndarray:
        return np.asarray(image.resize((side, side), Image.Resampling.NEAREST))

    with Image.open(face) as source:
        source = source.convert("RGB")
        assert np.array_equal(panel(0), zoomed(source.resize((128, 128), Image.Resampling.NEAREST)))
        assert np.array_equal(panel(1), zoomed(source.resize((128, 128), Image.Resampling.BICUBIC)))
    assert np.array_equal(panel(2), zoomed(Image.fromarray(reference_output(manifest, 8, face))))
    # The labels sit above the panels: the band is not blank.
    assert np.asarray(strip.crop((0, 0, strip.size[0], layout.panel_origin(0)[1]))).min() < 128


def test_missing_scale_in_the_manifest_is_a_usage_error(tmp_path):
    manifest = build_fixture_release(tmp_path / "release", scales=(4,))
    face = tmp_path / "face.png"
    face.write_bytes(png_bytes(synthetic_face(16)))

    result = run_upscale(face, "-o", tmp_path / "out", "--scale", "8", "--manifest", manifest)

    assert result.returncode == 2
    assert "no ×8 model" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["--batch-size", "--compare-zoom", "--max-output-side"])
def test_a_flag_below_one_is_a_usage_error_that_names_it(manifest, tmp_path, flag):
    face = tmp_path / "face.png"
    face.write_bytes(png_bytes(synthetic_face(16)))

    result = run_upscale(face, "-o", tmp_path / "out", "--manifest", manifest, flag, "0")

    assert result.returncode == 2
    assert flag in result.stderr and "must be at least 1" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def both_variants(tmp_path_factory) -> Path:
    return build_fixture_release(tmp_path_factory.mktemp("release-both"), variants=("clean", "real"))


def variant_output(manifest: Path, scale: int, variant: str, image_path: Path) -> np.ndarray:
    spec = next(spec for spec in load_manifest(manifest) if (spec.scale, spec.variant) == (scale, variant))
    decoded = decode_image(image_path.read_bytes())
    sr = ModelRunner(spec, REFERENCE.with_threads(1)).run(to_model_input(decoded.rgb))[0]
    return np.asarray(compose_output(sr_to_uint8(sr), decoded.alpha))


def written(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_model_auto_picks_per_file_and_clean_or_real_apply_to_every_file(both_variants, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "clean.png").write_bytes(png_bytes(synthetic_face(32)))
    (inputs / "phone.jpg").write_bytes(png_bytes(synthetic_face(32), format="JPEG", quality=70))

    result = run_upscale(inputs, "-o", tmp_path / "auto", "--scale", "4", "--manifest", both_variants, "--format", "png")
    assert result.returncode == 0, result.stderr
    assert "fixture-x4, fixture-real-x4" in result.stdout
    for name, variant in (("clean", "clean"), ("phone", "real")):
        suffix = ".png" if name == "clean" else ".jpg"
        expected = variant_output(both_variants, 4, variant, inputs / f"{name}{suffix}")
        assert np.array_equal(written(tmp_path / "auto" / f"{name}.png"), expected), name

    for variant in ("clean", "real"):
        result = run_upscale(inputs / "phone.jpg", "-o", tmp_path / variant, "--scale", "4", "--manifest", both_variants,
                             "--format", "png", "--model", variant)
        assert result.returncode == 0, result.stderr
        expected = variant_output(both_variants, 4, variant, inputs / "phone.jpg")
        assert np.array_equal(written(tmp_path / variant / "phone.png"), expected), variant


def test_model_real_without_a_real_model_is_a_usage_error(manifest, tmp_path):
    face = tmp_path / "face.jpg"
    face.write_bytes(png_bytes(synthetic_face(32), format="JPEG", quality=70))

    result = run_upscale(face, "-o", tmp_path / "out", "--scale", "4", "--manifest", manifest, "--model", "real")
    assert result.returncode == 2
    assert "has no real model at ×4 (it has: clean)" in result.stderr
    assert not (tmp_path / "out").exists()
    result = run_upscale(face, "-o", tmp_path / "out", "--scale", "4", "--manifest", manifest, "--format", "png")
    assert result.returncode == 0, result.stderr  # auto: the clean model, the only one there is
    assert np.array_equal(written(tmp_path / "out" / "face.png"), reference_output(manifest, 4, face))
