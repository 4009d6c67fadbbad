#!/usr/bin/env bash
# Build the Debian package: target/debian/store-agent_<version>_<arch>.deb
#
#   packaging/build-deb.sh                      # the release build that ships
#   packaging/build-deb.sh --profile ci-bench   # faster build without LTO (CI's package test)
#   packaging/build-deb.sh --deb-version 0.1.0-2 --output /tmp/pkgs
#
# Every argument goes to `cargo deb`. cargo-deb is installed with `cargo install`
# when it is missing. Prints the path of the package as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION="3.8.0"
if ! cargo deb --version >/dev/null 2>&1; then
    echo "Installing cargo-deb $CARGO_DEB_VERSION ..." >&2
    cargo install --locked cargo-deb --version "$CARGO_DEB_VERSION" >&2
fi

cargo deb -p store-agent --locked "$@" >&2
# cargo-deb names the file it wrote; find the newest one it produced.
out_dir="target/debian"
args=("$@")
for i in "${!args[@]}"; do
    case "${args[$i]}" in
        --output) out_dir="${args[$((i + 1))]}" ;;
        --output=*) out_dir="${args[$i]#--output=}" ;;
    esac
done
ls -t "$out_dir"/store-agent_*.deb 2>/dev/null | head -n1
