"""Print the requirements of portraitsr's core plus the given extras, read from pyproject.toml.

The images install exactly what the packaging declares, so this is the only place that turns
extras into a pip requirement list (tests/test_deploy_docker.py holds it to pyproject.toml).

    python extras_requirements.py pyproject.toml service,gpu > requirements.txt

``onnxruntime`` and ``onnxruntime-gpu`` both install the same ``onnxruntime`` module: with
both, whichever pip installs last overwrites the other's files, and the CUDA provider may
vanish. When ``gpu`` is among the extras, the CPU ``onnxruntime`` requirement is dropped, and so
is ``openvino`` (CPU inference only: a GPU worker runs ONNX Runtime on CUDA).
Standard library only: it runs in a bare builder stage before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# The GPU extra replaces these distributions: the CPU build of onnxruntime (same import name,
# conflicting files) and OpenVINO (the CPU runtime; 180 MiB a GPU worker would never use).
REPLACED_BY_GPU = frozenset({"onnxruntime", "openvino"})


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements_for(pyproject_path: str | Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(Path(pyproject_path).read_text())["project"]
    declared = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in declared]
    if unknown:
        raise SystemExit(f"unknown extras {unknown}; pyproject.toml declares {sorted(declared)}")
    requirements = list(project.get("dependencies", []))
    for extra in extras:
        requirements.extend(declared[extra])
    if "gpu" in extras:
        requirements = [req for req in requirements if requirement_name(req) not in REPLACED_BY_GPU]
    # Keep the first occurrence of each line (extras may repeat a requirement).
    return list(dict.fromkeys(requirements))


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    extras = [extra.strip() for extra in argv[2].split(",") if extra.strip()]
    print("\n".join(requirements_for(argv[1], extras)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
