"""The training loop: one process, or one of several under `torchrun` (DDP).

`Trainer(config).fit(resume=...)` trains for `schedule.max_steps` optimizer steps. Rank 0 alone
shows the progress bar, writes logs, validates and saves checkpoints; every rank computes the
same steps on its share of each global batch.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from model.config import ModelConfig, load_model_config
from model.growth import growth_changes, load_grown
from model.network import PortraitSR
from training.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from training.config import TrainConfig
from training.data.cache import TrainingCache, is_cache
from training.distributed import (
    DistributedContext,
    all_reduce_mean,
    barrier,
    broadcast_object,
    gather_objects,
    init_distributed,
)
from training.losses import LossWeights, PortraitSRLoss
from training.run_log import RunLog
from training.sampling import ResumableSampler, SeededSamples
from training.schedule import LossWindow, budget_spent, due, lr_factor, training_progress
from training.validation import validate


def build_model_config(config: TrainConfig) -> ModelConfig:
    return load_model_config(config.model).replace(**config.model_overrides)


def resolve_precision(requested: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32.

    ``auto``: bf16 on CUDA where supported (else fp16 with a GradScaler); bf16 on a CPU with native
    bf16 instructions (AVX-512 BF16 or AMX, where it trains ~1.5–2.4× faster); fp32 elsewhere.
    """
    if requested == "fp32":
        return None
    if device.type == "cuda":
        if requested == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[requested]
    if requested == "fp16":
        raise ValueError("precision 'fp16' needs CUDA; use bf16, fp32 or auto on CPU")
    if requested == "auto":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return torch.bfloat16  # explicit bf16 on CPU: emulated (slow) where the CPU lacks the instructions


def precision_name(amp_dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[amp_dtype]


def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 arithmetic (x86 AVX-512 BF16 / AMX-BF16, Arm BF16): from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def describe_hardware(context: DistributedContext) -> str:
    if context.device.type == "cuda":
        name = torch.cuda.get_device_name(context.device)
        return f"{context.world_size}× {name} (CUDA)"
    return (
        f"{context.world_size} process(es) × {torch.get_num_threads()} torch thread(s) on CPU "
        f"({_cpu_model()}, {os.cpu_count()} cores visible)"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class NonFiniteTrainingError(RuntimeError):
    """A step produced a non-finite loss or gradient; raised before the optimizer applies it."""

    def __init__(self, step: int, loss: float, grad_norm: float):
        self.step = step
        super().__init__(
            f"step {step}: non-finite training step (loss {loss}, gradient norm {grad_norm}); stopped "
            "before the update, so the weights and every checkpoint stay finite. Resume from the "
            "run's last.pt, and if it recurs try --set runtime.compile=false or runtime.precision=fp32"
        )


class Trainer:
    def __init__(self, config: TrainConfig, context: DistributedContext | None = None):
        self.config = config
        if config.runtime.threads:
            torch.set_num_threads(config.runtime.threads)
        self.context = context or init_distributed(config.runtime.device)
        self.device = self.context.device
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed batch and face size: pick the fastest kernels once
        self.amp_dtype = resolve_precision(config.runtime.precision, self.device)
        self.run_dir = config.run_dir

        # Same initial weights on every rank: seed before building the network.
        torch.manual_seed(config.seed)
        self.model_config = build_model_config(config)
        self.net = PortraitSR(self.model_config).to(self.device)
        if config.loss.reconstruction == 0:
            self._freeze_reconstruction_branch()
        self.model: torch.nn.Module = self.net
        if self.context.is_distributed:
            self.model = DistributedDataParallel(
                self.net,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=config.runtime.find_unused_parameters,
            )
        if config.runtime.compile:
            # The training forward only: checkpoints, validation and export use the plain network.
            self.model = torch.compile(self.model)
        self.loss_fn = PortraitSRLoss(LossWeights(**vars(config.loss))).to(self.device)
        self.optimizer = torch.optim.Adam(
            [p for p in self.net.parameters() if p.requires_grad],
            lr=config.optim.lr,
            betas=config.optim.betas,
            weight_decay=config.optim.weight_decay,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.step = 0
        self.current_lr = config.optim.lr
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_val_psnr = -math.inf
        self.train_seconds = 0.0
        self.hardware = describe_hardware(self.context)
        self.data_summary: dict[str, Any] = {}
        self.previous_stages: list[dict[str, Any]] = []  # training stages before init_from, oldest first

    def _freeze_reconstruction_branch(self) -> None:
        """λ3 = 0: the HR reconstruction branch (E_rec and the ATP dictionary it trains) is skipped.

        The SR path reads the dictionary detached, so without L_rec only the tiny diversity term
        would move it; freezing keeps a dictionary learned in an earlier stage intact (fine-tuning)
        and lets DDP ignore the unused parameters.
        """
        frozen = [self.net.rec_encoder, self.net.atp]
        for module in frozen:
            if module is not None:
                module.requires_grad_(False)

    # ----------------------------------------------------------------------------- data
    def _train_loader(self) -> tuple[DataLoader, ResumableSampler]:
        from training.data.dataset import FaceDataset

        dataset = FaceDataset(
            self.config.data.cache_dir,
            split="train",
            scale=self.model_config.scale,
            augment=self.config.data.augment,
            oversample=self.config.data.oversample,
            degradation=self.config.data.degradation,
        )
        self.data_summary = summarize_cache(self.config.data.cache_dir)
        sampler = ResumableSampler(
            len(dataset),
            self.config.schedule.batch_size,
            self.config.seed,
            rank=self.context.rank,
            world_size=self.context.world_size,
        )
        loader = DataLoader(
            SeededSamples(dataset),
            batch_size=self.config.schedule.batch_size,
            sampler=sampler,
            num_workers=self.config.data.num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            # Workers outlive an epoch: a training pack's epoch is ~50 GPU steps, and starting the
            # workers again at each one would idle the GPU. Samples carry their own seeds
            # (SeededSamples), so this changes no result.
            persistent_workers=self.config.data.num_workers > 0,
            # Workers start from a clean fork server, not a fork of this process: forking a process
            # whose runtime thread pools (OpenMP, OpenCV, OpenVINO's TBB) are live can crash.
            multiprocessing_context="forkserver" if self.config.data.num_workers > 0 else None,
        )
        return loader, sampler

    # ----------------------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(),
            "model_config": self.model_config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_val_psnr": self.best_val_psnr,
            "train_seconds": self.train_seconds,
            "hardware": self.hardware,
            "precision": precision_name(self.amp_dtype),
            "data_summary": self.data_summary,
            "train_config": self.config.to_dict(),
            "previous_stages": self.previous_stages,
        }

    def save(self, names: list[str], extra: dict[str, Any] | None = None) -> None:
        """Collective: every rank contributes its random state; rank 0 writes the files."""
        rng_states = gather_objects(capture_rng_state(), self.context)
        if not self.context.is_main:
            return
        payload = self.state() | {"rng": rng_states} | (extra or {})
        for name in names:
            save_checkpoint(payload, self.run_dir / name)
        self._prune_step_checkpoints()

    def _prune_step_checkpoints(self) -> None:
        keep_every = self.config.schedule.keep_every
        numbered = sorted(
            (path for path in self.run_dir.glob("step-*.pt") if not keep_every or checkpoint_step(path) % keep_every),
            key=checkpoint_step,
        )
        for path in numbered[: max(0, len(numbered) - self.config.schedule.keep_checkpoints)]:
            path.unlink()

    def _load_matching_network(self, checkpoint: dict[str, Any], path: str | Path) -> None:
        """The checkpoint's weights into the network; its model config must be ours."""
        saved_config = ModelConfig.from_dict(checkpoint["model_config"])
        if saved_config != self.model_config:
            raise ValueError(f"{path} was trained with a different model config: {saved_config} vs {self.model_config}")
        self.net.load_state_dict(checkpoint["model"])

    def load(self, path: str | Path) -> None:
        checkpoint = load_checkpoint(path)
        self._load_matching_network(checkpoint, path)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.step = checkpoint["step"]
        self.epoch = checkpoint["epoch"]
        self.batch_in_epoch = checkpoint["batch_in_epoch"]
        self.best_val_psnr = checkpoint["best_val_psnr"]
        self.train_seconds = checkpoint["train_seconds"]
        self.previous_stages = checkpoint.get("previous_stages", [])
        rng_states = checkpoint["rng"]
        restore_rng_state(rng_states[self.context.rank % len(rng_states)])

    def load_weights(self, path: str | Path) -> None:
        """Network weights only (fine-tuning): optimizer, schedule and step start afresh.

        A checkpoint of a shallower model of the same family starts a deeper one: its blocks keep
        their weights and the new ones start as identities (model/growth.py).
        """
        checkpoint = load_checkpoint(path)
        saved_config = ModelConfig.from_dict(checkpoint["model_config"])
        if growth_changes(saved_config, self.model_config):
            new_blocks = load_grown(self.net, checkpoint["model"], saved_config, self.model_config)
            if self.context.is_main:
                print(f"grew {path} into {self.model_config.name}: {len(new_blocks)} new blocks start as identities")
        else:
            self._load_matching_network(checkpoint, path)
        self.previous_stages = [*checkpoint.get("previous_stages", []), stage_summary(checkpoint, path)]

    # --------------------------------------------------------------------------- training
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimizer step on `batch`; returns the loss terms (averaged over ranks)."""
        self.model.train()
        progress = training_progress(self.step, self.train_seconds, self.config)
        self.current_lr = self.config.optim.lr * lr_factor(self.step, progress, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = self.current_lr
        lr = batch["lr"].to(self.device, non_blocking=True)
        hr = batch["hr"].to(self.device, non_blocking=True)
        parsing = batch["parsing"].to(self.device, non_blocking=True)
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            # λ3 = 0: no HR input, so the network skips the reconstruction branch (35 % of a CPU step).
            output = self.model(lr, hr=hr if self.config.loss.reconstruction > 0 else None)
        # Losses in fp32: small L1 differences vanish in bf16.
        total, terms = self.loss_fn(output_to_float32(output), hr, parsing, self.net.diversity_loss())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.config.optim.grad_clip or not self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.optim.grad_clip or math.inf)
            # fp16's GradScaler skips non-finite steps by design; anywhere else one would turn every
            # weight into NaN, and the next checkpoint with it. DDP has already averaged the
            # gradients, so every rank sees the same norm and stops together.
            if not self.scaler.is_enabled() and not torch.isfinite(grad_norm):
                raise NonFiniteTrainingError(self.step + 1, float(total.detach()), float(grad_norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        names = ["total", *sorted(terms)]
        values = torch.stack([total.detach().float(), *(terms[name].detach().float() for name in names[1:])])
        values = all_reduce_mean(values, self.context).tolist()
        return dict(zip(names, values, strict=True))

    def fit(self, resume: str | Path | None = None) -> dict[str, Any]:
        loader, sampler = self._train_loader()
        if resume:
            self.load(resume)
        elif self.config.init_from:
            self.load_weights(self.config.init_from)
        log = self._open_run_log()
        progress = self._progress_bar()
        window = LossWindow()
        last_val: dict[str, str] = {}
        try:
            while not self._finished():
                self._start_epoch(sampler)
                clock = time.perf_counter()  # training time counts data loading, not validation or checkpoints
                for batch in loader:
                    terms = self.train_step(batch)
                    self._count_step(time.perf_counter() - clock)
                    window.add(terms)
                    if progress is not None:
                        progress.update(1)
                        progress.set_postfix({name: f"{value:.4f}" for name, value in terms.items()} | last_val)
                    finished = self._finished()
                    last_val = self._run_schedules(window, log, finished) or last_val
                    clock = time.perf_counter()
                    if finished:
                        break
        finally:
            if progress is not None:
                progress.close()
            if log is not None:
                log.close()
        return {"step": self.step, "best_val_psnr": self.best_val_psnr, "train_seconds": self.train_seconds}

    def _open_run_log(self) -> RunLog | None:
        """Rank 0's log, cut back to the checkpoint's step on resume; None on other ranks."""
        if not self.context.is_main:
            return None
        log = RunLog(self.run_dir, tensorboard=self.config.runtime.tensorboard)
        log.truncate_after(self.step)
        (self.run_dir / "train_config.json").write_text(_json(self.config.to_dict()))
        return log

    def _start_epoch(self, sampler: ResumableSampler) -> None:
        if self.batch_in_epoch >= sampler.batches_per_epoch:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        sampler.set_epoch(self.epoch, self.batch_in_epoch)

    def _count_step(self, seconds: float) -> None:
        self.train_seconds += seconds
        if self.config.schedule.time_budget_minutes and self.context.is_distributed:
            # The time budget steers the learning rate: every rank must use rank 0's clock.
            self.train_seconds = broadcast_object(self.train_seconds, self.context)
        self.step += 1
        self.batch_in_epoch += 1

    def _run_schedules(self, window: LossWindow, log: RunLog | None, finished: bool) -> dict[str, str] | None:
        """Log, validate and save when their schedules are due; the validation summary if it ran."""
        schedule = self.config.schedule
        if due(self.step, schedule.log_every, finished):
            row = {"step": self.step, "epoch": self.epoch, "lr": self.current_lr}
            row |= window.row(schedule.batch_size * self.context.world_size)
            row["train_seconds"] = self.train_seconds
            if self.device.type == "cuda":
                row["cuda_max_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
            if log is not None:
                log.write("train", row)
        validated = None
        if due(self.step, schedule.val_every, finished):
            validated = self._validate_and_keep_best(log)
            window.restart_clock()
        if due(self.step, schedule.checkpoint_every, finished):
            self.save(["last.pt", f"step-{self.step:07d}.pt"])
        return validated

    def _finished(self) -> bool:
        return budget_spent(self.step, self.train_seconds, self.config.schedule)

    def _validate_and_keep_best(self, log: RunLog | None) -> dict[str, str]:
        result: dict[str, float] = {}
        if self.context.is_main:
            result = validate(
                self.net,
                self.config.data.cache_dir,
                self.model_config.scale,
                self.config.data.val_images,
                inputs=self.config.data.val_inputs,
            )
            if log is not None:
                log.write("val", {"step": self.step} | result)
        result = broadcast_object(result, self.context)
        if result and result["psnr_y"] > self.best_val_psnr:
            self.best_val_psnr = result["psnr_y"]
            self.save(["best.pt"])
        barrier(self.context)
        return {"val_psnr": f"{result['psnr_y']:.2f}"} if result else {}

    def _progress_bar(self):
        if not self.context.is_main:
            return None
        from tqdm import tqdm

        return tqdm(
            total=self.config.schedule.max_steps,
            initial=self.step,
            desc=self.config.name,
            unit="step",
            dynamic_ncols=True,
            mininterval=2.0,
        )


def checkpoint_step(path: Path) -> int:
    """The step of a numbered checkpoint, ``step-0001500.pt`` → 1500."""
    return int(path.stem.split("-")[1])


def stage_summary(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """What a checkpoint's own training stage was: recorded in the checkpoints fine-tuned from it."""
    train_config = checkpoint["train_config"]
    return {
        "checkpoint": str(path),
        "config": train_config["name"],
        "steps": checkpoint["step"],
        "batch_size": train_config["schedule"]["batch_size"],
        "train_seconds": round(checkpoint["train_seconds"], 1),
        "hardware": checkpoint["hardware"],
        "precision": checkpoint.get("precision", "fp32"),  # checkpoints before bf16 on CPU were fp32
        "loss_weights": train_config["loss"],
        "optimizer": train_config["optim"],
        "data": {"cache_dir": train_config["data"]["cache_dir"], "images": checkpoint["data_summary"].get("images")},
        "averaged_steps": checkpoint.get("averaged_steps"),  # set when `average-checkpoints` made it
    }


def summarize_cache(cache_dir: str | Path) -> dict[str, Any]:
    """Image counts per split and source dataset of the training cache (for the manifest)."""
    if not is_cache(cache_dir):
        return {}
    return {"cache_dir": str(cache_dir), "images": TrainingCache(cache_dir).counts()}


def output_to_float32(output: Any) -> Any:
    """The network output with every floating tensor field cast to fp32 (autocast leaves some in bf16)."""
    import dataclasses

    changes = {
        field.name: value.float()
        for field in dataclasses.fields(output)
        if isinstance(value := getattr(output, field.name), torch.Tensor) and value.is_floating_point()
    }
    return dataclasses.replace(output, **changes)


def _json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, default=str) + "\n"
