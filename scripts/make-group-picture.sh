#!/usr/bin/env bash
# docs/images/restore-group-x4.png: a two-person photo through the /restore pipeline (in-process,
# `portraitsr restore`) with the shipped x4 model. The people are two public-domain portraits that
# ship inside Python wheels, fetched with `pip download` (nothing is installed): NASA's portrait of
# astronaut Eileen Collins (scikit-image's sample data) and the US Navy's portrait of Grace Hopper
# (matplotlib's sample data). They are set side by side at different sizes on a plain backdrop,
# and the picture is shrunk x4 (Pillow bicubic), which leaves 11 and 19 px between the eyes: one
# face at the model's own size, one larger (restored in a frame of its own size).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python=".venv/bin/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --no-deps --quiet --dest "$work" "scikit-image==0.26.0" "matplotlib==3.10.0"
"$python" - "$work" <<'PY'
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

work = Path(sys.argv[1])


def from_wheel(pattern: str, member: str) -> Image.Image:
    with zipfile.ZipFile(next(work.glob(pattern))) as archive, archive.open(member) as handle:
        return Image.open(handle).convert("RGB")


collins = from_wheel("scikit_image-*.whl", "skimage/data/astronaut.png")  # 512x512
hopper = from_wheel("matplotlib-*.whl", "matplotlib/mpl-data/sample_data/grace_hopper.jpg")  # 512x600
height, width = 640, 1024
yy, xx = np.mgrid[0:height, 0:width] / width
backdrop = np.stack([0.55 + 0.10 * xx, 0.57 + 0.05 * yy, 0.60 - 0.08 * xx], axis=2)
canvas = Image.fromarray((backdrop * 255).astype(np.uint8))
canvas.paste(collins.resize((320, 320), Image.Resampling.LANCZOS), (60, 260))
canvas.paste(hopper.resize((470, 550), Image.Resampling.LANCZOS), (480, 60))
canvas.save(work / "group-hr.png")
canvas.resize((width // 4, height // 4), Image.Resampling.BICUBIC).save(work / "group.png")
PY
"$python" -m portraitsr restore "$work/group.png" -o "$work/out" --scale 4
"$python" - "$work" <<'PY'
import sys
from pathlib import Path

from PIL import Image, ImageDraw

work = Path(sys.argv[1])
original = Image.open(work / "group-hr.png")
small = Image.open(work / "group.png")
bicubic = small.resize(original.size, Image.Resampling.BICUBIC)
restored = Image.open(work / "out" / "group.png")
crops = [(94, 250, 314, 470), (580, 140, 900, 460)]  # the two faces, in the x4 picture
labels = ["bicubic x4", "PortraitSR /restore x4", "original"]
panel = 256
figure = Image.new("RGB", (3 * panel + 16, 24 + 2 * (panel + 8) + 24 + 320), "white")
draw = ImageDraw.Draw(figure)
for column, label in enumerate(labels):
    draw.text((column * (panel + 8) + 4, 6), label, fill="black")
for row, box in enumerate(crops):
    for column, image in enumerate([bicubic, restored, original]):
        figure.paste(image.crop(box).resize((panel, panel), Image.Resampling.LANCZOS),
                     (column * (panel + 8), 24 + row * (panel + 8)))
top = 24 + 2 * (panel + 8)
draw.text((4, top + 4), f"the whole photo: {small.width}x{small.height} in, x4 out (shown at half size)", fill="black")
figure.paste(restored.resize((512, 320), Image.Resampling.LANCZOS), (0, top + 24))
small.resize((256, 160), Image.Resampling.NEAREST).save(work / "lr-preview.png")
figure.paste(Image.open(work / "lr-preview.png"), (520, top + 24))
draw.text((524, top + 188), "the input (shown at full size)", fill="black")
figure.save("docs/images/restore-group-x4.png", optimize=True)
PY
echo "wrote docs/images/restore-group-x4.png"
