"""A side-by-side strip for ``portraitsr upscale --compare``: input, bicubic, PortraitSR.

The same three views as the web page: the input enlarged with nearest neighbour (its real
pixels), Pillow's bicubic (the evaluation protocol's baseline) and the model's output, each at the
output size, with a small label above each panel.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

MARGIN = 8  # pixels around and between the panels
# ASCII only in labels: Pillow's built-in font lacks "×" and "…".
LABEL_HEIGHT = 18  # the band above the panels that holds the labels
BACKGROUND = (255, 255, 255)
INK = (29, 35, 43)


@dataclass(frozen=True)
class StripLayout:
    panel_width: int
    panel_height: int

    @property
    def size(self) -> tuple[int, int]:
        return 3 * self.panel_width + 4 * MARGIN, self.panel_height + LABEL_HEIGHT + 2 * MARGIN

    def panel_origin(self, index: int) -> tuple[int, int]:
        """Top-left corner of panel 0 (input), 1 (bicubic) or 2 (PortraitSR)."""
        return MARGIN + index * (self.panel_width + MARGIN), MARGIN + LABEL_HEIGHT


def _label_font(size: int = 12) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's built-in scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _fit_label(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """The label, shortened with an ellipsis when the panel is narrower than the text."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _flatten(image: Image.Image) -> Image.Image:
    """RGB on white: the strip has no transparency."""
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, BACKGROUND)
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def compare_strip(
    source: Image.Image, upscaled: Image.Image, scale: int, zoom: int = 1, model_label: str = "PortraitSR"
) -> Image.Image:
    """The strip for one input and its upscaled version (``upscaled.size`` = ``scale`` × ``source.size``).

    ``zoom`` > 1 enlarges every panel by that factor with nearest neighbour, so that the pixels of
    small outputs stay visible when the strip is shown (e.g. in the README).
    """
    source = _flatten(source)
    upscaled = _flatten(upscaled)
    width, height = upscaled.size
    nearest = source.resize((width, height), Image.Resampling.NEAREST)
    bicubic = source.resize((width, height), Image.Resampling.BICUBIC)
    if zoom > 1:
        width, height = width * zoom, height * zoom
        nearest, bicubic, upscaled = (
            panel.resize((width, height), Image.Resampling.NEAREST) for panel in (nearest, bicubic, upscaled)
        )

    layout = StripLayout(width, height)
    strip = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(strip)
    font = _label_font()
    labels = (f"Input x{scale} (nearest)", "Bicubic", f"{model_label} x{scale}")
    for index, (panel, label) in enumerate(zip((nearest, bicubic, upscaled), labels, strict=True)):
        x, y = layout.panel_origin(index)
        strip.paste(panel, (x, y))
        draw.text((x, MARGIN + LABEL_HEIGHT // 2), _fit_label(draw, label, font, width), fill=INK, font=font, anchor="lm")
    return strip
