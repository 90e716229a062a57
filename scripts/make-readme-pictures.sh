#!/usr/bin/env bash
# The README's pictures (docs/images/): --compare strips and screenshots of the web page, made
# with the shipped models (or the manifest given as $1). Run by hand after a new release.
#
# The example face is NASA's portrait of astronaut Eileen Collins (public domain, "no known
# copyright restrictions"), as distributed in scikit-image's sample data (skimage/data/astronaut.png).
# Only when the committed crops are missing, the scikit-image wheel is fetched with `pip download`
# (not installed) and the image taken out of it. Never a picture from the research datasets.
# The second real face, for the runtimes' parity check (training/parity_faces.py), is the US
# Navy's portrait of Grace Hopper (public domain), from matplotlib's sample data, made the same way.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python=".venv/bin/python"
manifest="$(realpath "${1:-model/release/manifest.json}")"
images="docs/images"
mkdir -p "$images"

if [ ! -f "$images/astronaut-face-16.png" ] || [ ! -f "$images/astronaut-face-32.png" ]; then
  wheel_dir="$(mktemp -d)"
  "$python" -m pip download --no-deps --quiet --dest "$wheel_dir" "scikit-image==0.26.0"
  "$python" - "$wheel_dir" "$images" <<'EOF'
import sys
import zipfile
from pathlib import Path

from PIL import Image

wheel_dir, images = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next(wheel_dir.glob("scikit_image-*.whl"))
with zipfile.ZipFile(wheel) as archive, archive.open("skimage/data/astronaut.png") as handle:
    photo = Image.open(handle).convert("RGB")
# Framed like the Helen-50 benchmark (training/configs/framing.yaml: eye midpoint (63.4, 35.2),
# inter-ocular 44.8, mouth (64.9, 82.5) in 128 px). Measured by hand on the 512x512 photo: eyes at
# (203, 100) and (246, 103), mouth centre (222, 145): 1.06 frame px per photo px.
hr = photo.crop((165, 68, 286, 189)).resize((128, 128), Image.Resampling.LANCZOS)
hr.save(images / "astronaut-face-128.png")
for side in (16, 32):  # the evaluation protocol's LR: Pillow bicubic
    hr.resize((side, side), Image.Resampling.BICUBIC).save(images / f"astronaut-face-{side}.png")
EOF
  rm -rf "$wheel_dir"
fi

if [ ! -f "$images/hopper-face-128.png" ]; then
  wheel_dir="$(mktemp -d)"
  "$python" -m pip download --no-deps --quiet --dest "$wheel_dir" "matplotlib==3.11.2"
  "$python" - "$wheel_dir" "$images" <<'EOF'
import sys
import zipfile
from pathlib import Path

from PIL import Image

wheel_dir, images = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next(wheel_dir.glob("matplotlib-*.whl"))
with zipfile.ZipFile(wheel) as archive, archive.open("matplotlib/mpl-data/sample_data/grace_hopper.jpg") as handle:
    photo = Image.open(handle).convert("RGB")
# Framed like Helen-50 (as above). The shipped MTCNN on the 512x600 photo: eyes at (220.8, 191.6)
# and (309.0, 185.5), mouth centre (269.8, 277.4): 1.97 photo px per frame px.
photo.crop((140, 119, 392, 371)).resize((128, 128), Image.Resampling.LANCZOS).save(images / "hopper-face-128.png")
EOF
  rm -rf "$wheel_dir"
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for pair in "16 8" "32 4"; do
  set -- $pair
  "$python" -m portraitsr upscale "$images/astronaut-face-$1.png" -o "$out/x$2" --scale "$2" \
    --compare --compare-zoom 2 --manifest "$manifest" --no-progress
  cp "$out/x$2/astronaut-face-$1_compare.png" "$images/compare-x$2.png"
done

# The browser tests take the screenshots; these variables make them use the shipped models and the
# example face (and, in photo mode, the photo scripts/make-restore-picture.sh leaves), and copy the
# pictures to docs/images/web-page.png and web-page-photo.png.
PORTRAITSR_UPDATE_SCREENSHOT=1 PORTRAITSR_WEB_TEST_MANIFEST="$manifest" \
  "$python" -m pytest tests/test_web_page.py -q -k "upscales and 16 or photo_mode"
ls -l "$images"
