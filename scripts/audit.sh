#!/usr/bin/env bash
# cargo-audit against the lock files (the project and its fuzz targets) with
# the freshest RustSec advisory database it can get: the live one when
# GitHub answers within 30 s, else the snapshot in audit/advisory-db.tar.xz
# (see audit/README.md for its date). Fails on any known vulnerability;
# warnings (unmaintained, yanked) are printed.
# Installs cargo-audit when missing (cargo install --locked, ~5 min once).
set -euo pipefail
cd "$(dirname "$0")/.."
#
#   scripts/audit.sh                  install if needed, then audit
#   scripts/audit.sh --install-only   only install (.ci/run does this early, in the background)
install_only=0
[ "${1:-}" = --install-only ] && install_only=1
if ! cargo audit --version >/dev/null 2>&1; then
    # One install at a time: a second run waits for the first instead of
    # compiling cargo-audit again next to it.
    mkdir -p "${CARGO_TARGET_DIR:-target}"
    exec 9>"${CARGO_TARGET_DIR:-target}/.cargo-audit-install.lock"
    flock 9
    if ! cargo audit --version >/dev/null 2>&1; then
        echo "audit: installing cargo-audit (about 5 minutes, once)"
        cargo install --locked --quiet cargo-audit
    fi
    exec 9>&-
fi
[ "$install_only" = 1 ] && exit 0
db=""
live="${CARGO_HOME:-$HOME/.cargo}/advisory-db"
if timeout 30 cargo audit fetch >/dev/null 2>&1 || \
   timeout 30 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1 && \
   timeout 60 cargo audit fetch >/dev/null 2>&1; then
    db=$live
    echo "audit: live advisory database ($(git -C "$db" log -1 --format=%cs 2>/dev/null || echo fetched))"
else
    db=target/advisory-db-snapshot
    rm -rf "$db"; mkdir -p "$db"
    tar -xJf audit/advisory-db.tar.xz -C "$db"
    echo "audit: GitHub unreachable; using the snapshot in audit/advisory-db.tar.xz ($(sed -n 's/.*commit$//;s/^`[0-9a-f]*` of \([0-9-]*\).*/\1/p' audit/README.md | head -1))"
fi
# The database must be able to fail a lock file: a known-vulnerable crate
# (smallvec 0.6.9, RUSTSEC-2019-0009) has to be reported.
probe=target/audit-probe.lock
cat > "$probe" <<'LOCK'
version = 3

[[package]]
name = "smallvec"
version = "0.6.9"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "c4488ae950c49d403731982257768f48fada354a5203fe81f9bb6f43ca9002be"
LOCK
if cargo audit --db "$db" --no-fetch --stale --file "$probe" >/dev/null 2>&1; then
    echo "audit: the database did not flag smallvec 0.6.9 (RUSTSEC-2019-0009): it is broken" >&2
    exit 1
fi
echo "audit: self-check ok (RUSTSEC-2019-0009 is found in a probe lock file)"
rc=0
for lock in Cargo.lock fuzz/Cargo.lock; do
    [ -f "$lock" ] || continue
    echo "audit: $lock"
    cargo audit --db "$db" --no-fetch --stale --file "$lock" || rc=1
done
exit $rc
