#!/usr/bin/env bash
# The selection rule of the real-model rounds (training/configs/real-x*-round*.yaml), as one command:
# the mean of the run's last four kept checkpoints is made, then the released checkpoint, best.pt
# and that mean are each scored on the held-out faces through the benchmark's degradations in
# rotation (`portraitsr evaluate --inputs benchmark`), never on Helen-50. One JSON line each.
#
#   scripts/select-checkpoint.sh runs/real-x8-round3 model/release/portraitsr-real-x8.pt \
#       | tee benchmarks/results/real-x8-round3-selection.log
#
# "Kept" checkpoints: every KEEP_EVERY steps (schedule.keep_every, default 500) and the last one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
run="${1:?usage: $0 RUN_DIR RELEASED_CHECKPOINT}"
released="${2:?usage: $0 RUN_DIR RELEASED_CHECKPOINT}"
keep_every="${KEEP_EVERY:-500}"
data="${DATA:-data-cache/faces}"
python=".venv/bin/python"

mapfile -t last_four < <("$python" - "$run" "$keep_every" <<'PY'
import pathlib
import sys

steps = {int(path.stem.split("-")[1]): path for path in pathlib.Path(sys.argv[1]).glob("step-*.pt")}
last = max(steps)
kept = [step for step in sorted(steps) if step % int(sys.argv[2]) == 0 and step != last][-3:] + [last]
print("\n".join(str(steps[step]) for step in kept))
PY
)
echo "# averaged: ${last_four[*]}" >&2
.venv/bin/portraitsr average-checkpoints "${last_four[@]}" -o "$run/averaged-last4.pt" >&2

scores="$(mktemp -d)"
trap 'rm -rf "$scores"' EXIT
for checkpoint in "$released" "$run/best.pt" "$run/averaged-last4.pt"; do
  out="$scores/$(basename "$checkpoint" .pt).json"
  .venv/bin/portraitsr evaluate --model "$checkpoint" --data "$data" --inputs benchmark --no-lpips --json "$out" >/dev/null
  "$python" - "$checkpoint" "$out" <<'PY'
import json
import sys

result = json.load(open(sys.argv[2]))
model, bicubic = result["mean"]["model"]["psnr_y"], result["mean"]["bicubic"]["psnr_y"]
print(sys.argv[1], json.dumps({"psnr_y": model, "bicubic_psnr_y": bicubic, "gain_db": model - bicubic,
                               "images": len(result["images"]), "inputs": result["inputs"]}))
PY
done
