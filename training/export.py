"""Checkpoint → release: ONNX file, parity check against PyTorch, manifest entry, fine-tuning checkpoint.

Two parity checks: ONNX Runtime against PyTorch on random inputs (``parity``), and every runtime
the service may pick against ONNX Runtime fp32 on real faces (``runtime_parity``,
:mod:`training.runtime_parity`).

The manifest (`model/release/manifest.json`, design.md §3) holds one model per scale — the
service serves one per scale — so an export replaces the entry with the same name or scale.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.export import SRPath, export_onnx
from model.network import PortraitSR
from portraitsr.manifest import MANIFEST_NAME, ModelVariant, model_entry, update_manifest
from portraitsr.release import INPUT_NAME, OUTPUT_NAME
from portraitsr.runtimes import onnxruntime_session
from training.checkpoint import load_checkpoint, network_from_checkpoint, save_checkpoint, slim_checkpoint
from training.runtime_parity import check_runtimes

DEFAULT_RELEASE_DIR = Path(__file__).resolve().parent.parent / "model" / "release"
PARITY_TOLERANCE = 1e-4
PARITY_BATCH_SIZES = (1, 3)


@dataclass(frozen=True)
class ParityResult:
    max_abs_diff: float
    cases: list[dict[str, Any]]

    def passed(self, tolerance: float = PARITY_TOLERANCE) -> bool:
        return self.max_abs_diff <= tolerance


def parity_sizes(scale: int) -> tuple[tuple[int, int], ...]:
    """The LR size of a 128×128 face, and a non-square one whose upscale needs padding inside the net."""
    side = 128 // scale
    return (side, side), (side + 3, side - 2)


def check_parity(
    net: PortraitSR,
    onnx_path: str | Path,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    sizes: Sequence[tuple[int, int]] | None = None,
    seed: int = 0,
    flip_ensemble: bool = False,
) -> ParityResult:
    """Max |ONNX Runtime − PyTorch| of the SR output over random inputs of several batch and spatial sizes."""
    session = onnxruntime_session(onnx_path)
    reference = SRPath(net, flip_ensemble).eval()
    generator = torch.Generator().manual_seed(seed)
    cases = []
    for height, width in sizes or parity_sizes(net.config.scale):
        for batch in batch_sizes:
            lr = torch.rand(batch, 3, height, width, generator=generator)
            with torch.no_grad():
                expected = reference(lr).numpy()
            (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: lr.numpy()})
            if actual.shape != expected.shape:
                raise ValueError(f"ONNX output shape {actual.shape} differs from PyTorch {expected.shape}")
            diff = float(np.abs(actual - expected).max())
            cases.append({"input_shape": [batch, 3, height, width], "max_abs_diff": diff})
    return ParityResult(max(case["max_abs_diff"] for case in cases), cases)


def weights_licence(checkpoint: dict[str, Any]) -> str:
    """The weights' terms, naming every face set this stage trained on (docs/training-data.md)."""
    trained_on = sorted(((checkpoint.get("data_summary") or {}).get("images") or {}).get("train", {}))
    sets = ", ".join(trained_on) if trained_on else "the sets in docs/training-data.md"
    return f"weights trained on faces from {sets} (docs/training-data.md): non-commercial research use only"


def manifest_entry(
    name: str,
    onnx_path: Path,
    release_dir: Path,
    checkpoint: dict[str, Any],
    parity: ParityResult,
    finetune_path: Path | None,
    metrics: dict[str, Any] | None,
    flip_ensemble: bool = False,
    runtime_parity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    config = checkpoint["model_config"]
    train_config = checkpoint.get("train_config", {})
    net_parameters = sum(value.numel() for value in checkpoint["model"].values())
    variant, degradation = trained_variant(train_config)
    entry = model_entry(
        name, int(config["scale"]), onnx_path, release_dir, variant,
        input_range=[0.0, 1.0],
        layout="NCHW float32 RGB",
        model_config=config,
        flip_ensemble=flip_ensemble,  # the ONNX averages the face and its mirror image (model/export.py)
        parameters_in_checkpoint=int(net_parameters),
        training={
            "config": train_config.get("name"),
            "steps": checkpoint.get("step"),
            "batch_size": train_config.get("schedule", {}).get("batch_size"),
            "train_seconds": round(float(checkpoint.get("train_seconds", 0.0)), 1),
            "hardware": checkpoint.get("hardware"),
            "precision": checkpoint.get("precision", "fp32"),
            "loss_weights": train_config.get("loss"),
            "optimizer": train_config.get("optim"),
            "data": checkpoint.get("data_summary"),
            "best_val_psnr_y": checkpoint.get("best_val_psnr"),
            "averaged_steps": checkpoint.get("averaged_steps"),  # weights averaged over these steps, or null
            # Fine-tuned models: the stages before this one (oldest first) and the whole time.
            "previous_stages": checkpoint.get("previous_stages", []),
            "total_train_seconds": round(
                float(checkpoint.get("train_seconds", 0.0))
                + sum(stage["train_seconds"] for stage in checkpoint.get("previous_stages", [])),
                1,
            ),
        },
        parity={"max_abs_diff": parity.max_abs_diff, "tolerance": PARITY_TOLERANCE, "cases": parity.cases},
        runtime_parity=runtime_parity,
        licence=weights_licence(checkpoint),
        exported_utc=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        exported_with={"torch": torch.__version__, "python": platform.python_version()},
    )
    if degradation is not None:
        entry["degradation"] = degradation  # the settings of training/degradations it trained with
    if finetune_path is not None:
        entry["checkpoint"] = finetune_path.relative_to(release_dir).as_posix()
    if metrics is not None:
        entry["metrics"] = metrics
    return entry


def trained_variant(train_config: dict[str, Any]) -> tuple[ModelVariant, dict[str, Any] | None]:
    """``real`` with its degradation settings when the last stage trained on degraded faces, else ``clean``."""
    degradation = (train_config.get("data") or {}).get("degradation") or {}
    if degradation.get("enabled"):
        return ModelVariant.REAL, degradation
    return ModelVariant.CLEAN, None


def summarize_evaluation(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The part of a `portraitsr evaluate --json` result that goes into the manifest."""
    keep = ("data", "scale", "count", "mean")  # per-image rows stay in the JSON file
    summary = {key: evaluation[key] for key in keep if key in evaluation}
    return summary or evaluation


def export_release(
    checkpoint_path: str | Path,
    name: str,
    release_dir: str | Path = DEFAULT_RELEASE_DIR,
    evaluation_json: str | Path | None = None,
    write_manifest: bool = True,
    write_finetune_checkpoint: bool = True,
    tolerance: float = PARITY_TOLERANCE,
    reuse_onnx: bool = False,
    flip_ensemble: bool = False,
) -> dict[str, Any]:
    """Export `checkpoint_path` as `<release_dir>/<name>.onnx` (+ `<name>.pt`) and its manifest entry.

    Raises if ONNX Runtime and PyTorch disagree by more than `tolerance`, or another runtime the
    service may pick disagrees with ONNX Runtime (training/runtime_parity.py); nothing is written
    to the manifest then. `reuse_onnx` keeps an existing `<name>.onnx` (e.g. the very file that was
    evaluated) instead of exporting again; the parity check still runs on it.
    """
    release_dir = Path(release_dir)
    checkpoint = load_checkpoint(checkpoint_path)
    net = network_from_checkpoint(checkpoint, source=str(checkpoint_path))
    onnx_path = release_dir / f"{name}.onnx"
    if not (reuse_onnx and onnx_path.is_file()):
        export_onnx(net, onnx_path, flip_ensemble=flip_ensemble)
    parity = check_parity(net, onnx_path, flip_ensemble=flip_ensemble)
    if not parity.passed(tolerance):
        raise ValueError(f"ONNX Runtime differs from PyTorch by {parity.max_abs_diff:.3g} > {tolerance:g}: {parity.cases}")
    runtime_parity = check_runtimes(onnx_path, net.config.scale)
    finetune_path = None
    if write_finetune_checkpoint:
        finetune_path = release_dir / f"{name}.pt"
        slim = slim_checkpoint(checkpoint)
        slim["model"] = {key: value.clone() for key, value in net.state_dict().items()}
        save_checkpoint(slim, finetune_path)
    metrics = None
    if evaluation_json is not None:
        metrics = summarize_evaluation(json.loads(Path(evaluation_json).read_text()))
    entry = manifest_entry(
        name, onnx_path, release_dir, checkpoint, parity, finetune_path, metrics, flip_ensemble, runtime_parity
    )
    if write_manifest:
        entry["replaced"] = update_manifest(release_dir / MANIFEST_NAME, entry)
    return entry
