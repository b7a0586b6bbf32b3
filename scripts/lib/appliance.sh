# Shared helpers for phase4's packaging and appliance scripts. Source it:
#   . "$(dirname "$0")/lib/appliance.sh"
# Nothing here runs on its own.

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

p4_say()  { printf '==> %s\n' "$*" >&2; }
p4_pass() { printf 'PASS: %s\n' "$*"; }
p4_fail() { printf 'FAIL: %s\n' "$*"; }
p4_die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian architecture -> Rust target triple (empty for the host's own).
p4_triple_for_arch() {
    case "$1" in
        amd64) [ "$(dpkg --print-architecture)" = amd64 ] && echo "" || echo x86_64-unknown-linux-gnu ;;
        arm64) echo aarch64-unknown-linux-gnu ;;
        armhf) echo armv7-unknown-linux-gnueabihf ;;
        *) return 1 ;;
    esac
}

# Rust target triple -> Debian multiarch tuple (the cross tools' prefix).
p4_gnu_tuple() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
        armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
        x86_64-unknown-linux-gnu) echo x86_64-linux-gnu ;;
        *) return 1 ;;
    esac
}

# Environment for building TRIPLE with Debian's cross gcc and the multiarch
# libasound2-dev:<arch>. The linker itself comes from .cargo/config.toml.
p4_cross_env() {
    local triple=$1 tuple var
    tuple=$(p4_gnu_tuple "$triple") || p4_die "unknown target $triple"
    var=${triple//-/_}
    command -v "$tuple-gcc" >/dev/null ||
        p4_die "$tuple-gcc missing: apt-get install gcc-$tuple (see docs/operations.md)"
    [ -e "/usr/lib/$tuple/pkgconfig/alsa.pc" ] ||
        p4_die "alsa.pc for $tuple missing: apt-get install libasound2-dev:$(p4_deb_arch "$triple")"
    rustup target list --installed 2>/dev/null | grep -qx "$triple" ||
        p4_die "Rust target missing: rustup target add $triple"
    export PKG_CONFIG_ALLOW_CROSS=1
    export "PKG_CONFIG_LIBDIR_$var=/usr/lib/$tuple/pkgconfig:/usr/share/pkgconfig"
    export "PKG_CONFIG_SYSROOT_DIR_$var=/"
    # For crates that compile C, and for cargo-deb's strip/objcopy.
    export "CC_$var=$tuple-gcc"
    export "AR_$var=$tuple-ar"
    export "STRIP_$var=$tuple-strip"
    export "OBJCOPY_$var=$tuple-objcopy"
}

p4_deb_arch() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo arm64 ;;
        armv7-unknown-linux-gnueabihf) echo armhf ;;
        x86_64-unknown-linux-gnu) echo amd64 ;;
        *) return 1 ;;
    esac
}

p4_add_arch() {
    local a
    for a in "$@"; do
        dpkg --print-foreign-architectures | grep -qx "$a" || p4_as_root dpkg --add-architecture "$a"
    done
}

# p4_deb_maintainer: the package's Maintainer, "Name <address>": whoever
# builds (and ships) it, as Debian's own tools (dch, dh_make) know them:
# DEBEMAIL, either "Name <address>" or an address with the name in
# DEBFULLNAME. Fails when it is not set: the project publishes no address,
# and a made-up one would reach nobody. (Not git's identity: on a CI or
# shared machine that is often an automation account.)
p4_deb_maintainer() {
    local name=${DEBFULLNAME:-} mail=${DEBEMAIL:-}
    if [[ "$mail" == *"<"*"@"*">"* ]]; then
        echo "$mail"
    elif [[ "$mail" == *@* ]] && [ -n "$name" ]; then
        echo "$name <$mail>"
    else
        return 1
    fi
}
