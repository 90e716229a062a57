"""The training loop's schedules and budget (training.schedule), and the cache reader (training.data.cache)."""

from __future__ import annotations

import pytest

from training.config import ScheduleConfig, train_config_from_dict
from training.data.cache import TrainingCache, is_cache
from training.data.synthetic import write_generated_cache
from training.schedule import LossWindow, budget_spent, due, training_progress


def test_schedules_fire_on_their_multiples_and_at_the_end():
    assert [step for step in range(1, 13) if due(step, 5, finished=False)] == [5, 10]
    assert due(12, 5, finished=True)


def test_the_budget_is_steps_or_time_whichever_runs_out_first():
    steps_only = ScheduleConfig(max_steps=100)
    assert not budget_spent(99, 1e9, steps_only) and budget_spent(100, 0.0, steps_only)
    timed = ScheduleConfig(max_steps=100, time_budget_minutes=1.0)
    assert not budget_spent(10, 59.0, timed) and budget_spent(10, 60.0, timed)
    config = train_config_from_dict({"name": "t", "model": "tiny-x8", "schedule": {"max_steps": 100, "time_budget_minutes": 1.0}})
    assert training_progress(10, 30.0, config) == 0.5  # time ran out faster than steps
    assert training_progress(80, 30.0, config) == 0.8
    assert training_progress(80, 600.0, config) == 1.0


def test_loss_window_means_and_starts_afresh():
    window = LossWindow()
    window.add({"total": 1.0, "l1": 0.5})
    window.add({"total": 3.0, "l1": 1.5})
    row = window.row(images_per_step=4)
    assert (row["total"], row["l1"]) == (2.0, 1.0) and row["images_per_s"] > 0
    window.add({"total": 5.0})
    assert window.row(images_per_step=4)["total"] == 5.0


def test_cache_reader_entries_counts_and_errors(tmp_path):
    folder = write_generated_cache(tmp_path / "cache", train=3, val=2)
    cache = TrainingCache(folder)
    assert is_cache(folder) and not is_cache(tmp_path)
    assert [e["row"] for e in cache.entries("val")] == [3, 4]
    assert len(cache.entries("all")) == 5 and cache.entries("val", source="other") == []
    assert cache.counts() == {"train": {"generated": 3}, "val": {"generated": 2}}
    arrays = cache.arrays(8)
    assert arrays["hr"].shape == (5, 128, 128, 3) and arrays["lr"].shape == (5, 16, 16, 3)
    val = cache.split_arrays("val", 8, limit=1)
    assert val["lr"].shape == (1, 16, 16, 3) and (val["hr"][0] == arrays["hr"][3]).all()
    assert val["parsing"].shape == (1, 128, 128)
    with pytest.raises(ValueError, match="split"):
        cache.entries("test")
    with pytest.raises(FileNotFoundError, match="×2"):
        cache.arrays(2)
    with pytest.raises(FileNotFoundError, match="not a prepare-data cache"):
        TrainingCache(tmp_path).index  # noqa: B018
