#!/usr/bin/env bash
# Reproduce web/vendor/opus-decoder.min.js from npm, or check the committed
# copy against its pinned checksum.
#
#   bash scripts/vendor-opus-decoder.sh          # fetch from npm, verify, copy
#   bash scripts/vendor-opus-decoder.sh --check  # only check the committed file
#
# The page uses it to decode the Opus monitor stream where WebCodecs does
# not exist (a phone on the plain-HTTP page: web/listen.js). The package is
# `opus-decoder` (eshaz/wasm-audio-decoders, MIT; libopus compiled to
# WebAssembly, BSD-3-Clause; puff, zlib licence): its built, self-contained
# file dist/opus-decoder.min.js, with the WebAssembly inlined. The npm
# tarball carries no licence file; web/vendor/opus-decoder.LICENSE.txt holds
# the three licences. `npm pack` checks the tarball against the registry's
# integrity; this script checks it again against the value pinned here, and
# the file against its own pinned SHA-256. Needs npm for the fetch (apt:
# npm), nothing for --check.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.7.12
INTEGRITY="sha512-6zpHFDi/MhYvMwyYiuJPqJ2lcRkfm7wHblSvT3lUtx/kLvHkunoe/rhTn1dLKxqVGLeQj3gQi7CnR0N2p3RuOg=="
SHA256=68a08546a23df78bc837808af82af5a7550899ed5e17e281826dc2b3320dccdf
OUT=web/vendor/opus-decoder.min.js

check() {
    echo "$SHA256  $1" | sha256sum --quiet -c - || {
        echo "vendor-opus-decoder: $1 is not opus-decoder $VERSION's dist/opus-decoder.min.js" >&2
        return 1
    }
}

if [ "${1:-}" = "--check" ]; then
    check "$OUT"
    echo "vendor-opus-decoder: $OUT is opus-decoder@$VERSION (sha256 $SHA256)"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tgz=$(cd "$tmp" && npm pack --silent "opus-decoder@$VERSION")
got="sha512-$(openssl dgst -sha512 -binary "$tmp/$tgz" | base64 -w0)"
[ "$got" = "$INTEGRITY" ] || { echo "vendor-opus-decoder: tarball integrity $got, expected $INTEGRITY" >&2; exit 1; }
tar -xzf "$tmp/$tgz" -C "$tmp" package/dist/opus-decoder.min.js
check "$tmp/package/dist/opus-decoder.min.js"
install -m 644 "$tmp/package/dist/opus-decoder.min.js" "$OUT"
echo "vendor-opus-decoder: $OUT <- opus-decoder@$VERSION (sha256 $SHA256)"
