"""The trainer: a step lowers the loss, exact resume, DDP under torchrun, configuration and sampling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from portraitsr.cli import main as portraitsr_main
from training.checkpoint import average_checkpoints, load_checkpoint, network_from_checkpoint
from training.config import load_train_config, train_config_from_dict
from training.data.synthetic import write_generated_cache
from training.sampling import ResumableSampler
from training.trainer import NonFiniteTrainingError, Trainer

TESTS_DIR = Path(__file__).resolve().parent


def tiny_config(cache: Path, run_dir: Path, **schedule) -> dict:
    return {
        "name": "tiny-test",
        "model": "tiny-x8",
        "output_dir": str(run_dir),
        "seed": 3,
        "data": {"cache_dir": str(cache), "augment": True, "val_images": 2},
        "optim": {"lr": 1e-3, "scheduler": "cosine", "warmup_steps": 1, "grad_clip": 1.0},
        "loss": {"perceptual": 0.0},
        "schedule": {"max_steps": 4, "batch_size": 2, "log_every": 1, "val_every": 100, "checkpoint_every": 2,
                     "keep_checkpoints": 10} | schedule,  # fmt: skip
        "runtime": {"device": "cpu", "threads": 1, "tensorboard": False},
    }


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return write_generated_cache(tmp_path_factory.mktemp("cache"), train=6, val=2)


def test_one_step_lowers_the_loss_on_a_fixed_batch(cache, tmp_path):
    trainer = Trainer(train_config_from_dict(tiny_config(cache, tmp_path)))
    loader, _ = trainer._train_loader()
    batch = next(iter(loader))

    def loss_on_batch() -> float:
        with torch.no_grad():
            output = trainer.net(batch["lr"], hr=batch["hr"])
            total, _ = trainer.loss_fn(output, batch["hr"], batch["parsing"], trainer.net.diversity_loss())
        return float(total)

    before = loss_on_batch()
    terms = trainer.train_step(batch)
    after = loss_on_batch()
    assert {"total", "l1", "parsing", "reconstruction", "diversity"} <= set(terms)
    assert after < before


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(cache, tmp_path):
    # 6 training images, batch 2: 3 batches per epoch, so 4 steps cross an epoch boundary.
    straight = Trainer(train_config_from_dict(tiny_config(cache, tmp_path / "straight")))
    straight.fit()
    halfway = tmp_path / "straight" / "step-0000002.pt"
    assert load_checkpoint(halfway)["step"] == 2

    resumed = Trainer(train_config_from_dict(tiny_config(cache, tmp_path / "resumed")))
    resumed.fit(resume=halfway)

    assert resumed.step == straight.step == 4
    assert (resumed.epoch, resumed.batch_in_epoch) == (straight.epoch, straight.batch_in_epoch) == (1, 1)
    straight_state, resumed_state = straight.net.state_dict(), resumed.net.state_dict()
    assert straight_state.keys() == resumed_state.keys()
    for name, tensor in straight_state.items():
        assert torch.equal(tensor, resumed_state[name]), name
    # ... and the weights did move from the checkpoint: the comparison is not between two copies of it.
    halfway_state = load_checkpoint(halfway)["model"]
    assert any(not torch.equal(halfway_state[name], tensor) for name, tensor in straight_state.items())


def test_degraded_training_in_a_worker_resumes_exactly_and_validates_on_the_table(cache, tmp_path):
    degraded = {"degradation": {"enabled": True, "clean_share": 0.0}, "num_workers": 1, "val_inputs": "benchmark"}

    def config(run: str) -> dict:
        raw = tiny_config(cache, tmp_path / run, val_every=4)
        raw["data"] |= degraded
        return raw

    straight = Trainer(train_config_from_dict(config("straight")))
    straight.fit()
    resumed = Trainer(train_config_from_dict(config("resumed")))
    resumed.fit(resume=tmp_path / "straight" / "step-0000002.pt")
    for name, tensor in straight.net.state_dict().items():
        assert torch.equal(tensor, resumed.net.state_dict()[name]), name
    saved = load_checkpoint(tmp_path / "straight" / "last.pt")
    assert saved["train_config"]["data"]["degradation"]["enabled"] is True  # the manifest's source
    val_rows = (tmp_path / "straight" / "val.csv").read_text().splitlines()
    assert len(val_rows) == 2  # header + the validation at step 4, on table-degraded faces


def test_init_from_starts_a_fresh_run_from_the_checkpoint_weights(cache, tmp_path):
    pretrained = Trainer(train_config_from_dict(tiny_config(cache, tmp_path / "pretrained", max_steps=2)))
    pretrained.fit()
    config = tiny_config(cache, tmp_path / "finetune", max_steps=2)
    config["init_from"] = str(tmp_path / "pretrained" / "last.pt")
    finetune = Trainer(train_config_from_dict(config))
    # fit() loads the weights; with zero steps left nothing else moves them.
    finetune.config.schedule.max_steps = 0
    finetune.fit()
    assert finetune.step == 0 and finetune.train_seconds == 0.0
    assert not finetune.optimizer.state  # fresh optimizer, not the checkpoint's
    stage = finetune.previous_stages[0]
    assert (stage["config"], stage["steps"], stage["batch_size"]) == ("tiny-test", 2, 2)
    for name, tensor in pretrained.net.state_dict().items():
        assert torch.equal(tensor, finetune.net.state_dict()[name]), name


def test_init_from_a_shallower_checkpoint_grows_it_into_the_deeper_model(cache, tmp_path):
    pretrained = Trainer(train_config_from_dict(tiny_config(cache, tmp_path / "pretrained", max_steps=1)))
    pretrained.fit()
    config = tiny_config(cache, tmp_path / "grown", max_steps=0)
    config["init_from"] = str(tmp_path / "pretrained" / "last.pt")
    config["model_overrides"] = {"num_blocks": [1, 1, 1, 2]}
    grown = Trainer(train_config_from_dict(config))
    grown.fit()
    state = grown.net.state_dict()
    for name, tensor in pretrained.net.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    assert not state["encoder.latent.1.attn.project_out.weight"].any()
    assert grown.previous_stages[0]["steps"] == 1

    config["model_overrides"] = {"dim": 16, "heads": [1, 1, 2, 2]}
    with pytest.raises(ValueError, match="only depths may grow"):
        Trainer(train_config_from_dict(config)).fit()


def test_without_reconstruction_loss_the_branch_is_skipped_and_the_dictionary_frozen(cache, tmp_path):
    config = tiny_config(cache, tmp_path)
    config["loss"] |= {"reconstruction": 0.0, "diversity": 0.0}
    trainer = Trainer(train_config_from_dict(config))
    dictionary_before = trainer.net.atp.dictionary.detach().clone()
    sr_weights_before = {n: p.detach().clone() for n, p in trainer.net.decoder.named_parameters()}
    loader, _ = trainer._train_loader()
    terms = trainer.train_step(next(iter(loader)))
    assert "reconstruction" not in terms
    assert torch.equal(trainer.net.atp.dictionary, dictionary_before)
    assert not any(p.requires_grad for p in trainer.net.rec_encoder.parameters())
    assert any(not torch.equal(p, sr_weights_before[n]) for n, p in trainer.net.decoder.named_parameters())


def test_checkpoint_holds_what_resume_and_release_need(cache, tmp_path):
    Trainer(train_config_from_dict(tiny_config(cache, tmp_path, max_steps=2))).fit()
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    for key in ("model", "model_config", "optimizer", "scaler", "step", "epoch", "rng", "train_config",
                "train_seconds", "hardware", "data_summary"):  # fmt: skip
        assert key in checkpoint, key
    assert set(checkpoint["rng"][0]) >= {"python", "numpy", "torch"}
    assert checkpoint["data_summary"]["images"] == {"train": {"generated": 6}, "val": {"generated": 2}}
    assert (tmp_path / "best.pt").exists()
    assert (tmp_path / "train.csv").read_text().splitlines()[0].startswith("step,epoch,lr,total")
    val_rows = (tmp_path / "val.csv").read_text().splitlines()
    assert val_rows[0].split(",")[:3] == ["step", "psnr_y", "bicubic_psnr_y"] and len(val_rows) == 2


def test_keep_every_survives_pruning_and_average_checkpoints_takes_the_mean(cache, tmp_path):
    config = tiny_config(cache, tmp_path, max_steps=6, checkpoint_every=1, keep_checkpoints=1, keep_every=2)
    Trainer(train_config_from_dict(config)).fit()
    # Multiples of 2 are protected; of the others (1, 3, 5) only the newest one is kept.
    assert sorted(int(path.stem[5:]) for path in tmp_path.glob("step-*.pt")) == [2, 4, 5, 6]
    kept = [load_checkpoint(tmp_path / f"step-{step:07d}.pt") for step in (2, 4, 6)]
    averaged_path = tmp_path / "averaged.pt"
    arguments = ["average-checkpoints", *(str(tmp_path / f"step-{step:07d}.pt") for step in (6, 2, 4))]
    assert portraitsr_main([*arguments, "-o", str(averaged_path)]) == 0
    averaged = load_checkpoint(averaged_path)
    assert averaged["averaged_steps"] == [2, 4, 6] and averaged["step"] == 6
    assert "optimizer" not in averaged and averaged["train_seconds"] == kept[-1]["train_seconds"]
    changed = 0
    for name, value in averaged["model"].items():
        if value.is_floating_point():
            mean = sum(checkpoint["model"][name].double() for checkpoint in kept) / 3
            assert torch.allclose(value.double(), mean, atol=1e-6), name
            changed += not torch.equal(value, kept[-1]["model"][name])
    assert changed > 0  # the weights moved between the steps, so the mean is not the newest
    network_from_checkpoint(averaged)  # loads as a network, as export and evaluate need


def test_average_checkpoints_refuses_checkpoints_of_different_models():
    checkpoint = {"model": {"weight": torch.zeros(2)}, "model_config": {"scale": 8}, "step": 1}
    with pytest.raises(ValueError, match="different model configurations"):
        average_checkpoints([checkpoint, checkpoint | {"model_config": {"scale": 4}}])
    with pytest.raises(ValueError, match="different parameters"):
        average_checkpoints([checkpoint, checkpoint | {"model": {"bias": torch.zeros(2)}}])


def test_two_cpu_processes_under_torchrun_end_with_identical_weights(cache, tmp_path):
    config_path = tmp_path / "ddp.yaml"
    config = tiny_config(cache, tmp_path / "run", max_steps=3, checkpoint_every=3)
    config["schedule"]["batch_size"] = 1  # 2 processes × 1 = a global batch of 2
    config_path.write_text(yaml.safe_dump(config))
    environment = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS_DIR.parent)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(TESTS_DIR / "ddp_train_worker.py"), str(config_path), str(tmp_path)],
        env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["step"] == 3
    for name, tensor in ranks[0]["state"].items():
        assert torch.equal(tensor, ranks[1]["state"][name]), name
        assert torch.equal(tensor, checkpoint["model"][name]), name  # rank 0 checkpointed what it trained


def test_sampler_shards_are_disjoint_deterministic_and_resumable():
    shards = [ResumableSampler(10, batch_size=2, seed=5, rank=rank, world_size=2) for rank in (0, 1)]
    for shard in shards:
        shard.set_epoch(1)
    first, second = (list(shard) for shard in shards)
    indices = [index for index, _ in first + second]
    assert len(indices) == 8 and len(set(indices)) == 8  # 10 images = 2 global batches of 4, 2 dropped
    assert first == list(shards[0])  # the same epoch again: the same order and sample seeds
    shards[0].set_epoch(1, start_batch=1)
    assert list(shards[0]) == first[2:]
    shards[0].set_epoch(2)
    assert list(shards[0]) != first


def test_config_overrides_and_typos(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "model": "tiny-x4", "optim": {"lr": "2e-4", "betas": [0.9, 0.99]}}))
    config = load_train_config(path, ["schedule.max_steps=7", "optim.scheduler=cosine"])
    assert config.optim.lr == 2e-4 and config.optim.betas == (0.9, 0.99)
    assert config.schedule.max_steps == 7 and config.optim.scheduler == "cosine"
    assert config.run_dir == Path("runs/x")
    with pytest.raises(ValueError, match="unknown keys"):
        load_train_config(path, ["optim.learning_rate=1"])
    weighted = load_train_config(path, ["data.oversample={celebamask-hq: 4}"])
    assert weighted.data.oversample == {"celebamask-hq": 4}
    with pytest.raises(ValueError, match="integer"):
        load_train_config(path, ["data.oversample={celebamask-hq: 1.5}"])


@pytest.mark.parametrize(
    "name",
    [
        "release-x8",
        "release-x4",
        "release-x8-finetune",
        "release-x4-finetune",
        "release-x8-stage3",
        "ablation-x8-backbone",
        "paper-x8",
        "paper-x4",
        "gpu-x8-grow",
    ],
)
def test_shipped_configs_load(name):
    config = load_train_config(name)
    assert config.name == name
    from training.trainer import build_model_config

    # Each config trains at the scale its name says, on a model config of that scale.
    scale = int(name.split("-x")[1][0])
    model_config = build_model_config(config)
    assert model_config.scale == scale and model_config.name.endswith(f"-x{scale}")


def test_precision_auto_follows_the_hardware(monkeypatch):
    from training import trainer

    cpu = torch.device("cpu")
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: True)
    assert trainer.resolve_precision("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    assert trainer.resolve_precision("auto", cpu) is None
    assert trainer.resolve_precision("bf16", cpu) == torch.bfloat16
    assert trainer.resolve_precision("fp32", cpu) is None
    with pytest.raises(ValueError, match="needs CUDA"):
        trainer.resolve_precision("fp16", cpu)


def test_a_non_finite_step_stops_training_before_it_reaches_the_weights(cache, tmp_path):
    trainer = Trainer(train_config_from_dict(tiny_config(cache, tmp_path)))
    loader, _ = trainer._train_loader()
    batch = next(iter(loader))
    trainer.train_step(batch)
    weights_before = {name: p.detach().clone() for name, p in trainer.net.named_parameters()}

    poisoned = dict(batch, hr=batch["hr"].clone())
    poisoned["hr"][0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteTrainingError, match="non-finite training step"):
        trainer.train_step(poisoned)
    for name, p in trainer.net.named_parameters():
        assert torch.equal(p, weights_before[name]), name


def test_data_loader_workers_outlive_epochs_without_changing_the_result(cache, tmp_path):
    # 6 images, batch 2: 3 batches per epoch, so 4 steps run into a second epoch of the same workers.
    in_process = Trainer(train_config_from_dict(tiny_config(cache, tmp_path / "in-process")))
    in_process.fit()
    config = tiny_config(cache, tmp_path / "workers")
    config["data"]["num_workers"] = 2
    with_workers = Trainer(train_config_from_dict(config))
    loader, _ = with_workers._train_loader()
    assert loader.persistent_workers
    with_workers.fit()
    for name, tensor in in_process.net.state_dict().items():
        assert torch.equal(tensor, with_workers.net.state_dict()[name]), name
