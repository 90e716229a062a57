"""Is a TCP port free to listen on, and if not, which process holds it (Linux ``/proc``)?

`portraitsr serve` checks every port it is about to use before starting anything, so a port
already held is one clear error naming the holder instead of a half-started stack.
"""

from __future__ import annotations

import errno
import os
import re
import socket
from pathlib import Path

PROC = Path("/proc")
TCP_LISTEN = "0A"  # the state column of /proc/net/tcp
PORTRAITSR_COMMAND = re.compile(r"portraitsr (serve|api|worker)\b")


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound the way uvicorn and asyncio bind (SO_REUSEADDR, so
    connections in TIME_WAIT from an earlier run do not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def listening_pids(port: int) -> list[int]:
    """Pids with a socket listening on ``port`` (any address); those of other users are not visible."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return []
    targets = {f"socket:[{inode}]" for inode in inodes}
    pids = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and _holds_any(entry / "fd", targets):
            pids.append(int(entry.name))
    return sorted(pids)


def command_line(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def parent_pid(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after the command name, which may hold spaces


def _holds_any(fd_dir: Path, targets: set[str]) -> bool:
    try:
        names = os.listdir(fd_dir)
    except OSError:  # another user's process, or gone
        return False
    for name in names:
        try:
            if os.readlink(fd_dir / name) in targets:
                return True
        except OSError:
            continue
    return False


def port_in_use_message(port: int) -> str:
    """``PortraitSR is already running on :8000 (pid N)`` (N: its `serve` if it has one),
    ``port 8000 is in use by pid N (command)``, or that the holder cannot be seen."""
    pids = listening_pids(port)
    if not pids:
        return f"port {port} is in use (by a process this user cannot see)"
    pid = pids[0]
    parent = parent_pid(pid)
    if parent and _is_serve(command_line(parent)):  # its API, a worker or its Redis: name the `serve`
        return f"PortraitSR is already running on :{port} (pid {parent})"
    command = command_line(pid)
    if PORTRAITSR_COMMAND.search(command):
        return f"PortraitSR is already running on :{port} (pid {pid})"
    return f"port {port} is in use by pid {pid} ({command[:80] or 'unknown command'})"

def _is_serve(command: str) -> bool:
    found = PORTRAITSR_COMMAND.search(command)
    return found is not None and found.group(1) == "serve"
