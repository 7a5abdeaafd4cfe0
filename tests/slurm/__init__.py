"""Throw-away single-node Slurm cluster for tests (plain Python + a pytest fixture).

Brings up a real ``munged`` + ``slurmctld`` + ``slurmd`` on this machine, so that
``snakemake --executor slurm`` really goes through ``sbatch``/``srun``/``squeue``.

    from slurm.cluster import slurm_cluster
    with slurm_cluster() as cluster:           # starts, waits for the node to be idle
        subprocess.run(["sbatch", "--wrap", "true", "-p", cluster.partition])
    # daemons stopped by PID, /etc/slurm restored

or in pytest (tests/ is on sys.path, so this import works from any test module):

    from slurm.fixtures import slurm  # noqa: F401  (module-scoped fixture)
    def test_x(slurm):
        subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/slurm",
                        *slurm.snakemake_args(), ...], env=slurm.env())

Modules: :mod:`.host` (what the machine has), :mod:`.processes` (daemons by PID),
:mod:`.recovery` (the lock, the state file, /etc/slurm backup and clean-up after a crash),
:mod:`.cluster` (the cluster itself), :mod:`.fixtures` (pytest); ``python -m slurm`` from
tests/ (as root) is a manual smoke test.

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
