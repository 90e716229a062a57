"""Generated face-like test images (no research data in the tests)."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def synthetic_face(side: int = 128, hue_shift: int = 0) -> Image.Image:
    """A simple cartoon face drawn with Pillow: background, hair, skin, eyes, brows, nose, mouth."""
    image = Image.new("RGB", (128, 128), (70 + hue_shift, 110, 150))
    draw = ImageDraw.Draw(image)
    draw.ellipse((22, 8, 106, 100), fill=(60, 40, 30))  # hair
    draw.ellipse((30, 22, 98, 118), fill=(224, 172, 140))  # face
    draw.rectangle((30, 18, 98, 40), fill=(60, 40, 30))  # fringe
    for x in (44, 72):
        draw.line((x - 2, 50, x + 12, 48), fill=(50, 35, 25), width=3)  # brows
        draw.ellipse((x, 56, x + 12, 64), fill=(250, 250, 250))  # eye whites
        draw.ellipse((x + 4, 57, x + 9, 63), fill=(40, 60, 90))  # irises
    draw.polygon([(64, 64), (58, 84), (68, 84)], fill=(200, 145, 118))  # nose
    draw.chord((50, 88, 78, 104), 0, 180, fill=(170, 60, 70))  # mouth
    if side != 128:
        image = image.resize((side, side), Image.Resampling.BICUBIC)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
