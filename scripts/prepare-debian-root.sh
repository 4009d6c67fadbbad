#!/usr/bin/env bash
# Makes the clean Debian root the package test installs into (scripts/test-package.sh):
# a debootstrap minbase bookworm with what the package expects of a store device
# (adduser, systemd, and cage for the kiosk unit), kept as a tarball outside the
# repository so that it is downloaded once. Needs root and the Debian mirror.
#
#   scripts/prepare-debian-root.sh            # makes it if missing
#   scripts/prepare-debian-root.sh --force    # makes it again
set -euo pipefail

ROOT_TARBALL="${STORE_AGENT_DEBIAN_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/store-agent/debian-bookworm-root.tar}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${DEBIAN_SUITE:-bookworm}"
INCLUDE="adduser,systemd,cage"

if [ -f "$ROOT_TARBALL" ] && [ "${1:-}" != "--force" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "prepare-debian-root: needs root (debootstrap); the package test will skip" >&2
    exit 0
fi
command -v debootstrap >/dev/null || { echo "prepare-debian-root: debootstrap is not installed" >&2; exit 1; }

work="$(mktemp -d /tmp/store-agent-debootstrap.XXXXXX)"
trap 'rm -rf "$work"' EXIT
echo "Making a clean $SUITE root for the package test (once; kept at $ROOT_TARBALL) ..."
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$work/root" "$MIRROR" >"$work/log" 2>&1 || {
    tail -n 30 "$work/log" >&2
    echo "prepare-debian-root: debootstrap failed" >&2
    exit 1
}
# apt's downloads are not needed in the test.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
mkdir -p "$(dirname "$ROOT_TARBALL")"
tar -C "$work/root" -cf "$ROOT_TARBALL.tmp" .
mv "$ROOT_TARBALL.tmp" "$ROOT_TARBALL"
