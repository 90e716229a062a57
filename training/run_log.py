"""Training logs: one CSV file per stream (train.csv, val.csv) and TensorBoard when installed."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any


class RunLog:
    """Appends rows to ``<run_dir>/<stream>.csv``; a resumed run keeps appending to the same files.

    A stream's columns are fixed by its first row; rows written after a resume that have new
    keys go to the same file with the original header (new keys are dropped, missing ones empty).
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._columns: dict[str, list[str]] = {}
        self._writer = None
        if tensorboard and importlib.util.find_spec("torch.utils.tensorboard") and importlib.util.find_spec(
            "tensorboard"
        ):
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, stream: str, row: dict[str, Any]) -> None:
        path = self.run_dir / f"{stream}.csv"
        columns = self._columns.get(stream)
        if columns is None:
            columns = self._read_header(path) or list(row)
            self._columns[stream] = columns
            if not path.exists() or path.stat().st_size == 0:
                with path.open("w", newline="") as handle:
                    csv.writer(handle).writerow(columns)
        with path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore").writerow(row)
        if self._writer is not None and "step" in row:
            for key, value in row.items():
                if key != "step" and isinstance(value, int | float):
                    self._writer.add_scalar(f"{stream}/{key}", value, int(row["step"]))

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step`: a run killed after its last checkpoint resumes from there."""
        for path in self.run_dir.glob("*.csv"):
            with path.open(newline="") as handle:
                rows = list(csv.reader(handle))
            if not rows or "step" not in rows[0]:
                continue
            column = rows[0].index("step")
            kept = [rows[0]] + [row for row in rows[1:] if row and int(float(row[column])) <= step]
            with path.open("w", newline="") as handle:
                csv.writer(handle).writerows(kept)

    @staticmethod
    def _read_header(path: Path) -> list[str] | None:
        if not path.exists() or path.stat().st_size == 0:
            return None
        with path.open(newline="") as handle:
            return next(csv.reader(handle), None)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
