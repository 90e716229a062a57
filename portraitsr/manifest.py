"""The release manifest (``model/release/manifest.json``, design.md §3): its schema, reader and writer.

``{"models": [{"name", "scale", "variant", "onnx", "sha256", "input": "lr", "output": "sr", ...}]}``,
one model per (scale, variant) — ``variant`` is ``clean`` (trained on bicubic-shrunk faces, the
paper's protocol) or ``real`` (trained on degraded faces; its entry records the ``degradation``
settings), and an entry without it (a manifest from before variants) is ``clean``; ``onnx`` is relative to the manifest, any other key is detail (training,
parity, metrics...) kept in :attr:`ModelSpec.extra`. This module is the one home of that format:
``training/export.py`` writes entries with :func:`model_entry` and :func:`update_manifest`, the
service and the commands read them with :func:`load_manifest`, and the tests build their fixture
releases with the same two. A new field of the contract goes here, in all three at once.
Standard library only (and :mod:`portraitsr.release` for checksums and tensor names).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from portraitsr.release import INPUT_NAME, OUTPUT_NAME, sha256_of

MANIFEST_NAME = "manifest.json"
REQUIRED_KEYS = ("name", "scale", "onnx", "sha256", "input", "output")


class ModelVariant(StrEnum):
    """Which inputs a model was trained for."""

    CLEAN = "clean"  # faces shrunk by Pillow bicubic alone (the paper's protocol)
    REAL = "real"  # faces blurred, shrunk, noised and JPEG-compressed (training/degradations)


class ManifestError(ValueError):
    """The manifest is missing, malformed, or names a file that does not match its checksum."""


@dataclass(frozen=True)
class ModelSpec:
    """One entry as the reader gives it: the contract's keys typed, the ONNX path resolved."""

    name: str
    scale: int
    onnx_path: Path
    sha256: str
    input_name: str
    output_name: str
    extra: dict = field(default_factory=dict, compare=False)
    variant: ModelVariant = ModelVariant.CLEAN


def model_entry(
    name: str, scale: int, onnx_path: Path, release_dir: Path, variant: str = ModelVariant.CLEAN, **details: Any
) -> dict[str, Any]:
    """A manifest entry for ``onnx_path`` (inside ``release_dir``): the contract's keys, then ``details``."""
    return {
        "name": name,
        "scale": int(scale),
        "variant": str(ModelVariant(variant)),
        "onnx": Path(onnx_path).relative_to(release_dir).as_posix(),
        "sha256": sha256_of(onnx_path),
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        **details,
    }


def update_manifest(manifest_path: Path, entry: dict[str, Any]) -> list[str]:
    """Insert ``entry``, replacing any entry with its name or its (scale, variant); the names it replaced.

    Written to a temporary file and renamed, so a reader never sees half a manifest.
    """
    document: dict[str, Any] = {"models": []}
    if manifest_path.exists():
        document = json.loads(manifest_path.read_text())
    kept, replaced = [], []
    for existing in document.get("models", []):
        same_slot = (int(existing.get("scale", 0)), existing.get("variant", ModelVariant.CLEAN)) == (
            entry["scale"], entry.get("variant", ModelVariant.CLEAN)
        )
        if existing.get("name") == entry["name"] or same_slot:
            replaced.append(existing.get("name"))
        else:
            kept.append(existing)
    document["models"] = sorted(
        [*kept, entry], key=lambda model: (int(model["scale"]), model.get("variant", ModelVariant.CLEAN))
    )
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = manifest_path.with_name(manifest_path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(manifest_path)
    return replaced


def load_manifest(path: str | Path, verify_checksums: bool = True) -> list[ModelSpec]:
    """The models of a manifest, one per (scale, variant), checked against the contract (and their sha256)."""
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
    specs = [_spec(path, index, entry, verify_checksums) for index, entry in enumerate(entries)]
    slots = [(spec.scale, str(spec.variant)) for spec in specs]
    if len(set(slots)) != len(slots):
        raise ManifestError(f"{path}: more than one model per scale and variant ({slots})")
    return specs


def _spec(path: Path, index: int, entry: dict[str, Any], verify_checksums: bool) -> ModelSpec:
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise ManifestError(f"{path}: model {index} lacks {', '.join(missing)}")
    onnx_path = (path.parent / entry["onnx"]).resolve()
    if not onnx_path.is_file():
        raise ManifestError(f"{path}: model {entry['name']!r}: no file {onnx_path}")
    if verify_checksums and sha256_of(onnx_path) != str(entry["sha256"]).lower():
        raise ManifestError(f"{path}: model {entry['name']!r}: sha256 of {onnx_path.name} does not match")
    try:
        variant = ModelVariant(entry.get("variant", ModelVariant.CLEAN))
    except ValueError:
        known = ", ".join(ModelVariant)
        raise ManifestError(f"{path}: model {entry['name']!r}: variant {entry['variant']!r} is not one of {known}") from None
    return ModelSpec(
        name=str(entry["name"]),
        scale=int(entry["scale"]),
        onnx_path=onnx_path,
        sha256=str(entry["sha256"]).lower(),
        input_name=str(entry["input"]),
        output_name=str(entry["output"]),
        extra={key: value for key, value in entry.items() if key not in (*REQUIRED_KEYS, "variant")},
        variant=variant,
    )
