"""What may travel to the GPU machine and what may come back from it, checked before it costs time.

The machine (docs/training.md#one-gpu-call) receives the checkout's tracked and untracked,
not-ignored files plus the carried paths — at most 64 MiB in all — and returns from ``$OUT`` at
most 8 files, each at most 16 MiB and 64 MiB together, no deeper than ``$OUT/a/b/file``, with
names of letters, digits, ``.``, ``_`` and ``-`` only. Anything else is silently left behind.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

MIB = 2**20
TRAVEL_LIMIT = 64 * MIB
RETURN_MAX_FILES = 8
RETURN_MAX_FILE = 16 * MIB
RETURN_MAX_TOTAL = 64 * MIB
RETURN_MAX_FOLDERS = 2  # $OUT/a/b/file comes back, $OUT/a/b/c/file does not
_NAME = re.compile(r"[A-Za-z0-9._-]+")


def travelling_bytes(checkout: str | Path) -> int:
    """Bytes of a checkout that travel without being carried: tracked files and untracked ones git
    does not ignore. Raises RuntimeError when ``checkout`` is not a git working tree."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=checkout, capture_output=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as error:
        raise RuntimeError(f"{checkout}: cannot list the files git would send ({error})") from error
    names = {name for name in listing.decode().split("\0") if name}
    return sum(path.stat().st_size for name in names if (path := Path(checkout) / name).is_file())


def return_problems(out_dir: str | Path) -> list[str]:
    """Why some of ``out_dir`` would not come back (empty: all of it does)."""
    out_dir = Path(out_dir)
    problems, files = [], []
    for path in sorted(out_dir.rglob("*")):
        relative = path.relative_to(out_dir)
        if not _NAME.fullmatch(path.name):
            problems.append(f"{relative}: name has characters other than letters, digits, '.', '_', '-'")
        if path.is_symlink():
            problems.append(f"{relative}: a link (links do not come back)")
        elif path.is_file():
            files.append(path)
            if len(relative.parts) - 1 > RETURN_MAX_FOLDERS:
                problems.append(f"{relative}: more than {RETURN_MAX_FOLDERS} folders down")
            if path.stat().st_size > RETURN_MAX_FILE:
                problems.append(f"{relative}: {path.stat().st_size / MIB:.2f} MiB > {RETURN_MAX_FILE // MIB} MiB")
    if len(files) > RETURN_MAX_FILES:
        problems.append(f"{len(files)} files > {RETURN_MAX_FILES}")
    total = sum(path.stat().st_size for path in files)
    if total > RETURN_MAX_TOTAL:
        problems.append(f"{total / MIB:.2f} MiB in all > {RETURN_MAX_TOTAL // MIB} MiB")
    return problems


def split_for_return(path: str | Path, part_bytes: int = RETURN_MAX_FILE) -> list[Path]:
    """Cut a file too large to come back into ``<name>.part0``, ``.part1``, … (``cat <name>.part*``
    joins them, for up to 10 parts); a file small enough stays whole. Returns the files."""
    path = Path(path)
    if path.stat().st_size <= part_bytes:
        return [path]
    parts = []
    with path.open("rb") as whole:
        while chunk := whole.read(part_bytes):
            part = path.with_name(f"{path.name}.part{len(parts)}")
            part.write_bytes(chunk)
            parts.append(part)
    path.unlink()
    return parts
