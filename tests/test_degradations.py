"""The degradation model (training/degradations): each operation's statistics, the kernels, the
random pipeline's determinism under a seed, and the fixed benchmark table."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from training.config import train_config_from_dict
from training.data.dataset import FaceDataset
from training.data.degrade import bicubic_downsample
from training.data.synthetic import synthetic_face, write_generated_cache
from training.degradations import operations as ops
from training.degradations.benchmark import BY_NAME, TABLE, degraded_held_out
from training.degradations.config import DegradationConfig
from training.degradations.kernels import KERNEL_KINDS, blur_kernel
from training.degradations.pipeline import degrade, random_kernel, validate_config
from training.sampling import SeededSamples

# ITU-T T.81 Annex K: the baseline luminance and chrominance tables (quality 50), row-major.
LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
        14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]  # fmt: skip
CHROMA = [17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5 + [47, 66] + [99] * 38


def ijg_table(base: list[int], quality: int) -> list[int]:
    """libjpeg's jpeg_quality_scaling + jpeg_add_quant_table (force_baseline)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(max((value * scale + 50) // 100, 1), 255) for value in base]


def face(seed: int = 0) -> np.ndarray:
    return np.asarray(synthetic_face(hue_shift=seed * 7), dtype=np.uint8)


@pytest.mark.parametrize("quality", [30, 50, 75, 95])
def test_jpeg_of_quality_q_carries_the_standard_tables_scaled_to_q(quality):
    decoded = Image.open(io.BytesIO(ops.jpeg_bytes(face(), quality)))
    assert list(decoded.quantization[0]) == ijg_table(LUMA, quality)
    assert list(decoded.quantization[1]) == ijg_table(CHROMA, quality)
    # And the round trip really is lossy, more so at lower quality.
    error = np.abs(ops.jpeg(face(), quality) - face().astype(np.float32)).mean()
    assert error > 0.3


def test_lower_jpeg_quality_loses_more():
    errors = [np.abs(ops.jpeg(face(), q) - face()).mean() for q in (95, 75, 50, 30)]
    assert errors == sorted(errors)


@pytest.mark.parametrize("sigma", [5.0, 15.0])
@pytest.mark.parametrize("gray", [False, True])
def test_gaussian_noise_has_the_asked_sigma(sigma, gray):
    flat = np.full((256, 256, 3), 128.0, dtype=np.float32)
    noise = ops.gaussian_noise(flat, sigma, gray, np.random.default_rng(1)) - flat
    assert abs(noise.std() - sigma) < 0.02 * sigma
    assert abs(noise.mean()) < 0.05 * sigma
    channels_equal = np.allclose(noise[..., 0], noise[..., 1]) and np.allclose(noise[..., 1], noise[..., 2])
    assert channels_equal == gray


def test_poisson_noise_grows_with_brightness_and_keeps_the_mean():
    # Two flat halves of an image with 256 levels: shot-noise variance ∝ brightness.
    image = np.zeros((256, 256, 3), dtype=np.float32)
    image[:128] = 50.0
    image[128:] = 200.0
    image[0, :256, 0] = np.arange(256)  # 256 distinct values: levels = 256
    noisy = ops.poisson_noise(image, 1.0, gray=False, rng=np.random.default_rng(2))
    dark, bright = (noisy - image)[8:128, :, 1], (noisy - image)[128:, :, 1]
    assert abs(dark.mean()) < 0.1 and abs(bright.mean()) < 0.1
    assert dark.var() == pytest.approx(50.0, rel=0.05)  # 255²·(I/255)/256 ≈ I for 256 levels
    assert bright.var() / dark.var() == pytest.approx(4.0, rel=0.08)


@pytest.mark.parametrize("kind", KERNEL_KINDS)
@pytest.mark.parametrize("anisotropic", [False, True])
def test_kernels_sum_to_one_and_are_symmetric(kind, anisotropic):
    kernel = blur_kernel(kind, 21, 2.0, 3.5 if anisotropic else None, theta=0.6, beta=1.5)
    assert kernel.dtype == np.float32 and kernel.shape == (21, 21)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(kernel, kernel[::-1, ::-1])  # point-symmetric: no shift of the image
    if not anisotropic:
        assert np.allclose(kernel, kernel.T)


def test_gaussian_kernel_has_the_asked_sigma_and_rotates():
    kernel = blur_kernel("gaussian", 41, 3.0).astype(np.float64)
    offsets = np.arange(-20, 21)
    assert (kernel.sum(axis=0) * offsets**2).sum() == pytest.approx(9.0, rel=1e-3)
    wide = blur_kernel("gaussian", 31, 4.0, 1.5, theta=0.0)
    assert np.allclose(blur_kernel("gaussian", 31, 4.0, 1.5, theta=np.pi / 2), wide.T, atol=1e-7)


def test_blur_keeps_a_flat_image_flat_and_resize_hits_the_size():
    flat = np.full((128, 128, 3), 77.0, dtype=np.float32)
    assert np.allclose(ops.blur(flat, blur_kernel("plateau", 15, 2.0, beta=1.2)), 77.0, atol=1e-3)
    for mode in ops.RESIZE_MODES:
        assert ops.resize(face(), (16, 20), mode).shape == (20, 16, 3)
    blocks = np.kron(np.arange(16, dtype=np.float32).reshape(4, 4), np.ones((2, 2)))[..., None].repeat(3, axis=2)
    assert np.allclose(ops.resize(blocks, (4, 4), "area")[..., 0], np.arange(16).reshape(4, 4))


def test_pipeline_is_deterministic_under_a_seed():
    config = DegradationConfig(enabled=True)
    hr = face(3)
    for scale in (4, 8):
        first = [degrade(hr, scale, config, np.random.default_rng(seed)) for seed in range(12)]
        again = [degrade(hr, scale, config, np.random.default_rng(seed)) for seed in range(12)]
        assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
        assert all(lr.shape == (128 // scale, 128 // scale, 3) and lr.dtype == np.uint8 for lr in first)
        assert len({lr.tobytes() for lr in first}) > 8  # different seeds, different inputs


def test_clean_share_gives_the_protocols_bicubic_and_none_never_does():
    hr = face(1)
    always_clean = DegradationConfig(enabled=True, clean_share=1.0)
    assert np.array_equal(degrade(hr, 4, always_clean, np.random.default_rng(0)), bicubic_downsample(hr, 4))
    never_clean = DegradationConfig(enabled=True, clean_share=0.0)
    outputs = [degrade(hr, 4, never_clean, np.random.default_rng(seed)) for seed in range(20)]
    assert sum(np.array_equal(lr, bicubic_downsample(hr, 4)) for lr in outputs) == 0


def test_random_kernels_stay_within_the_configured_size():
    config = DegradationConfig().blur
    rng = np.random.default_rng(5)
    for scale in (4, 8):
        for _ in range(50):
            kernel = random_kernel(config, scale, rng)
            assert kernel.shape[0] % 2 == 1 and kernel.shape[0] <= config.max_kernel_per_scale * scale + 1
            assert kernel.sum() == pytest.approx(1.0, abs=1e-5)


def test_config_is_read_from_yaml_and_bad_values_are_refused():
    config = train_config_from_dict(
        {"name": "x", "model": "tiny-x4", "data": {"degradation": {"enabled": True, "jpeg": {"quality": [40, 90]}}}}
    )
    assert config.data.degradation.enabled and config.data.degradation.jpeg.quality == (40, 90)
    with pytest.raises(ValueError, match="unknown keys"):
        train_config_from_dict({"name": "x", "model": "tiny-x4", "data": {"degradation": {"jpg": {}}}})
    with pytest.raises(ValueError, match="val_inputs"):
        train_config_from_dict({"name": "x", "model": "tiny-x4", "data": {"val_inputs": "helen"}})
    with pytest.raises(ValueError, match="blur.kinds"):
        validate_config(DegradationConfig(blur=DegradationConfig().blur.__class__(kinds={"box_iso": 1.0})))
    with pytest.raises(ValueError, match="jpeg.quality"):
        validate_config(DegradationConfig(jpeg=DegradationConfig().jpeg.__class__(quality=(0, 90))))


def test_face_dataset_degrades_each_sample_the_same_way_every_time(tmp_path):
    cache = write_generated_cache(tmp_path / "cache")
    config = DegradationConfig(enabled=True, clean_share=0.0)
    dataset = SeededSamples(FaceDataset(cache, "train", 8, augment=True, degradation=config))
    plain = FaceDataset(cache, "train", 8)
    first = [dataset[(index, 1000 + index)]["lr"] for index in range(4)]
    again = [dataset[(index, 1000 + index)]["lr"] for index in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[0].shape == (3, 16, 16)
    assert not torch.equal(first[0], dataset[(0, 7)]["lr"])
    assert not any(torch.equal(first[i], plain[i]["lr"]) for i in range(4))  # not the cache's bicubic


def test_benchmark_table_is_fixed_and_each_row_does_what_it_says():
    hr = face(2)
    assert [row.name for row in TABLE][:1] == ["clean"] and len(TABLE) == 12
    for row in TABLE:
        assert np.array_equal(row.apply(hr, 4, 3), row.apply(hr, 4, 3)), row.name
    assert np.array_equal(BY_NAME["clean"].apply(hr, 8), bicubic_downsample(hr, 8))
    clean = bicubic_downsample(hr, 4).astype(np.float32)
    noise = BY_NAME["noise10"].apply(hr, 4, 0).astype(np.float32) - clean
    assert 8.0 < noise.std() < 11.0  # σ 10, less what clipping at 0/255 removes
    assert np.abs(BY_NAME["jpeg30"].apply(hr, 4) - clean).mean() > np.abs(BY_NAME["jpeg90"].apply(hr, 4) - clean).mean()


def test_degraded_held_out_rotates_through_the_table():
    faces = np.stack([face(seed) for seed in range(14)])
    lr, names = degraded_held_out(faces, 4)
    assert lr.shape == (14, 32, 32, 3)
    assert names[:12] == [row.name for row in TABLE] and names[12:] == ["clean", "jpeg90"]
    assert np.array_equal(lr[0], bicubic_downsample(faces[0], 4))


def test_evaluate_on_benchmark_inputs_scores_each_face_through_its_row_of_the_table():
    from training.evaluation import bicubic_upscale, evaluate_images
    from training.metrics import psnr_y

    faces = [(f"face-{index}", face(index)) for index in range(len(TABLE) + 2)]
    result = evaluate_images(faces, "synthetic", 4, batch_size=5, inputs="benchmark")

    assert result["inputs"] == "benchmark"
    assert [row["input"] for row in result["images"]] == [TABLE[index % len(TABLE)].name for index in range(len(faces))]
    for index, ((_, hr), row) in enumerate(zip(faces, result["images"], strict=True)):
        degraded = TABLE[index % len(TABLE)].apply(hr, 4, index)
        assert row["bicubic"]["psnr_y"] == pytest.approx(psnr_y(bicubic_upscale(degraded, 4), hr))
    clean = evaluate_images(faces, "synthetic", 4, batch_size=5)
    assert clean["mean"]["bicubic"]["psnr_y"] > result["mean"]["bicubic"]["psnr_y"]  # the table only takes away
