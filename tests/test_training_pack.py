"""The training pack: written within its budget, read back as a cache training reads, checksummed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from portraitsr.cli import main as portraitsr_main
from training.data.cache import TrainingCache
from training.data.dataset import FaceDataset
from training.data.degrade import bicubic_downsample
from training.data.pack import (
    HR_BLOB,
    MANIFEST_FILE,
    PackError,
    PackOptions,
    packing_order,
    read_manifest,
    train_oversample,
    unpack,
    write_pack,
)
from training.data.synthetic import write_generated_cache
from training.metrics import psnr_y

BIG = 64 * 2**20


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Two sources: 12 + 3 faces of 'generated' and, renamed, 6 + 2 of 'sharp'."""
    folder = write_generated_cache(tmp_path_factory.mktemp("cache"), train=18, val=5, seed=4)
    index = json.loads((folder / "index.json").read_text())
    for entry in index:
        if entry["row"] >= 12 and entry["split"] == "train" or entry["row"] >= 21:
            entry["dataset"] = "sharp"
    (folder / "index.json").write_text(json.dumps(index))
    return folder


def test_a_pack_unpacks_into_a_cache_that_training_reads(cache, tmp_path):
    manifest = write_pack(cache, tmp_path / "pack", PackOptions(max_bytes=BIG, quality=90))
    unpacked = unpack(tmp_path / "pack", tmp_path / "unpacked")

    original, copy = TrainingCache(cache), TrainingCache(unpacked)
    assert manifest["faces"] == len(original.index) == 23 and manifest["dropped"] == 0
    assert copy.counts() == original.counts()
    assert copy.scales() == original.scales() == [4, 8]
    by_source = {entry["source"]: entry for entry in original.index}
    for entry in copy.index:
        before = by_source[entry["source"]]
        assert {k: v for k, v in entry.items() if k != "row"} == {k: v for k, v in before.items() if k != "row"}
        # Parsing maps are lossless; faces lose a little to WebP; LR is made from the decoded face.
        assert np.array_equal(copy.parsing()[entry["row"]], original.parsing()[before["row"]])
        face = copy.hr()[entry["row"]]
        assert psnr_y(face, original.hr()[before["row"]]) > 35.0
        for scale in (4, 8):
            assert np.array_equal(np.load(unpacked / f"lr_x{scale}.npy")[entry["row"]], bicubic_downsample(face, scale))
    item = FaceDataset(unpacked, "train", scale=8)[0]
    assert item["lr"].shape == (3, 16, 16) and item["hr"].shape == (3, 128, 128)


def test_a_small_budget_keeps_every_held_out_face_and_says_what_it_dropped(cache, tmp_path):
    full = write_pack(cache, tmp_path / "full", PackOptions(max_bytes=BIG))
    budget = sum(f["bytes"] for f in full["files"].values()) * 2 // 3 + 16 * 1024
    manifest = write_pack(cache, tmp_path / "pack", PackOptions(max_bytes=budget))

    size = sum(path.stat().st_size for path in (tmp_path / "pack").iterdir())
    assert size <= budget
    counts = manifest["datasets"]
    assert all(c["val"]["packed"] == c["val"]["cache"] for c in counts.values())
    train_packed = sum(c["train"]["packed"] for c in counts.values())
    assert 0 < train_packed < 18
    assert manifest["dropped"] == 18 - train_packed == sum(c["train"]["dropped"] for c in counts.values())
    assert TrainingCache(unpack(tmp_path / "pack", tmp_path / "unpacked")).counts()["val"] == {"generated": 3, "sharp": 2}


def test_a_budget_too_small_for_the_held_out_faces_is_refused(cache, tmp_path):
    with pytest.raises(PackError, match="held-out"):
        write_pack(cache, tmp_path / "pack", PackOptions(max_bytes=20 * 1024))


def test_weighted_order_prefers_weighted_sources_in_proportion():
    entries = [{"dataset": name, "split": "train"} for name in ("a", "b") for _ in range(2000)]
    entries += [{"dataset": "b", "split": "val"}] * 3
    order = packing_order(entries, {"a": 4}, seed=0)
    assert order[:3] == [4000, 4001, 4002]  # held-out first
    first = [entries[i]["dataset"] for i in order[3:203]]
    # The first faces drawn come from 'a' four times as often as from 'b' (80 %); unweighted would be 50 %.
    assert 0.72 < first.count("a") / len(first) < 0.88
    assert packing_order(entries, {"a": 4}, seed=0) == order


def test_train_oversample_restores_the_mixture_of_a_source_that_ran_out():
    # Weighted 4:1 over 100 and 1000 faces, the whole cache gives a 400:1000 mixture.
    assert train_oversample({"a": 100, "b": 1000}, {"a": 40, "b": 100}, {"a": 4}) == {"a": 1, "b": 1}
    assert train_oversample({"a": 100, "b": 1000}, {"a": 100, "b": 500}, {"a": 4}) == {"a": 2, "b": 1}


def test_a_damaged_pack_is_refused(cache, tmp_path):
    write_pack(cache, tmp_path / "pack", PackOptions(max_bytes=BIG))
    blob = tmp_path / "pack" / HR_BLOB
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(PackError, match="sha256"):
        unpack(tmp_path / "pack", tmp_path / "unpacked")
    assert not (tmp_path / "unpacked").exists()


def test_source_weights_must_name_datasets_of_the_cache(cache, tmp_path):
    with pytest.raises(PackError, match="not in the cache"):
        write_pack(cache, tmp_path / "pack", PackOptions(max_bytes=BIG, source_weights={"celebamask-hq": 4}))


def test_pack_data_command_takes_the_weights_from_a_training_config(cache, tmp_path, capsys):
    config = tmp_path / "weights.yaml"
    config.write_text("name: w\nmodel: tiny-x8\ndata:\n  oversample:\n    sharp: 3\n")
    status = portraitsr_main([
        "pack-data", "--cache", str(cache), "--out", str(tmp_path / "pack"), "--max-mib", "5",
        "--weights-from", str(config), "--format", "jpeg", "--quality", "95",
    ])  # fmt: skip
    assert status == 0
    manifest = read_manifest(tmp_path / "pack")
    assert manifest["source_weights"] == {"sharp": 3} and manifest["image"]["format"] == "jpeg"
    assert (tmp_path / "pack" / MANIFEST_FILE).is_file()
    assert "23 faces packed, 0 dropped" in capsys.readouterr().out
