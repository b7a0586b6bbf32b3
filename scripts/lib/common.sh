# Shared helpers for phase4's scripts: root or sudo, apt-get with retries,
# the one Python virtual environment every Python test runs from. Source it:
#   . "$(dirname "$0")/lib/common.sh"
# Nothing here runs on its own.

P4_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# One venv for every Python test and tool (python-osc, websockets, pytest,
# Playwright's driver, numpy/scipy, mir_eval). Debian 12's system Python
# refuses `pip install` outside a venv (PEP 668), so nothing is ever
# installed into it.
P4_VENV=${P4_VENV:-${CARGO_TARGET_DIR:-$P4_ROOT/target}/venv}

# p4_as_root CMD...: run CMD as root: directly when we are root, else through
# sudo. Without sudo it fails and says which command needs root. With
# P4_SUDO_NONINTERACTIVE=1 (scripts/test.sh's background lane, which has no
# terminal to ask on) sudo fails instead of asking for a password.
p4_as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        if [ "${P4_SUDO_NONINTERACTIVE:-0}" = 1 ]; then sudo -n "$@"; else sudo "$@"; fi
    else
        printf 'error: this step needs root (or sudo): %s\n' "$*" >&2
        return 1
    fi
}

# p4_pkg_installed PKG[:ARCH]: true when the package is installed for ARCH
# (default: the native architecture; Architecture: all counts too). A bare
# dpkg -s is ambiguous once arm64/armhf copies of a -dev package exist.
p4_pkg_installed() {
    local name=${1%%:*} arch=${1#*:}
    [ "$arch" = "$1" ] && arch=$(dpkg --print-architecture)
    dpkg-query -W -f='${Architecture} ${db:Status-Abbrev}\n' "$name" 2>/dev/null |
        awk -v a="$arch" '($1 == a || $1 == "all") && $2 == "ii" { found = 1 } END { exit !found }'
}

# p4_apt_install PKG...: install the missing ones, with the retries a fresh
# CI machine needs (a mirror mid-sync fails `update`; images whose
# docker-clean hook deletes downloaded .debs fail the first `install`) and a
# wait for the dpkg lock when another apt-get runs (a shared machine).
p4_apt_install() {
    local missing=() p i
    for p in "$@"; do
        p4_pkg_installed "$p" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    printf '==> apt-get install %s\n' "${missing[*]}" >&2
    local log
    log=$(mktemp)
    for i in 1 2 3; do
        p4_as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null 2>&1 || true
        if p4_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 \
            --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
            rm -f "$log"
            return 0
        fi
        printf '==> apt-get install failed (attempt %s), retrying\n' "$i" >&2
        sleep 3
    done
    tail -20 "$log" >&2
    rm -f "$log"
    return 1
}

# p4_venv REQUIREMENTS_FILE...: create $P4_VENV if needed (installing
# python3-venv when this python3 lacks ensurepip), install the requirement
# files into it when they changed since the last install, and put it first
# on PATH, so `python3` and `pytest` below are the venv's.
p4_venv() {
    if ! "$P4_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || p4_apt_install python3-venv || return 1
        rm -rf "$P4_VENV"
        printf '==> creating the Python venv %s\n' "$P4_VENV" >&2
        python3 -m venv "$P4_VENV" || return 1
    fi
    local stamp
    stamp="$P4_VENV/.p4-requirements-$(cat "$@" | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        local args=() f
        for f in "$@"; do args+=(-r "$f"); done
        printf '==> pip install into %s: %s\n' "$P4_VENV" "$(grep -hv '^\s*\(#\|$\)' "$@" | awk '{print $1}' | paste -sd' ')" >&2
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$P4_VENV/bin/python" -m pip install -q "${args[@]}" || return 1
        touch "$stamp"
    fi
    p4_venv_activate
}

# p4_venv_activate: put $P4_VENV first on PATH if it exists.
p4_venv_activate() {
    [ -x "$P4_VENV/bin/python" ] || return 0
    export VIRTUAL_ENV=$P4_VENV
    case ":$PATH:" in
        *":$P4_VENV/bin:"*) ;;
        *) export PATH="$P4_VENV/bin:$PATH" ;;
    esac
}
