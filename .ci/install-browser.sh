#!/usr/bin/env bash
# Install what the browser tests of the review dashboard (tests/test_dashboard.py) need:
#   - Debian's `chromium` package (apt), used as /usr/bin/chromium;
#   - the Playwright Python driver from PyPI into the virtual environment given as $1 or $VENV
#     (default .venv).
#
# Never runs `playwright install`: that downloads a browser build from outside the package
# registries. The tests launch Debian's chromium with executable_path='/usr/bin/chromium'.
#
# Idempotent and quick when everything is there: apt-get only runs when /usr/bin/chromium is
# missing (and `apt-get update` only when the package lists are missing or the install fails
# without it); pip only runs when the pinned playwright is not installed.
# Needs root for apt (CI runs as root; otherwise it uses sudo).
set -euo pipefail

PLAYWRIGHT_PIN="${PLAYWRIGHT_PIN:-playwright==1.65.2}"
VENV="${1:-${VENV:-.venv}}"
PY="$VENV/bin/python"

LOG="$(mktemp -t install-browser.XXXXXX.log)"
trap 'rm -f "$LOG"' EXIT
fail() {
    echo "install-browser: $* failed; output follows" >&2
    cat "$LOG" >&2
    exit 1
}

# --- chromium from Debian -------------------------------------------------------------------
if [ -x /usr/bin/chromium ]; then
    echo "install-browser: chromium already installed ($(/usr/bin/chromium --version 2>/dev/null || echo '?'))"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO="sudo"
        else
            echo "install-browser: must run as root (or with sudo available) to apt-get install chromium" >&2
            exit 1
        fi
    fi
    APT_OPTS=(-y -qq -o Dpkg::Use-Pty=0 --no-install-recommends
              -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    # fonts-dejavu-core: readable text in screenshots on minimal images
    PACKAGES=(chromium fonts-dejavu-core)
    apt_update() {
        echo "install-browser: apt-get update"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$LOG" 2>&1 || fail "apt-get update"
    }
    apt_install() {
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install "${APT_OPTS[@]}" "${PACKAGES[@]}" >>"$LOG" 2>&1
    }
    if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
        apt_update
    fi
    echo "install-browser: apt-get install ${PACKAGES[*]}"
    if ! apt_install; then
        apt_update  # stale lists (404 on a superseded .deb): refresh once
        apt_install || fail "apt-get install ${PACKAGES[*]}"
    fi
    [ -x /usr/bin/chromium ] || { echo "install-browser: /usr/bin/chromium still missing after install" >&2; exit 1; }
    echo "install-browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
fi

# --- the Playwright Python driver from PyPI -------------------------------------------------
if [ ! -x "$PY" ]; then
    echo "install-browser: no Python at $PY (give the virtual environment as \$1 or VENV)" >&2
    exit 1
fi
want="${PLAYWRIGHT_PIN#playwright==}"
have="$("$PY" -c 'import importlib.metadata as m; print(m.version("playwright"))' 2>/dev/null || true)"
if [ "$have" = "$want" ]; then
    echo "install-browser: playwright $have already in $VENV"
else
    echo "install-browser: pip install $PLAYWRIGHT_PIN into $VENV"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install --quiet "$PLAYWRIGHT_PIN" >>"$LOG" 2>&1 || fail "pip install $PLAYWRIGHT_PIN"
fi
echo "install-browser: ready (launch with executable_path='/usr/bin/chromium', never 'playwright install')"
