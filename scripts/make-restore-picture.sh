#!/usr/bin/env bash
# docs/images/restore-astronaut-x4.png: a whole photo through the /restore pipeline (in-process,
# `portraitsr restore`) with the shipped x4 model, beside its bicubic upscale. The photo is NASA's
# portrait of astronaut Eileen Collins (public domain), from scikit-image's sample data: the wheel is
# fetched with `pip download` (not installed), the 512x512 photo shrunk to 128x128 (Pillow bicubic),
# so the face's inter-ocular distance is about 11 px, the x4 model's own.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python=".venv/bin/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --no-deps --quiet --dest "$work" "scikit-image==0.26.0"
"$python" - "$work" <<'PY'
import sys
import zipfile
from pathlib import Path

from PIL import Image

work = Path(sys.argv[1])
with zipfile.ZipFile(next(work.glob("scikit_image-*.whl"))) as archive, archive.open("skimage/data/astronaut.png") as handle:
    photo = Image.open(handle).convert("RGB")
small = photo.resize((128, 128), Image.Resampling.BICUBIC)
small.save(work / "astronaut-photo-128.png")
small.save("docs/images/astronaut-photo-128.png")  # the web page test's photo-mode screenshot uses it
PY
"$python" -m portraitsr restore "$work/astronaut-photo-128.png" -o "$work/out" --scale 4
"$python" - "$work" <<'PY'
import sys
from pathlib import Path

from PIL import Image, ImageDraw

work = Path(sys.argv[1])
small = Image.open(work / "astronaut-photo-128.png")
panels = [small.resize((512, 512), Image.Resampling.BICUBIC), Image.open(work / "out" / "astronaut-photo-128.png")]
strip = Image.new("RGB", (2 * 512 + 8, 512 + 24), "white")
draw = ImageDraw.Draw(strip)
for k, (panel, label) in enumerate(zip(panels, ["bicubic x4", "PortraitSR /restore x4"], strict=True)):
    strip.paste(panel, (k * (512 + 8), 24))
    draw.text((k * (512 + 8) + 4, 6), label, fill="black")
strip.save("docs/images/restore-astronaut-x4.png", optimize=True)
PY
echo "wrote docs/images/restore-astronaut-x4.png"
