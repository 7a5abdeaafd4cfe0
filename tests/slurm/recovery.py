"""One harness per machine, and clean-up after a crashed one: the lock, the state file (the
daemons' PIDs), the /etc/slurm backup, and cancelling the jobs of a cluster left running."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from .host import SlurmHarnessError
from .processes import _kill_stepds, _proc_is, _terminate

CONF_DIR = Path("/etc/slurm")
MANAGED_CONF_FILES = ("slurm.conf", "gres.conf", "cgroup.conf")
BACKUP_DIR = CONF_DIR / ".shardlens-harness-backup"
LOCK_FILE = Path("/var/lock/shardlens-slurm-harness.lock")
STATE_FILE = Path("/var/lib/shardlens-slurm-harness/state.json")


def _read_state() -> dict | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def _write_state(state: dict) -> None:
    from shardlens.atomic import atomic_open

    with atomic_open(STATE_FILE, "w") as handle:
        handle.write(json.dumps(state, indent=1))


def _backup_conf() -> None:
    """Move our managed files out of /etc/slurm (once; a leftover backup wins)."""
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    if BACKUP_DIR.exists():
        # a crashed run left a backup: the files now in /etc/slurm are ours
        return
    BACKUP_DIR.mkdir(mode=0o700)
    manifest = []
    for name in MANAGED_CONF_FILES:
        src = CONF_DIR / name
        if src.exists() or src.is_symlink():
            shutil.move(str(src), str(BACKUP_DIR / name))
            manifest.append(name)
    (BACKUP_DIR / "MANIFEST.json").write_text(json.dumps(manifest))


def _restore_conf() -> None:
    """Put /etc/slurm back the way it was before the harness touched it."""
    if not BACKUP_DIR.exists():
        return
    try:
        manifest = json.loads((BACKUP_DIR / "MANIFEST.json").read_text())
    except (OSError, ValueError):
        manifest = [n for n in MANAGED_CONF_FILES if (BACKUP_DIR / n).exists()]
    for name in MANAGED_CONF_FILES:
        dst = CONF_DIR / name
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if name in manifest and (BACKUP_DIR / name).exists():
            shutil.move(str(BACKUP_DIR / name), str(dst))
    shutil.rmtree(BACKUP_DIR, ignore_errors=True)


def _cancel_jobs(partition: str, timeout: float = 15) -> None:
    """scancel every job of the running test cluster and wait until they are gone
    (slurmd then kills the jobs' processes). Uses whatever /etc/slurm holds now."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_JOB", "SLURM_STEP"))}
    run = dict(env=env, capture_output=True, text=True, timeout=10, check=False)
    with contextlib.suppress(Exception):
        subprocess.run(["scancel", "--full", "--partition", partition], **run)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(["squeue", "-h", "-t", "PD,R,CG,CF,S", "-o", "%i"], **run)
            if out.returncode != 0 or not out.stdout.strip():
                return
            time.sleep(0.5)


def cleanup_stale() -> None:
    """Clean up after an earlier crashed run: cancel its jobs, kill its daemons (by
    recorded PID + start time) and job steps, restore /etc/slurm.

    Only call while holding the harness lock.
    """
    state = _read_state()
    if state:
        daemons = state.get("daemons", [])
        ctld = [d for d in daemons if d["name"] == "slurmctld"]
        if ctld and _proc_is(ctld[0]["pid"], ctld[0].get("start_time"), "slurmctld"):
            # its config is still in /etc/slurm: let Slurm stop the jobs cleanly
            _cancel_jobs(state.get("partition", "main"))
        # stop in reverse start order: slurmd, slurmctld, munged
        for entry in reversed(daemons):
            _terminate(entry["pid"], entry.get("start_time"), entry["name"], timeout=5)
        root = state.get("root")
        if root:
            _kill_stepds(root)
        if root and Path(root).is_dir() and Path(root).name.startswith("shardlens-slurm-"):
            shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            STATE_FILE.unlink()
    _restore_conf()


def _acquire_lock(timeout: float) -> int:
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise SlurmHarnessError(f"another test Slurm cluster is running (lock {LOCK_FILE} held)") from None
            time.sleep(0.5)
