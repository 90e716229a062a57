#!/usr/bin/env bash
# Create (or reuse) .venv at the repository root and install the project with the given extras.
# Usage: scripts/bootstrap.sh service,train,dev
# Re-installs only when pyproject.toml or the extras change (a stamp file records both).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
extras="${1:-service}"
venv="$root/.venv"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

if [ ! -x "$venv/bin/python" ]; then
  echo "[bootstrap] creating $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi

stamp="$venv/.portraitsr-installed"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -c1-16) $extras"
if [ ! -f "$stamp" ] || ! grep -qxF "$want" "$stamp"; then
  echo "[bootstrap] installing portraitsr[$extras] into $venv" >&2
  # torch is pinned in the `train` extra; installing it first keeps pip on the CPU build.
  case ",$extras," in *,train,*) "$venv/bin/pip" install --quiet "torch==2.13.0" ;; esac
  "$venv/bin/pip" install --quiet -e "$root[$extras]"
  echo "$want" >> "$stamp"
fi
