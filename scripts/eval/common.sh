# Shared by run.sh and real.sh (sourced; needs $root).
#   eval_deps PACKAGE ...   install the missing Debian packages (sudo when not
#                           root), then numpy/scipy/mir_eval into the shared
#                           venv (scripts/lib/requirements-extra.txt)
#   eval_bin                the release binary ($PHASE4_BIN, or built)
. "$root/scripts/lib/common.sh"

eval_deps() {
  p4_apt_install "$@"
  p4_venv "$root/scripts/lib/requirements-core.txt" "$root/scripts/lib/requirements-extra.txt"
}

eval_bin() {
  if [ -n "${PHASE4_BIN:-}" ]; then
    echo "$PHASE4_BIN"
  else
    (cd "$root" && cargo build --release --quiet)
    echo "${CARGO_TARGET_DIR:-$root/target}/release/phase4"
  fi
}
