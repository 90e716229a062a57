"""One GPU call, end to end: a training pack in; a trained, exported, checked and scored model out.

What `portraitsr gpu-train` does (scripts/gpu-train runs it on the GPU machine;
docs/training.md#one-gpu-call):

1. check what it imports, and unpack the pack into a cache in a work folder (training.data.pack);
2. train the recipe in a subprocess (`portraitsr train`) whose time budget is what the call's
   deadline leaves after the steps that follow (``reserve``); a subprocess still running at the
   training deadline is stopped and its last checkpoint used; one that fails before its first
   checkpoint with torch.compile on is run again without it; meanwhile the best checkpoint's
   weights are kept in ``out``, where a command killed at its limit still brings them back;
3. export the best checkpoint to ONNX with the parity check and write its fine-tuning checkpoint
   (training.export);
4. score it and the current release through ONNX Runtime on the pack's held-out faces;
5. put report.json, report.md and the model files into ``out`` (a file too large to come back is
   split) and check ``out`` against the return limits (training.transfer_limits).

report.json is rewritten after every step, so a call cut short still brings back what it did.
"""

from __future__ import annotations

import collections
import csv
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REQUIRED_MODULES = ("torch", "numpy", "PIL", "yaml", "tqdm")
EXPORT_MODULES = ("onnx", "onnxruntime")  # without them the call still trains and returns the weights
STARTUP_SECONDS = 20.0  # a training subprocess's imports, CUDA start and data set, before its clock runs
BUDGET_SHARE = 0.9  # of the training time left: the rest is the trainer's validations and checkpoints
HEARTBEAT_SECONDS = 60.0
# A dry run checks the call on a CPU: the tiny model from scratch, no compile (minutes on a CPU).
DRY_RUN_OVERRIDES = (
    "model=tiny-x8", "init_from=null", "runtime.device=cpu", "runtime.compile=false", "data.num_workers=0",
)  # fmt: skip


@dataclass
class CallSettings:
    config: str
    pack: Path
    out: Path
    work: Path
    minutes: float  # the whole call, from this process's start
    reserve_minutes: float  # after training: export, parity, held-out scoring, report
    overrides: list[str] = field(default_factory=list)
    name: str | None = None  # of the model files; default: the config's name
    dry_run: bool = False


class Deadline:
    def __init__(self, minutes: float) -> None:
        self.start = time.monotonic()
        self.seconds = 60.0 * minutes

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


class Report:
    """report.json in ``out``, rewritten whenever something is added."""

    def __init__(self, out: Path) -> None:
        self.path = out / "report.json"
        self.data: dict[str, Any] = {"started_utc": _now(), "steps": {}}

    def step(self, name: str, seconds: float, status: str, **details: Any) -> None:
        self.data["steps"][name] = {"status": status, "seconds": round(seconds, 1), **details}
        self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")


def run_call(settings: CallSettings) -> int:
    """The whole call. Exit status 0: every step ran and ``out`` is within the return limits;
    1: training left no model; 2: it could not start (imports, pack); 3: a model came back but a
    step failed or something in ``out`` would stay behind (report.json says which)."""
    deadline = Deadline(settings.minutes)
    settings.out.mkdir(parents=True, exist_ok=True)
    report = Report(settings.out)
    missing = _check_imports(report)
    if missing:
        print(f"gpu-train: cannot train without {', '.join(missing)}: carry their wheels (docs/training.md)")
        return 2
    from training.data.pack import PackError, read_manifest, unpack

    clock = time.monotonic()
    try:
        cache = unpack(settings.pack, settings.work / "cache")
    except PackError as error:
        print(f"gpu-train: {error} (is data-pack/ carried?)")
        report.step("unpack", time.monotonic() - clock, "failed", error=str(error))
        return 2
    manifest = read_manifest(settings.pack)
    report.data["pack"] = _pack_summary(manifest)
    report.step("unpack", time.monotonic() - clock, "ok", faces=manifest["faces"])

    overrides = _train_overrides(settings, cache, manifest)
    config = _load_config(settings.config, overrides)
    name = settings.name or config.name
    report.data["config"] = config.to_dict()
    checkpoint = _train(settings, overrides, config, deadline, report, settings.out / f"{name}.pt")
    if checkpoint is None:
        print("gpu-train: training left no checkpoint; nothing to bring back")
        _finish(settings, report, deadline)
        return 1
    files = _export(checkpoint, name, settings, report, exportable=not report.data["environment"]["missing_for_export"])
    if "onnx" in files:
        _score_held_out(files["onnx"], cache, config, report)
    _return_files(files, settings.out, report)
    problems = _finish(settings, report, deadline)
    failed = [step for step, result in report.data["steps"].items() if result["status"] != "ok"]
    return 3 if failed or problems else 0


# ------------------------------------------------------------------------------------ steps
def _check_imports(report: Report) -> list[str]:
    versions, missing = {}, []
    for module in REQUIRED_MODULES + EXPORT_MODULES:
        try:
            versions[module] = getattr(importlib.import_module(module), "__version__", "?")
        except ImportError:
            missing.append(module)
    report.data["environment"] = {
        "python": platform.python_version(),
        "versions": versions,
        "missing_for_export": [m for m in missing if m in EXPORT_MODULES],
        "cpu_count": os.cpu_count(),
        "gpu": _gpu_name(),
    }
    report.save()
    return [m for m in missing if m in REQUIRED_MODULES]


def _gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        return None


def _pack_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    keep = ("faces", "dropped", "datasets", "image", "source_weights", "train_oversample", "created_utc")
    return {key: manifest[key] for key in keep} | {"bytes": sum(f["bytes"] for f in manifest["files"].values())}


def _train_overrides(settings: CallSettings, cache: Path, manifest: dict[str, Any]) -> list[str]:
    """The recipe's settings that the call decides: its data, its run folder, the pack's oversampling."""
    decided = [
        f"data.cache_dir={cache}",
        f"output_dir={settings.work / 'run'}",
        f"data.oversample={json.dumps(manifest['train_oversample'])}",
        "runtime.tensorboard=false",
    ]
    return decided + (list(DRY_RUN_OVERRIDES) if settings.dry_run else []) + settings.overrides


def _load_config(config: str, overrides: list[str]):
    from training.config import load_train_config

    return load_train_config(config, overrides)


def _train(
    settings: CallSettings, overrides: list[str], config, deadline: Deadline, report: Report, mirror: Path
) -> Path | None:
    """Run the trainer; the checkpoint to export (best, else last), or None. While it runs, the best
    checkpoint's weights are kept at ``mirror`` (in ``out``), so that even a command killed at its
    limit brings back the best model so far."""
    run_dir = config.run_dir
    attempts = [overrides]
    if config.runtime.compile:
        attempts.append([*overrides, "runtime.compile=false"])
    clock = time.monotonic()
    for number, attempt in enumerate(attempts):
        stop_at = deadline.left() - 60.0 * settings.reserve_minutes
        budget = max(0.05, (stop_at - STARTUP_SECONDS) * BUDGET_SHARE / 60.0)
        if config.schedule.time_budget_minutes:
            budget = min(budget, config.schedule.time_budget_minutes)
        command = [sys.executable, "-m", "portraitsr", "train", "--config", settings.config,
                   *[f"--set={item}" for item in [*attempt, f"schedule.time_budget_minutes={budget:.3f}"]]]  # fmt: skip
        print(f"gpu-train: training for {budget:.2f} min of train time, stopped by {stop_at / 60:.2f} min from now")
        # A trainer with no checkpoint at its deadline may use two thirds of the reserve: without a
        # checkpoint nothing would come back, and a small model's export needs less than all of it.
        grace = 40.0 * settings.reserve_minutes
        status, tail = _supervise(
            command, stop_at, lambda: _heartbeat(run_dir, mirror), grace, lambda: not _checkpoints(run_dir)
        )
        checkpoints = _checkpoints(run_dir)
        done = status == 0 or checkpoints or number == len(attempts) - 1 or deadline.left() < 120
        if done:
            break
        print(f"gpu-train: training failed (exit {status}) before a checkpoint; again without torch.compile")
    summary = _training_summary(run_dir, config) | {
        "exit_status": status,
        "stopped_at_deadline": status == "stopped",
        "retried_without_compile": number > 0,
        "time_budget_minutes": round(budget, 3),
    }
    if status != 0:
        summary["output_tail"] = tail
    report.step("train", time.monotonic() - clock, "ok" if checkpoints else "failed", **summary)
    return checkpoints[0] if checkpoints else None


def _checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints worth exporting, best first."""
    return [run_dir / name for name in ("best.pt", "last.pt") if (run_dir / name).is_file()]


def _supervise(
    command: list[str], stop_after: float, heartbeat: Callable[[], None], grace: float, needs_grace: Callable[[], bool]
) -> tuple[int | str, list[str]]:
    """Run ``command``, echo its output, call ``heartbeat`` every minute, stop it after
    ``stop_after`` seconds — or ``grace`` seconds later if ``needs_grace()`` then; (exit status or
    "stopped", its last output lines)."""
    environment = os.environ | {"TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}  # train.csv has the progress
    process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    tail: collections.deque[str] = collections.deque(maxlen=40)
    reader = threading.Thread(target=_echo, args=(process.stdout, tail), daemon=True)
    reader.start()
    end = time.monotonic() + stop_after
    while process.poll() is None:
        if time.monotonic() >= end and grace > 0 and needs_grace():
            print(f"gpu-train: no checkpoint yet at the training deadline: {grace:.0f} s more, since nothing else could come back")
            end, grace = end + grace, 0.0
        if time.monotonic() >= end:
            print("gpu-train: the training deadline has come: stopping the trainer")
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            reader.join(timeout=5)
            return "stopped", list(tail)
        try:
            process.wait(timeout=min(HEARTBEAT_SECONDS, max(0.1, end - time.monotonic())))
        except subprocess.TimeoutExpired:
            heartbeat()
    reader.join(timeout=5)
    return process.returncode, list(tail)


def _echo(stream, tail: collections.deque[str]) -> None:
    for line in stream:
        print(line, end="", flush=True)
        tail.append(line.rstrip())


def _heartbeat(run_dir: Path, mirror: Path) -> None:
    """Progress into the log, and the best checkpoint's weights into ``mirror`` when it is newer."""
    rows = _csv_rows(run_dir / "train.csv")
    if rows:
        row = rows[-1]
        print(f"gpu-train: step {row['step']}, {float(row['images_per_s']):.0f} faces/s, "
              f"loss {float(row['total']):.4f}, {float(row['train_seconds']):.0f} s of training", flush=True)  # fmt: skip
    best = run_dir / "best.pt"
    if best.is_file() and (not mirror.is_file() or mirror.stat().st_mtime < best.stat().st_mtime):
        from training.checkpoint import load_checkpoint, save_checkpoint, slim_checkpoint

        save_checkpoint(slim_checkpoint(load_checkpoint(best)), mirror)  # best.pt is replaced atomically


def _training_summary(run_dir: Path, config) -> dict[str, Any]:
    rows, validations = _csv_rows(run_dir / "train.csv"), _csv_rows(run_dir / "val.csv")
    if not rows:
        return {"steps": 0}
    steady = [float(row["images_per_s"]) for row in rows[len(rows) // 10 :]]  # past compile and warm-up
    steps = int(rows[-1]["step"])
    summary = {
        "steps": steps,
        "batch_size": config.schedule.batch_size,
        "faces_seen": steps * config.schedule.batch_size,
        "train_seconds": round(float(rows[-1]["train_seconds"]), 1),
        "faces_per_s_median": round(sorted(steady)[len(steady) // 2], 1),
        "validations": validations,
        "train_log": rows,
    }
    if rows[-1].get("cuda_max_memory_gib"):
        summary["cuda_max_memory_gib"] = round(float(rows[-1]["cuda_max_memory_gib"]), 2)
    return summary


def _csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _export(checkpoint: Path, name: str, settings: CallSettings, report: Report, exportable: bool) -> dict[str, Path]:
    """``{"checkpoint": <name>.pt, "onnx": <name>.onnx}`` in the work folder; no ONNX if it failed."""
    from training.checkpoint import load_checkpoint, save_checkpoint, slim_checkpoint
    from training.export import export_release

    release_dir = settings.work / "release"
    clock = time.monotonic()
    files = {"checkpoint": release_dir / f"{name}.pt"}
    details: dict[str, Any] = {"from": checkpoint.name}
    if exportable:
        try:
            entry = export_release(checkpoint, name, release_dir=release_dir, write_manifest=False)
            files["onnx"] = release_dir / f"{name}.onnx"
            details |= {"onnx_sha256": entry["sha256"], "parity": entry["parity"], "model_config": entry["model_config"]}
        except Exception as error:  # noqa: BLE001 - the weights still come back; export again on the CPU
            details["error"] = f"{type(error).__name__}: {error}"
    else:
        details["error"] = "onnx/onnxruntime missing here: export on the CPU with `portraitsr export`"
    if not files["checkpoint"].is_file():
        save_checkpoint(slim_checkpoint(load_checkpoint(checkpoint)), files["checkpoint"])
    report.step("export", time.monotonic() - clock, "ok" if "onnx" in files else "failed", **details)
    return files


def _score_held_out(onnx: Path, cache: Path, config, report: Report) -> None:
    """PSNR-Y / SSIM-Y of the new model, the current release and bicubic on the held-out faces."""
    from model.config import load_model_config
    from training.data.cache import TrainingCache
    from training.evaluation import OnnxUpscaler, evaluate_images, load_hr_cache

    clock = time.monotonic()
    scale = load_model_config(config.model).scale
    images = load_hr_cache(cache, "val")
    dataset_of = {entry["source"]: entry["dataset"] for entry in TrainingCache(cache).entries("val")}
    scored = {"trained": evaluate_images(images, "held-out", scale, OnnxUpscaler(onnx, scale))}
    release = _release_onnx(scale)
    if release is not None:
        scored["release"] = evaluate_images(images, "held-out", scale, OnnxUpscaler(release, scale))
    report.step("held_out", time.monotonic() - clock, "ok", **held_out_summary(scored, dataset_of))


def _release_onnx(scale: int) -> Path | None:
    manifest = REPO / "model" / "release" / "manifest.json"
    if not manifest.is_file():
        return None
    for entry in json.loads(manifest.read_text())["models"]:
        if int(entry["scale"]) == scale:
            return manifest.parent / entry["onnx"]
    return None


def held_out_summary(scored: dict[str, dict[str, Any]], dataset_of: dict[str, str]) -> dict[str, Any]:
    """Means per model (and bicubic), per dataset, and the paired difference trained − release."""
    import numpy as np

    trained = scored["trained"]
    summary: dict[str, Any] = {"faces": trained["count"], "bicubic": trained["mean"]["bicubic"]}
    per_dataset: dict[str, dict[str, float]] = {}
    for label, result in scored.items():
        summary[label] = result["mean"]["model"]
        for dataset in sorted(set(dataset_of.values())):
            values = [row["model"]["psnr_y"] for row in result["images"] if dataset_of[row["name"]] == dataset]
            per_dataset.setdefault(dataset, {"faces": len(values)})[label] = round(float(np.mean(values)), 3)
    summary["psnr_y_by_dataset"] = per_dataset
    if "release" in scored:
        differences = np.array([
            a["model"]["psnr_y"] - b["model"]["psnr_y"]
            for a, b in zip(trained["images"], scored["release"]["images"], strict=True)
        ])  # fmt: skip
        summary["trained_minus_release_db"] = {
            "mean": round(float(differences.mean()), 4),
            "standard_error": round(float(differences.std(ddof=1) / np.sqrt(len(differences))), 4)
            if len(differences) > 1 else None,
        }  # fmt: skip
    return summary


def _return_files(files: dict[str, Path], out: Path, report: Report) -> None:
    """Copy the model files into ``out``, split where one would be too large to come back."""
    from training.transfer_limits import split_for_return

    returned = []
    for path in files.values():
        if path.is_file():
            target = out / path.name
            shutil.copyfile(path, target)
            returned += [part.name for part in split_for_return(target)]
    report.data["returned_model_files"] = returned


def _finish(settings: CallSettings, report: Report, deadline: Deadline) -> list[str]:
    from training.transfer_limits import return_problems

    report.data["finished_utc"] = _now()
    report.data["call_seconds"] = round(deadline.elapsed(), 1)
    report.data["deadline_seconds"] = deadline.seconds
    for _ in range(2):  # the check counts the report files themselves, then goes into them
        (settings.out / "report.md").write_text(render_markdown(report.data))
        report.save()
        problems = return_problems(settings.out)
        report.data["return_problems"] = problems
    for problem in problems:
        print(f"gpu-train: will not come back: {problem}")
    print(f"gpu-train: done in {deadline.elapsed() / 60:.2f} min; {settings.out}: {sorted(p.name for p in settings.out.iterdir())}")
    return problems


def render_markdown(data: dict[str, Any]) -> str:
    """The report's essentials for a person."""
    environment, steps = data.get("environment", {}), data.get("steps", {})
    lines = [f"# GPU call {data.get('config', {}).get('name', '?')} ({data['started_utc']})", ""]
    lines.append(f"- machine: {environment.get('gpu') or 'no GPU (dry run on the CPU)'}, {environment.get('cpu_count')} "
                 f"cores, torch {environment.get('versions', {}).get('torch')}")  # fmt: skip
    if "pack" in data:
        pack = data["pack"]
        lines.append(f"- pack: {pack['faces']} faces ({pack['dropped']} of the cache dropped), "
                     f"{pack['bytes'] / 2**20:.2f} MiB, {pack['image']['format']} q{pack['image']['quality']}")  # fmt: skip
    config = data.get("config", {})
    if config:
        lines.append(f"- model: {config['model']} from {config.get('init_from') or 'scratch'}")
    train = steps.get("train", {})
    if train.get("steps"):
        lines.append(
            f"- training: {train['steps']} steps × {train['batch_size']} = {train['faces_seen']} faces in "
            f"{train['train_seconds'] / 60:.2f} min ({train['faces_per_s_median']} faces/s median); "
            f"exit {train['exit_status']}{', stopped at the deadline' if train['stopped_at_deadline'] else ''}"
            f"{', retried without torch.compile' if train['retried_without_compile'] else ''}"
        )
    export = steps.get("export", {})
    if "parity" in export:
        lines.append(f"- ONNX parity: max |diff| {export['parity']['max_abs_diff']:.2e} (tolerance {export['parity']['tolerance']:g})")
    elif export:
        lines.append(f"- export failed: {export.get('error')}")
    held_out = steps.get("held_out", {})
    if held_out:
        trained, bicubic = held_out["trained"]["psnr_y"], held_out["bicubic"]["psnr_y"]
        text = f"- held-out PSNR-Y ({held_out['faces']} faces of the pack, ONNX Runtime): trained {trained:.3f} dB"
        if "release" in held_out:
            difference = held_out["trained_minus_release_db"]
            text += f", release {held_out['release']['psnr_y']:.3f} dB, trained − release {difference['mean']:+.4f}"
            text += f" ± {difference['standard_error']}" if difference["standard_error"] is not None else ""
        lines.append(text + f" dB; bicubic {bicubic:.3f} dB")
    lines.append(f"- files: {', '.join(data.get('returned_model_files', [])) or 'none'}")
    if "return_problems" in data:
        lines.append(f"- return limits: {'; '.join(data['return_problems']) or 'all of $OUT comes back'}")
    timing = ", ".join(f"{name} {step['seconds']:.0f} s" for name, step in steps.items())
    lines.append(f"- time: {timing}; call {data.get('call_seconds', 0):.0f} s of {data.get('deadline_seconds', 0):.0f} s")
    return "\n".join(lines) + "\n"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
