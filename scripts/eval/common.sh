# Shared by run.sh and real.sh (sourced; needs $root).
#   eval_deps CMD=PACKAGE ...   install the Debian packages whose command is
#                               missing, then mir_eval/numpy/scipy from PyPI
#   eval_bin                    the release binary ($PHASE4_BIN, or built)
eval_deps() {
  local need_apt=() pair
  for pair in "$@"; do
    case "${pair%%=*}" in
      /*) [ -e "${pair%%=*}" ] || need_apt+=("${pair#*=}") ;;
      *) command -v "${pair%%=*}" >/dev/null || need_apt+=("${pair#*=}") ;;
    esac
  done
  if [ ${#need_apt[@]} -gt 0 ]; then
    local SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq || echo "eval: apt-get update reported errors; installing anyway"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
  python3 -c "import mir_eval, numpy, scipy" 2>/dev/null \
    || python3 -m pip install -q mir_eval numpy scipy
}

eval_bin() {
  if [ -n "${PHASE4_BIN:-}" ]; then
    echo "$PHASE4_BIN"
  else
    (cd "$root" && cargo build --release --quiet)
    echo "${CARGO_TARGET_DIR:-$root/target}/release/phase4"
  fi
}
