"""The README's real-world picture: a JPEG face (quality 70) through bicubic, the clean model and
the real model, at ×4 and ×8 (docs/images/real-world-x4-x8.png), and the two JPEG inputs.

    .venv/bin/python scripts/make-real-world-picture.py [model/release/manifest.json]

The face is the README's astronaut crop (public domain, scripts/make-readme-pictures.sh), shrunk
with area averaging as a phone would and saved at JPEG quality 70: a JPEG as people send it, not
the evaluation protocol's bicubic PNG. Each model runs through ONNX Runtime from the shipped files.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from portraitsr.manifest import load_manifest
from portraitsr.release import ReleaseModel

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
QUALITY = 70
ZOOM = 2
MARGIN, LABEL = 8, 18


def jpeg_input(side: int) -> tuple[Path, np.ndarray]:
    face = Image.open(IMAGES / "astronaut-face-128.png").convert("RGB")
    small = face.resize((side, side), Image.Resampling.BOX)
    path = IMAGES / f"astronaut-face-{side}-q{QUALITY}.jpg"
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=QUALITY)
    path.write_bytes(buffer.getvalue())
    return path, np.asarray(Image.open(path).convert("RGB"))


def main() -> int:
    manifest = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "model" / "release" / "manifest.json"
    specs = {(spec.scale, str(spec.variant)): spec for spec in load_manifest(manifest)}
    font = ImageFont.load_default(size=12)
    rows = []
    for scale in (4, 8):
        path, lr = jpeg_input(128 // scale)
        panels = {
            f"JPEG q{QUALITY} input x{scale}": Image.fromarray(lr).resize((128, 128), Image.Resampling.NEAREST),
            "Bicubic": Image.fromarray(lr).resize((128, 128), Image.Resampling.BICUBIC),
        }
        for variant in ("clean", "real"):
            spec = specs[(scale, variant)]
            model = ReleaseModel(spec.onnx_path, scale, input_name=spec.input_name, output_name=spec.output_name)
            panels[f"{variant} model ({spec.name})"] = Image.fromarray(model.upscale_uint8(lr[None])[0])
        rows.append(panels)
        print(f"×{scale}: input {path.relative_to(ROOT)}")
    side = 128 * ZOOM
    width = 4 * side + 5 * MARGIN
    height = len(rows) * (side + LABEL + MARGIN) + MARGIN
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for row_index, panels in enumerate(rows):
        y = MARGIN + row_index * (side + LABEL + MARGIN)
        for column, (label, panel) in enumerate(panels.items()):
            x = MARGIN + column * (side + MARGIN)
            draw.text((x, y + LABEL // 2), label, fill=(29, 35, 43), font=font, anchor="lm")
            strip.paste(panel.resize((side, side), Image.Resampling.NEAREST), (x, y + LABEL))
    out = IMAGES / "real-world-x4-x8.png"
    strip.save(out, optimize=True)
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
