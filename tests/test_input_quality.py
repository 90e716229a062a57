"""What `model=auto` reads from an upload: JPEG quality from the file's tables, noise from pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from portraitsr.manifest import ModelVariant
from service.core.input_quality import AutoRule, ModelUnavailable, jpeg_quality, noise_sigma, pick_variant
from training.data.synthetic import synthetic_face


def encoded(image: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def face(side: int = 32) -> np.ndarray:
    return np.asarray(synthetic_face().resize((side, side), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("quality", [10, 30, 50, 70, 75, 80, 90, 95, 100])
def test_jpeg_quality_is_read_back_from_the_quantisation_tables(quality):
    assert jpeg_quality(encoded(face(), "JPEG", quality=quality)) == quality


def test_files_without_jpeg_tables_have_no_quality():
    assert jpeg_quality(encoded(face(), "PNG")) is None
    assert jpeg_quality(encoded(face(), "WEBP", quality=50)) is None
    assert jpeg_quality(b"not an image") is None


@pytest.mark.parametrize("sigma", [3.0, 8.0, 15.0])
def test_noise_sigma_reads_additive_gaussian_noise(sigma):
    flat = np.full((64, 64, 3), 120.0)
    noisy = np.clip(flat + np.random.default_rng(0).normal(0, sigma, (64, 64, 1)), 0, 255).astype(np.uint8)
    assert noise_sigma(noisy) == pytest.approx(sigma, rel=0.2)
    assert noise_sigma(flat.astype(np.uint8)) == 0.0


def test_noise_sigma_of_a_smooth_ramp_is_zero():
    ramp = np.tile(np.linspace(0, 255, 64), (64, 1))[..., None].repeat(3, axis=2).astype(np.uint8)
    assert noise_sigma(ramp) < 0.5


def test_auto_sends_a_clean_png_to_clean_and_a_jpeg_or_noisy_face_to_real():
    rule = AutoRule()
    image = face()
    assert rule.choose(encoded(image, "PNG"), image, scale=4) is ModelVariant.CLEAN
    for quality in (30, 50, 70, 80):
        jpeg = encoded(image, "JPEG", quality=quality)
        assert rule.choose(jpeg, image, scale=4) is ModelVariant.REAL
    noisy = np.clip(image + np.random.default_rng(1).normal(0, 15, image.shape), 0, 255).astype(np.uint8)
    assert rule.choose(encoded(noisy, "PNG"), noisy, scale=4) is ModelVariant.REAL
    assert AutoRule(jpeg_quality_max=60).choose(encoded(image, "JPEG", quality=80), image, 4) is ModelVariant.CLEAN


def test_pick_variant_resolves_a_choice_against_the_models_there_are():
    image = face()
    png, jpeg = encoded(image, "PNG"), encoded(image, "JPEG", quality=60)
    both = {ModelVariant.CLEAN, ModelVariant.REAL}
    assert pick_variant("auto", 4, both, png, image) is ModelVariant.CLEAN
    assert pick_variant("auto", 4, both, jpeg, image / 255.0) is ModelVariant.REAL  # float pixels in [0, 1] too
    assert pick_variant("auto", 4, {ModelVariant.CLEAN}, jpeg, image) is ModelVariant.CLEAN  # no real model yet
    assert pick_variant("real", 4, both, png, image) is ModelVariant.REAL
    assert pick_variant("real", 4, set(), png, image) is ModelVariant.REAL  # not known: the worker decides
    assert pick_variant("auto", 4, set(), jpeg, image) is ModelVariant.CLEAN  # not known: the model every release has
    with pytest.raises(ModelUnavailable, match=r"no real model at ×8 \(the models at ×8: clean\)"):
        pick_variant("real", 8, {ModelVariant.CLEAN}, png, image)
