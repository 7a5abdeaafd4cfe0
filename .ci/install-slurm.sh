#!/usr/bin/env bash
# Install a single-node Slurm (slurmctld, slurmd, client tools) and munge from
# Debian's own packages, for tests/slurm/.
#
# Idempotent and quick when everything is already there: it only calls
# apt-get when a binary is missing, and only runs `apt-get update` when the
# package lists are missing or the install fails without it.
# Needs root (CI images run as root; otherwise it re-runs itself via sudo).
#
# It does NOT start or configure any daemon: the test harness generates its
# own slurm.conf / munge key and starts the daemons itself. Package scripts are
# kept from starting system services during the install (policy-rc.d), so no
# stray munged/slurmd from the package is left running.
set -euo pipefail

PACKAGES=(slurm-wlm slurm-client munge)
BINARIES=(slurmctld slurmd sbatch squeue sinfo scontrol srun scancel munged munge unmunge)

missing=()
for b in "${BINARIES[@]}"; do
    command -v "$b" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$b" >/dev/null 2>&1 || missing+=("$b")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-slurm: already installed ($(slurmd -V 2>/dev/null), $(munged --version 2>/dev/null | head -n1))"
    exit 0
fi
echo "install-slurm: missing: ${missing[*]}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-slurm: must run as root (or with sudo available)" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -qq -o Dpkg::Use-Pty=0 --no-install-recommends
          -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# Keep maintainer scripts from starting munge/slurmd/slurmctld services.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 0755 "$POLICY"
    created_policy=1
fi
# apt/dpkg chatter goes to a log that is only shown when something fails.
LOG="$(mktemp -t install-slurm.XXXXXX.log)"
cleanup() {
    if [ "$created_policy" -eq 1 ]; then $SUDO rm -f "$POLICY"; fi
    rm -f "$LOG"
}
trap cleanup EXIT
fail() {
    echo "install-slurm: $* failed; output follows" >&2
    cat "$LOG" >&2
    exit 1
}

apt_update() {
    echo "install-slurm: apt-get update"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$LOG" 2>&1 || fail "apt-get update"
}
apt_install() {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install "${APT_OPTS[@]}" "${PACKAGES[@]}" >>"$LOG" 2>&1
}

# Package lists are empty on fresh images (docker debian:12 ships none).
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    apt_update
fi

echo "install-slurm: apt-get install ${PACKAGES[*]}"
if ! apt_install; then
    # stale lists (404 on a superseded .deb) or unknown package: refresh once
    apt_update
    apt_install || fail "apt-get install ${PACKAGES[*]}"
fi

for b in "${BINARIES[@]}"; do
    if ! command -v "$b" >/dev/null 2>&1 && ! PATH="$PATH:/usr/sbin:/sbin" command -v "$b" >/dev/null 2>&1; then
        echo "install-slurm: $b still missing after install" >&2
        exit 1
    fi
done
echo "install-slurm: installed $(slurmd -V 2>/dev/null), $(munged --version 2>/dev/null | head -n1)"
