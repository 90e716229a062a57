"""glibc malloc settings of the service's processes, and why (docs/service.md#soak-an-hour-under-load).

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which blocks
that size come from per-thread arenas (up to 8 per core) that keep them when freed: a burst of big
images leaves each thread's arena at its high-water mark for good. A fixed threshold turns that off:
blocks at or over it get a mapping of their own, returned to the kernel when freed. A user's own
``GLIBC_TUNABLES`` threshold wins over ours. Elsewhere (musl, macOS, jemalloc) these are no-ops.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

MMAP_THRESHOLD_TUNABLE = "glibc.malloc.mmap_threshold"
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt's parameter numbers (malloc.h)
# The API: decoded photos, the detector's pyramid and the pasted output are far larger than 1 MiB,
# and two arenas hold what is smaller. Measured (benchmarks/api_malloc.py: 40 threads searching and
# pasting 384 px photos, 2 cores): RSS 475-500 -> 234 MiB after the same work, for ~13 % more CPU.
API_MMAP_THRESHOLD = 1024 * 1024
API_ARENA_MAX = 2
# The private redis-server: a queued image is a few KiB, so every one of them.
REDIS_MALLOC_TUNABLES = f"{MMAP_THRESHOLD_TUNABLE}=4096"


def user_sets_threshold(environ: Mapping[str, str]) -> bool:
    return MMAP_THRESHOLD_TUNABLE in environ.get("GLIBC_TUNABLES", "")


def _mallopt():
    """glibc's ``mallopt``, or None where the C library has none."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def tune_api_malloc(environ: Mapping[str, str] = os.environ) -> bool:
    """The API process's malloc settings (``portraitsr api`` calls this first); False where they were
    left alone (the user's GLIBC_TUNABLES sets the threshold, or the C library is not glibc)."""
    mallopt = None if user_sets_threshold(environ) else _mallopt()
    if mallopt is None or mallopt(M_MMAP_THRESHOLD, API_MMAP_THRESHOLD) != 1:
        return False
    mallopt(M_ARENA_MAX, API_ARENA_MAX)
    return True


def redis_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The private redis-server's environment (it is another program: the threshold goes in through
    ``GLIBC_TUNABLES``): ours plus ``REDIS_MALLOC_TUNABLES`` unless the user's sets the threshold."""
    env = dict(os.environ if base is None else base)
    if not user_sets_threshold(env):
        tunables = env.get("GLIBC_TUNABLES", "")
        env["GLIBC_TUNABLES"] = f"{tunables}:{REDIS_MALLOC_TUNABLES}" if tunables else REDIS_MALLOC_TUNABLES
    return env
