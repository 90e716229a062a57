"""`portraitsr restore`: whole photos in-process, as a real subprocess (exit status and messages as a user sees them)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from service_helpers import REPO, build_fixture_release
from test_service_restore import background, bicubic, build_release, group_photo


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return build_release(tmp_path_factory.mktemp("release"))


def run_restore(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "portraitsr.cli", "restore", *map(str, args), "--threads", "1"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)


def test_photos_in_a_folder_are_restored_and_a_broken_one_is_reported(manifest, tmp_path):
    inputs = tmp_path / "in"
    (inputs / "trip").mkdir(parents=True)
    photo = group_photo()
    Image.fromarray(photo).save(inputs / "trip" / "group.png")
    Image.fromarray(background(40, 60)).save(inputs / "empty.png")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    output = tmp_path / "out"
    result = run_restore(inputs, "-o", output, "--scale", "4", "--manifest", manifest)
    assert result.returncode == 1, result.stderr
    assert "3 faces restored" in result.stdout and "0 faces restored" in result.stdout
    assert "broken.png" in result.stderr
    # The ×4 model of this release restores nothing: the photo comes back as its bicubic upscale.
    np.testing.assert_array_equal(np.asarray(Image.open(output / "trip" / "group.png")), bicubic(photo, 4))
    assert Image.open(output / "empty.png").size == (240, 160)


def test_usage_errors(manifest, tmp_path):
    assert run_restore(tmp_path / "missing.png", "-o", tmp_path / "out", "--manifest", manifest).returncode == 2
    Image.fromarray(background(20, 20)).save(tmp_path / "a.png")
    assert run_restore(tmp_path / "a.png", "-o", tmp_path / "out", "--batch-size", "0", "--manifest", manifest).returncode == 2


def test_model_auto_picks_the_model_per_photo(tmp_path):
    release = build_fixture_release(tmp_path / "release", variants=("clean", "real"))
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(group_photo()).save(inputs / "scan.png")
    Image.fromarray(group_photo()).save(inputs / "phone.jpg", quality=70)
    result = run_restore(inputs, "-o", tmp_path / "out", "--scale", "4", "--manifest", release)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert lines[str(inputs / "scan.png")] == "3 faces restored (fixture-x4)"
    assert lines[str(inputs / "phone.jpg")] == "3 faces restored (fixture-real-x4)"
    result = run_restore(inputs / "phone.jpg", "-o", tmp_path / "forced", "--scale", "4", "--manifest", release,
                         "--model", "clean")
    assert result.returncode == 0 and "(fixture-x4)" in result.stdout
