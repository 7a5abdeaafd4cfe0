"""Throw-away single-node Slurm cluster for tests (plain Python + a pytest fixture).

Brings up a real ``munged`` + ``slurmctld`` + ``slurmd`` on this machine, so that
``snakemake --executor slurm`` really goes through ``sbatch``/``srun``/``squeue``.

    from slurm_cluster import slurm_cluster
    with slurm_cluster() as cluster:           # starts, waits for the node to be idle
        subprocess.run(["sbatch", "--wrap", "true", "-p", cluster.partition])
    # daemons stopped by PID, /etc/slurm restored

or in pytest (tests/ is on sys.path, so this import works from any test module):

    from slurm_cluster import slurm  # noqa: F401  (module-scoped fixture)
    def test_x(slurm):
        subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/slurm",
                        *slurm.snakemake_args(), ...], env=slurm.env())

Needs root and Debian's ``slurm-wlm`` + ``munge`` (see ``.ci/install-slurm.sh``).
Without them the fixture skips with the reason; set ``SHARDLENS_REQUIRE_SLURM=1``
(CI does) to turn that skip into a failure.

Design notes / traps:

* The config MUST live at ``/etc/slurm/slurm.conf``. ``SLURM_CONF`` is not enough:
  the ``slurm-jobstep`` executor that runs inside every sbatch job strips all
  ``SLURM_*`` variables before calling ``srun`` (so ``srun`` would fall back to
  DNS-SRV "configless" lookup and die). Existing files in ``/etc/slurm`` are
  backed up and restored on teardown (also after a crashed run).
* munged runs with its own key and socket inside the cluster's temp dir
  (``AuthInfo=socket=...`` in slurm.conf points every Slurm daemon and client
  there), so it never touches or depends on a system munge. The socket's
  directory must be world-executable (munged refuses a 0700 ``mkdtemp`` dir).
* No slurmdbd: ``sacct`` fails ("accounting storage is disabled"), so the
  Snakemake slurm plugin must be told ``--slurm-status-command squeue``; squeue
  only sees finished jobs for ``MinJobAge`` seconds, hence ``MinJobAge=300``.
* The node is declared as plain ``CPUs=<n>`` with ``SlurmdParameters=
  config_overrides`` so hyper-threads count as schedulable CPUs under
  ``CR_Core_Memory`` and a mismatch with detected hardware never drains the node.
  It advertises at least 8 CPUs / 32 GiB (nothing is enforced) so the real
  profile's requests can be scheduled on a small CI runner.
* A fake GPU: ``Gres=gpu:1`` with ``File=/dev/null`` in gres.conf, so ``--gpus=1``
  jobs schedule and get ``CUDA_VISIBLE_DEVICES=0``. slurmd rejects a plain file
  ("not a valid character or block device"); ``AccountingStorageTRES=gres/gpu``
  makes slurmctld die without slurmdbd, so GPUs show up as ``TresPerJob=gres:gpu:1``
  in ``scontrol show job``, not in ``TRES``.
* ``SlurmctldHost=localhost`` and ``NodeAddr=127.0.0.1`` (NodeName is the short
  hostname, slurmd is started with ``-N``): nothing depends on the hostname
  resolving. Ports 6817/6818 unless taken, then free ones.
* Daemons run in the foreground (``-D``/``--foreground``) in their own session,
  so their PIDs are ours; liveness is read from the ``comm`` in /proc/<pid>/stat
  (right after exec, ``/proc/<pid>/cmdline`` can still be empty under gVisor).
* Only one harness instance per machine (an ``flock`` on a lock file); a state
  file records daemon PIDs (+ their start times, so a recycled PID is never
  killed) and the /etc/slurm backup, so the next run cleans up after a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator

CONF_DIR = Path("/etc/slurm")
MANAGED_CONF_FILES = ("slurm.conf", "gres.conf", "cgroup.conf")
BACKUP_DIR = CONF_DIR / ".shardlens-harness-backup"
LOCK_FILE = Path("/var/lock/shardlens-slurm-harness.lock")
STATE_FILE = Path("/var/lib/shardlens-slurm-harness/state.json")

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENT_BINARIES = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel", "munge")

# seconds
START_TIMEOUT = 60
STOP_TIMEOUT = 10


class SlurmHarnessError(RuntimeError):
    """The cluster could not be brought up (message includes daemon logs)."""


# --------------------------------------------------------------------------- #
# prerequisites
# --------------------------------------------------------------------------- #
def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(
        name, path="/usr/sbin:/sbin:/usr/bin:/bin"
    )


def skip_reason() -> str | None:
    """Why a real Slurm cannot run here, or None if it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return (
            "the Slurm test cluster needs root (it writes /etc/slurm and runs slurmd)"
        )
    missing = [b for b in DAEMONS + CLIENT_BINARIES if _which(b) is None]
    if missing:
        return (
            "Slurm/munge binaries missing ("
            + ", ".join(missing)
            + "); run .ci/install-slurm.sh"
        )
    return None


# --------------------------------------------------------------------------- #
# process helpers
# --------------------------------------------------------------------------- #
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


def _terminate(
    pid: int, start_time: int | None, name: str, timeout: float = STOP_TIMEOUT
) -> None:
    """SIGTERM, wait, then SIGKILL one recorded daemon (only if it is still ours)."""
    if not _proc_is(pid, start_time, name):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _proc_is(pid, start_time, name):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
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


def _read_state() -> dict | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def _write_state(state: dict) -> None:
    from shardlens.atomic import atomic_open

    with atomic_open(STATE_FILE, "w") as handle:
        handle.write(json.dumps(state, indent=1))


# --------------------------------------------------------------------------- #
# /etc/slurm backup / restore
# --------------------------------------------------------------------------- #
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


def _cancel_jobs(partition: str, timeout: float = 15) -> None:
    """scancel every job of the running test cluster and wait until they are gone
    (slurmd then kills the jobs' processes). Uses whatever /etc/slurm holds now."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_JOB", "SLURM_STEP"))
    }
    run = dict(env=env, capture_output=True, text=True, timeout=10, check=False)
    with contextlib.suppress(Exception):
        subprocess.run(["scancel", "--full", "--partition", partition], **run)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["squeue", "-h", "-t", "PD,R,CG,CF,S", "-o", "%i"], **run
            )
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
        if (
            root
            and Path(root).is_dir()
            and Path(root).name.startswith("shardlens-slurm-")
        ):
            shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            STATE_FILE.unlink()
    _restore_conf()


# --------------------------------------------------------------------------- #
# the cluster
# --------------------------------------------------------------------------- #
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


@dataclass
class SlurmCluster:
    """A running single-node Slurm. Attributes are what tests need to submit jobs."""

    root: Path
    cluster_name: str = "shardlens"
    partition: str = "main"
    node_name: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    cpus: int = 0
    real_memory_mb: int = 0
    gpus: int = 1
    # Floors for what the node advertises (see start()).
    min_cpus: int = 8
    min_memory_mb: int = 32768
    min_job_age: int = 300
    slurmctld_port: int = 0
    slurmd_port: int = 0
    daemons: list[dict] = field(default_factory=list)
    _lock_fd: int | None = None
    _procs: dict = field(default_factory=dict, repr=False)

    # paths ---------------------------------------------------------------
    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket.2"

    @property
    def conf_file(self) -> Path:
        return CONF_DIR / "slurm.conf"

    def log_paths(self) -> dict[str, Path]:
        return {
            "munged": self.root / "munge" / "munged.log",
            "slurmctld": self.root / "log" / "slurmctld.log",
            "slurmd": self.root / "log" / "slurmd.log",
        }

    # config --------------------------------------------------------------
    def slurm_conf(self) -> str:
        r = self.root
        return f"""\
# generated by tests/slurm_cluster.py -- removed again on teardown
ClusterName={self.cluster_name}
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
SlurmctldPort={self.slurmctld_port}
SlurmdPort={self.slurmd_port}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/slurmd
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# jobs without --mem must not grab the whole node's memory
DefMemPerCPU=256
MailProg=/bin/true
SlurmdParameters=config_overrides
ReturnToService=2
# no slurmdbd: squeue is the only status source, so keep finished jobs visible
MinJobAge={self.min_job_age}
# fast turn-around for tests
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,sched_min_interval=0,bf_interval=2
MessageTimeout=10
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
NodeName={self.node_name} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory_mb} Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node_name} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""

    def gres_conf(self) -> str:
        # slurmd insists that File= is a character/block device ("not a valid
        # character or block device" for a plain file), so the fake GPU is /dev/null.
        files = ",".join(["/dev/null"] * self.gpus)
        return (
            "# generated by tests/slurm_cluster.py: fake GPU(s) backed by /dev/null\n"
            f"NodeName={self.node_name} Name=gpu File={files}\n"
        )

    def cgroup_conf(self) -> str:
        # Nothing here uses cgroups (proctrack/linuxproc, task/none); keep slurmd
        # from probing the host's cgroup setup.
        return "# generated by tests/slurm_cluster.py\nCgroupPlugin=autodetect\nIgnoreSystemd=yes\n"

    # client helpers ------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (SLURM_CONF set for clarity; /etc/slurm is authoritative)."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf_file)
        for var in list(env):
            # never leak an outer allocation into the test cluster
            if var.startswith(("SLURM_JOB", "SLURM_STEP", "SBATCH_", "SRUN_")):
                env.pop(var)
        return env

    def run(
        self, *args: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args),
            env=self.env(),
            check=check,
            text=True,
            capture_output=True,
            timeout=timeout,
        )

    def node_state(self) -> str:
        out = self.run(
            "sinfo", "-h", "-N", "-n", self.node_name, "-o", "%T", check=False
        )
        return out.stdout.strip() if out.returncode == 0 else ""

    def show_job(self, job_id: str | int) -> dict[str, str]:
        """`scontrol show job -o` as a dict (empty once the job aged out)."""
        out = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        info: dict[str, str] = {}
        if out.returncode != 0:
            return info
        for tok in out.stdout.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                info.setdefault(k, v)
        return info

    def jobs(self) -> list[dict[str, str]]:
        """All jobs slurmctld still knows about (running and finished < MinJobAge)."""
        out = self.run("scontrol", "show", "job", "-o", check=False)
        jobs = []
        for line in out.stdout.splitlines():
            if not line.startswith("JobId="):
                continue
            info: dict[str, str] = {}
            for tok in line.split():
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    info.setdefault(k, v)
            jobs.append(info)
        return jobs

    def snakemake_args(self) -> list[str]:
        """Command-line flags a test adds to `snakemake --profile profiles/slurm`.

        Only keys that profiles/slurm/config.yaml does not set, because a flag
        given on the command line replaces the profile's value for that key:
        * squeue for job status: there is no slurmdbd, so `sacct` fails and the
          plugin would wait forever (squeue sees finished jobs for MinJobAge=300 s,
          which is >= 3 x the first-check delay the plugin requires);
        * poll after 1 s instead of the plugin's 40 s (it then backs off by 10 s
          per check while nothing finishes, resetting whenever a job finishes);
        * keep the per-sbatch logs so tests can inspect them.
        The partition is not passed: the plugin falls back to the partition
        flagged Default=YES (`main`), and `--default-resources slurm_partition=...`
        would wipe the profile's mem_mb/runtime defaults.
        """
        return [
            "--slurm-status-command",
            "squeue",
            "--slurm-init-seconds-before-status-checks",
            "1",
            "--seconds-between-status-checks",
            "1",
            "--slurm-keep-successful-logs",
        ]

    def logs(self, tail: int = 40) -> str:
        parts = []
        for name, path in self.log_paths().items():
            for p in (path, self.root / "log" / f"{name}.out"):
                if p.exists():
                    lines = p.read_text(errors="replace").splitlines()[-tail:]
                    parts.append(f"==> {p} <==\n" + "\n".join(lines))
        return "\n".join(parts)

    # lifecycle -----------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "ab")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=self.env(),
            cwd=self.root,
        )
        out.close()
        self._procs[proc.pid] = proc  # keeps Popen from warning; poll() reaps it
        entry = {
            "name": name,
            "pid": proc.pid,
            "start_time": _proc_start_time(proc.pid),
        }
        self.daemons.append(entry)
        self._save_state()

    def _save_state(self) -> None:
        _write_state(
            {
                "root": str(self.root),
                "partition": self.partition,
                "daemons": self.daemons,
                "owner_pid": os.getpid(),
            }
        )

    def _check_alive(self) -> None:
        for d in self.daemons:
            if d["pid"] in self._procs:
                self._procs[d["pid"]].poll()
            if not _proc_is(d["pid"], d["start_time"], d["name"]):
                raise SlurmHarnessError(
                    f"{d['name']} died during start-up\n{self.logs()}"
                )

    def _wait(self, what: str, predicate, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if predicate():
                return
            time.sleep(0.2)
        raise SlurmHarnessError(
            f"timed out after {timeout}s waiting for {what}\n{self.logs()}"
        )

    def start(self) -> SlurmCluster:
        r = self.root
        for sub in ("munge", "state", "spool/slurmd", "run", "log"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        # munged insists the socket dir is world-executable and the key private
        os.chmod(r, 0o755)
        os.chmod(r / "munge", 0o755)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        # Slurm's default ports unless something (a system slurmctld?) holds them
        if not self.slurmctld_port:
            self.slurmctld_port = _free_port(6817)
        if not self.slurmd_port:
            self.slurmd_port = _free_port(6818, avoid={self.slurmctld_port})
        # The node advertises this machine's CPUs and memory (minus headroom for
        # the OS and the test runner), but at least min_cpus / min_memory_mb:
        # the production profile asks up to `cores: 8` CPUs and 8 GB x attempt
        # per job, and sbatch rejects a request bigger than any node outright
        # ("Requested node configuration is not available") on small CI
        # runners. Nothing is enforced here (no cgroups, no accounting), and
        # SlurmdParameters=config_overrides keeps the node from draining.
        if not self.cpus:
            self.cpus = max(_cpu_count(), self.min_cpus)
        if not self.real_memory_mb:
            total = _mem_total_mb()
            self.real_memory_mb = max(
                total - max(1024, total // 10), self.min_memory_mb
            )

        _backup_conf()
        (CONF_DIR / "slurm.conf").write_text(self.slurm_conf())
        (CONF_DIR / "gres.conf").write_text(self.gres_conf())
        (CONF_DIR / "cgroup.conf").write_text(self.cgroup_conf())

        self._spawn(
            "munged",
            [
                _which("munged"),
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={r}/munge/munged.pid",
                f"--log-file={r}/munge/munged.log",
                f"--seed-file={r}/munge/munged.seed",
            ],
        )
        self._wait("munged socket", self.munge_socket.exists, timeout=20)

        # -i: ignore state from an earlier run; -D: stay in foreground (we own the PID)
        self._spawn(
            "slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf_file)]
        )
        self._wait(
            "slurmctld to answer",
            lambda: self.run("scontrol", "ping", check=False).stdout.count("UP") > 0,
        )
        self._spawn(
            "slurmd",
            [_which("slurmd"), "-D", "-N", self.node_name, "-f", str(self.conf_file)],
        )
        self._wait("node to become idle", lambda: self.node_state() == "idle")
        return self

    def stop(self) -> None:
        """Cancel jobs, stop slurmd/slurmctld/munged by PID, restore /etc/slurm."""
        global _ACTIVE
        try:
            if any(d["name"] == "slurmctld" for d in self.daemons):
                _cancel_jobs(self.partition)
            for d in reversed(self.daemons):
                _terminate(d["pid"], d["start_time"], d["name"])
                proc = self._procs.pop(d["pid"], None)
                if proc is not None:
                    with contextlib.suppress(Exception):
                        proc.wait(timeout=1)
            self.daemons.clear()
            _kill_stepds(self.root)
            with contextlib.suppress(FileNotFoundError):
                STATE_FILE.unlink()
        finally:
            _restore_conf()
            # SHARDLENS_KEEP_SLURM_ROOT=1 keeps logs/state for debugging
            if not os.environ.get("SHARDLENS_KEEP_SLURM_ROOT"):
                shutil.rmtree(self.root, ignore_errors=True)
            self._release_lock()
            if _ACTIVE is self:
                _ACTIVE = None

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None


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
                raise SlurmHarnessError(
                    f"another test Slurm cluster is running (lock {LOCK_FILE} held)"
                ) from None
            time.sleep(0.5)


_ACTIVE: SlurmCluster | None = None


def start_cluster(lock_timeout: float = 300, **kwargs) -> SlurmCluster:
    """Start a cluster (cleaning up after a crashed earlier run). Caller must .stop() it.

    Waits up to `lock_timeout` s while another process runs its test cluster.
    """
    global _ACTIVE
    reason = skip_reason()
    if reason:
        raise SlurmHarnessError(reason)
    if _ACTIVE is not None:
        # flock would make us wait for ourselves
        raise SlurmHarnessError(
            "a test Slurm cluster is already running in this process; reuse it "
            "(e.g. via the `slurm` fixture) instead of starting a second one"
        )
    fd = _acquire_lock(lock_timeout)
    try:
        cleanup_stale()
        root = Path(tempfile.mkdtemp(prefix="shardlens-slurm-"))
        cluster = SlurmCluster(root=root, _lock_fd=fd, **kwargs)
    except BaseException:
        os.close(fd)
        raise
    _ACTIVE = cluster
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise


@contextlib.contextmanager
def slurm_cluster(**kwargs) -> Iterator[SlurmCluster]:
    """Context manager: a running single-node Slurm, torn down on exit."""
    cluster = start_cluster(**kwargs)
    try:
        yield cluster
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- #
# pytest integration (import lazily so the module stays usable without pytest)
# --------------------------------------------------------------------------- #
def require_or_skip() -> None:
    """pytest.skip when Slurm cannot run here (fail instead if SHARDLENS_REQUIRE_SLURM=1)."""
    from conftest import skip_unless_available

    reason = skip_reason()
    if reason is not None:
        skip_unless_available("SLURM", reason)


try:
    import pytest as _pytest
except ImportError:  # pragma: no cover
    _pytest = None

if _pytest is not None:

    @_pytest.fixture(scope="module")
    def slurm() -> Iterator[SlurmCluster]:
        """A real Slurm cluster per test module (start-up takes ~1 s); skips when
        not root / binaries missing (fails instead with SHARDLENS_REQUIRE_SLURM=1)."""
        require_or_skip()
        with slurm_cluster() as cluster:
            yield cluster


if __name__ == "__main__":  # manual smoke test: sudo python tests/slurm_cluster.py
    with slurm_cluster() as c:
        print(c.run("sinfo").stdout)
        out = c.root / "smoke.out"
        job = c.run(
            "sbatch",
            "--parsable",
            "--gpus=1",
            "-o",
            str(out),
            "--wrap",
            "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; srun -n1 hostname",
        ).stdout.strip()
        deadline = time.monotonic() + 30
        while (
            c.show_job(job).get("JobState") not in ("COMPLETED", "FAILED")
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
        print(c.run("squeue", "-t", "all").stdout)
        print(out.read_text() if out.exists() else c.logs())
