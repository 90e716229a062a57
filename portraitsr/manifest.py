"""The release contract: read and check ``model/release/manifest.json`` (design.md §3).

``{"models": [{"name", "scale", "onnx", "sha256", "input": "lr", "output": "sr", ...}]}``;
``onnx`` is relative to the manifest. Extra keys are kept in :attr:`ModelSpec.extra`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from portraitsr.release import sha256_of

REQUIRED_KEYS = ("name", "scale", "onnx", "sha256", "input", "output")


class ManifestError(ValueError):
    """The manifest is missing, malformed, or names a file that does not match its checksum."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    scale: int
    onnx_path: Path
    sha256: str
    input_name: str
    output_name: str
    extra: dict = field(default_factory=dict, compare=False)


def load_manifest(path: str | Path, verify_checksums: bool = True) -> list[ModelSpec]:
    """The models of a manifest, one per scale, checked against the contract (and their sha256)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ManifestError(f"no manifest at {path}") from error
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path} is not valid JSON: {error}") from error
    entries = document.get("models") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ManifestError(f"{path}: expected a non-empty list under 'models'")

    specs: list[ModelSpec] = []
    for index, entry in enumerate(entries):
        missing = [key for key in REQUIRED_KEYS if key not in entry]
        if missing:
            raise ManifestError(f"{path}: model {index} lacks {', '.join(missing)}")
        onnx_path = (path.parent / entry["onnx"]).resolve()
        if not onnx_path.is_file():
            raise ManifestError(f"{path}: model {entry['name']!r}: no file {onnx_path}")
        if verify_checksums and sha256_of(onnx_path) != str(entry["sha256"]).lower():
            raise ManifestError(f"{path}: model {entry['name']!r}: sha256 of {onnx_path.name} does not match")
        extra = {key: value for key, value in entry.items() if key not in REQUIRED_KEYS}
        specs.append(
            ModelSpec(
                name=str(entry["name"]),
                scale=int(entry["scale"]),
                onnx_path=onnx_path,
                sha256=str(entry["sha256"]).lower(),
                input_name=str(entry["input"]),
                output_name=str(entry["output"]),
                extra=extra,
            )
        )
    scales = [spec.scale for spec in specs]
    if len(set(scales)) != len(scales):
        raise ManifestError(f"{path}: more than one model per scale ({scales})")
    return specs
