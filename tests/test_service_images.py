"""Safe decoding (service.core.images): every kind of input gets its documented answer."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from service_helpers import face_like, png_bytes

from service.core.images import ImageInputError, ImageLimits, compose_output, decode_image, encode_image
from service.http.errors import IMAGE_STATUS


def fake_png_header(width: int, height: int) -> bytes:
    """A PNG that declares width×height but carries almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def refused(data: bytes, limits: ImageLimits | None = None) -> ImageInputError:
    with pytest.raises(ImageInputError) as caught:
        decode_image(data, limits)
    return caught.value


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_body"),
        (b"hello, this is text and not an image", 415, "unsupported_format"),
        (png_bytes(face_like(32, 32))[:60], 400, "corrupt_image"),
        (fake_png_header(50000, 50000), 413, "too_many_pixels"),
        (fake_png_header(600, 20), 413, "too_many_pixels"),
    ],
    ids=["empty", "text", "truncated-png", "bomb-header", "side-over-limit"],
)
def test_refused_inputs_get_their_documented_answer(data, status, code):
    error = refused(data)
    assert (IMAGE_STATUS[error.problem], error.code) == (status, code)
    assert error.reason


def test_byte_limit_is_413():
    error = refused(png_bytes(face_like(64, 64)), ImageLimits(max_bytes=100))
    assert (IMAGE_STATUS[error.problem], error.code) == (413, "too_large")


def test_animated_gif_is_refused_with_415():
    frames = [Image.fromarray(face_like(16, 16, seed=s)).convert("P") for s in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    error = refused(buffer.getvalue())
    assert (IMAGE_STATUS[error.problem], error.code) == (415, "animated_image")


def test_one_pixel_image_is_accepted():
    image = decode_image(png_bytes(np.array([[[200, 100, 50]]], dtype=np.uint8)))
    assert image.size == (1, 1)
    np.testing.assert_allclose(image.rgb[0, 0], np.array([200, 100, 50]) / 255, atol=1e-6)


def test_cmyk_jpeg_becomes_rgb():
    rgb = face_like(16, 16)
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buffer, format="JPEG", quality=100)
    image = decode_image(buffer.getvalue())
    assert image.source_mode == "CMYK" and image.rgb.shape == (16, 16, 3) and image.alpha is None
    assert np.abs(image.rgb * 255 - rgb).mean() < 8


def test_sixteen_bit_grayscale_keeps_its_precision():
    gray16 = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257 + 3).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(gray16).save(buffer, format="PNG")
    image = decode_image(buffer.getvalue())
    assert image.rgb.shape == (16, 16, 3)
    np.testing.assert_allclose(image.rgb[:, :, 1], gray16 / 65535.0, atol=1e-6)


def test_rgba_keeps_alpha_and_output_has_it_upscaled():
    rgba = face_like(16, 16, channels=4)
    rgba[:, :8, 3] = 0
    rgba[:, 8:, 3] = 255
    image = decode_image(png_bytes(rgba))
    assert image.alpha is not None and image.alpha.shape == (16, 16)
    output = compose_output(np.zeros((128, 128, 3), dtype=np.uint8), image.alpha)
    assert output.mode == "RGBA" and output.size == (128, 128)
    alpha = np.asarray(output.getchannel("A"))
    assert alpha[:, :56].max() == 0 and alpha[:, 72:].min() > 0
    assert Image.open(io.BytesIO(encode_image(output, "png"))).mode == "RGBA"
    assert Image.open(io.BytesIO(encode_image(output, "jpeg"))).mode == "RGB"  # flattened on white


def test_palette_gif_with_transparency_gets_alpha():
    palette = Image.fromarray(face_like(16, 16)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buffer = io.BytesIO()
    palette.save(buffer, format="GIF", transparency=0)
    image = decode_image(buffer.getvalue())
    assert image.source_format == "GIF" and image.rgb.shape == (16, 16, 3)
    assert image.alpha is not None and image.alpha.min() == 0.0


def test_exif_orientation_is_applied():
    array = face_like(8, 16)  # landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", exif=exif.tobytes())
    image = decode_image(buffer.getvalue())
    assert image.size == (8, 16)  # portrait after orientation


def test_tiff_is_an_unsupported_format():
    buffer = io.BytesIO()
    Image.fromarray(face_like(8, 8)).save(buffer, format="TIFF")
    error = refused(buffer.getvalue())
    assert (IMAGE_STATUS[error.problem], error.code) == (415, "unsupported_format")


def damaged_headers() -> dict[str, bytes]:
    """Files that start like an accepted format but whose header is broken (found by probing the API)."""
    good = png_bytes(face_like(16, 16))

    def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) if crc is None else crc)

    signature = b"\x89PNG\r\n\x1a\n"
    jpeg = io.BytesIO()
    Image.fromarray(face_like(16, 16)).save(jpeg, format="JPEG")
    jpeg = bytearray(jpeg.getvalue())
    tables = jpeg.find(b"\xff\xc4")
    jpeg[tables + 4 : tables + 40] = b"\xff" * 36
    return {
        "png with a bad IHDR CRC": signature + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0), crc=1) + good[33:],
        "png of only the signature": signature,
        "png of width 0": signature + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 16, 8, 2, 0, 0, 0)) + good[33:],
        "jpeg with damaged tables": bytes(jpeg),
        "40-byte gif": b"GIF89a\x10\x00\x10\x00\x80\x00\x00" + b"\x00" * 27,
    }


@pytest.mark.parametrize("name", list(damaged_headers()))
def test_a_damaged_header_of_an_accepted_format_is_400_corrupt_image(name):
    with pytest.raises(ImageInputError) as caught:
        decode_image(damaged_headers()[name])
    assert (IMAGE_STATUS[caught.value.problem], caught.value.code) == (400, "corrupt_image")


def test_a_file_of_another_kind_is_still_415():
    with pytest.raises(ImageInputError) as caught:
        decode_image(b"%PDF-1.7\n" + b"\0" * 64)
    assert (IMAGE_STATUS[caught.value.problem], caught.value.code) == (415, "unsupported_format")
