"""Child processes that do not outlive the process that started them (Linux: ``PR_SET_PDEATHSIG``).

`portraitsr serve` runs redis-server, the workers and the API in sessions of their own, so that
Ctrl-C reaches only the supervisor. When the supervisor is killed outright (kill -9, the OOM
killer, a process manager's hard stop) it cannot stop them; without this they keep running and
keep the ports and the queue.

Why the kernel's parent-death signal rather than a pipe or pidfd watchdog inside each child: it
needs no cooperation from the child, so it covers redis-server (not our code) and a child whose
event loop is stuck, and it is set between fork and exec, so the child never runs without it.
Its sharp edges, handled here:

- it fires when the *thread* that forked the child ends, not the process: children are spawned
  from the main thread only (checked), which lives as long as the supervisor;
- the parent can die between fork and ``prctl``: the child then has another parent already and
  exits before exec (compared with the parent's pid, not with 1: a subreaper may adopt it);
- libc is resolved in the parent, so the child calls ``prctl`` without loading anything; like
  any ``preexec_fn`` it is safe only while the parent has no other threads (the supervisor has
  none).

Elsewhere than Linux it is a no-op: the children then outlive a killed supervisor.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_this_process(signal_number: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child receives ``signal_number`` when
    this process dies. None where the platform has no parent-death signal."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("spawn children that must die with this process from its main thread: "
                           "the parent-death signal fires when the forking thread ends")
    prctl = _prctl()
    parent = os.getpid()

    def in_child() -> None:
        if prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl: no signal would ever come
            os._exit(1)

    return in_child


@functools.cache
def _prctl():
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl
