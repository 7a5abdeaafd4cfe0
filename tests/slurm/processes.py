"""The cluster's processes, by PID: is it still the one we started, stop it, reap it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

# seconds
STOP_TIMEOUT = 10


def _proc_start_time(pid: int) -> int | None:
    """Kernel start time of a pid (field 22 of /proc/<pid>/stat), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces/parens: split after the last ')'
    rest = stat.rsplit(")", 1)[1].split()
    return int(rest[19])


def _proc_is(pid: int, start_time: int | None, name: str) -> bool:
    """True if pid is alive (not a zombie), is the process we recorded and runs `name`.

    Uses the kernel's comm (from /proc/<pid>/stat), not /proc/<pid>/cmdline: right
    after exec, cmdline can still be empty (seen under gVisor), comm never is.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    rest = stat.rsplit(")", 1)[1].split()
    if rest[0] in ("Z", "X"):
        return False
    if start_time is not None and int(rest[19]) != start_time:
        return False
    return comm == name[:15]


def _terminate(pid: int, start_time: int | None, name: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, wait, then SIGKILL one recorded daemon (only if it is still ours)."""
    if not _proc_is(pid, start_time, name):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            if not _proc_is(pid, start_time, name):
                return
            time.sleep(0.1)


def _reap(pid: int) -> None:
    """Collect a zombie child of ours (daemons started by this process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _kill_stepds(root: str | Path) -> None:
    """Kill slurmstepd processes left over from the cluster rooted at `root`.

    slurmd is started with cwd=root and its slurmstepd children inherit it, so
    /proc/<pid>/cwd identifies exactly the job-step daemons of that cluster.
    """
    root = str(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.readlink(f"/proc/{pid}/cwd") != root:
                continue
        except OSError:
            continue
        if _proc_is(pid, None, "slurmstepd"):
            _terminate(pid, _proc_start_time(pid), "slurmstepd", timeout=3)
