"""The verdicts of the acceptance checks (checks/): a report that misses a bar fails.

The checks themselves take minutes against a real `portraitsr serve` (or a GPU) and are run by
hand; their verdicts are plain functions of the report, tested here on the recorded reports.
"""

from __future__ import annotations

import copy
import json

import pytest
from service_helpers import REPO

from checks import gpu, hardening

RECORDED = [REPO / "benchmarks" / "results" / f"hardening-check-run{run}.json" for run in (1, 2)]


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.stem)
def test_the_recorded_hardening_reports_pass(path):
    assert hardening.failures(json.loads(path.read_text())) == []


@pytest.mark.parametrize(("part", "statuses"), [
    ("redis_kill_9", {"200": 160, "504": 1}),
    ("redis_kill_9", {"200": 160, "503": 2}),
    ("redis_kill_9", {"200": 160, "ReadTimeout": 1}),
    ("burst", {"200": 100, "429": 90, "500": 1}),
])
def test_a_lost_request_fails_the_hardening_check(part, statuses):
    report = copy.deepcopy(json.loads(RECORDED[0].read_text()))
    report[part]["statuses"] = statuses
    (failure,) = hardening.failures(report)
    assert failure.startswith(part)


def test_a_wrong_answer_to_a_key_or_a_missing_header_fails_the_hardening_check():
    report = copy.deepcopy(json.loads(RECORDED[0].read_text()))
    report["api_keys"]["wrong_key"] = 200
    report["page"]["x_frame_options"] = None
    report["redis_kill_9"]["restarted"] = False
    assert len(hardening.failures(report)) == 3


def gpu_report(max_abs_diff: float, provider: str, exit_code: int = 0, dry_run: bool = False) -> dict:
    return {"cpu_dry_run": dry_run, "parity": [{"model": "m", "provider": provider, "fallback": None,
                                                "max_abs_diff": max_abs_diff}],
            "training": {"exit_code": exit_code}, "torchrun": {"exit_code": 0}}


def test_the_gpu_check_fails_on_parity_a_cpu_fallback_or_a_failed_run():
    assert gpu.failures(gpu_report(1e-5, "CUDAExecutionProvider")) == []
    assert gpu.failures(gpu_report(0.0, "CPUExecutionProvider", dry_run=True)) == []
    assert "differ" in " ".join(gpu.failures(gpu_report(0.01, "CUDAExecutionProvider")))
    assert "CPUExecutionProvider" in " ".join(gpu.failures(gpu_report(1e-5, "CPUExecutionProvider")))
    assert "training: exit 1" in gpu.failures(gpu_report(1e-5, "CUDAExecutionProvider", exit_code=1))
