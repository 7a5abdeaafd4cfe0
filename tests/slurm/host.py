"""What this machine offers the test cluster: the binaries (or why it cannot run), CPUs,
memory and free ports."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENT_BINARIES = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel", "munge")


class SlurmHarnessError(RuntimeError):
    """The cluster could not be brought up (message includes daemon logs)."""


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


def skip_reason() -> str | None:
    """Why a real Slurm cannot run here, or None if it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the Slurm test cluster needs root (it writes /etc/slurm and runs slurmd)"
    missing = [b for b in DAEMONS + CLIENT_BINARIES if _which(b) is None]
    if missing:
        return "Slurm/munge binaries missing (" + ", ".join(missing) + "); run .ci/install-slurm.sh"
    return None


def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise SlurmHarnessError("cannot read MemTotal from /proc/meminfo")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _free_port(preferred: int, avoid: frozenset | set = frozenset()) -> int:
    if preferred not in avoid and _port_free(preferred):
        return preferred
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port
