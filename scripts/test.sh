#!/usr/bin/env bash
# The whole test suite of store-agent: the README's test command, and what CI runs.
#
# It installs what the tests need when it is missing (Debian packages through
# apt-get, when run as root), builds the binary the end-to-end tests drive, and
# runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need: the sync tests run a real Mosquitto broker
# (tests/src/mqtt.rs; mosquitto-clients for poking at it by hand), and the screen
# tests a real headless Chromium driven through chromedriver (tests/src/browser.rs).
# Without them those tests skip with a reason; under CI=true (set by CI runners) a
# missing broker or browser fails them instead, so CI cannot pass by skipping.
# The package test (scripts/test-package.sh) runs lintian on the .deb and installs
# it into a debootstrap chroot; the kiosk unit's test (tests/tests/kiosk_unit.rs)
# runs its command line, cage (headless) with Chromium, which needs Xwayland.
NEEDED_PACKAGES=(mosquitto mosquitto-clients chromium chromium-driver lintian debootstrap cage xwayland)

install_missing_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "The tests need these Debian packages: ${missing[*]}" >&2
        echo "Install them with: sudo apt-get install ${missing[*]}   (or run this script as root)" >&2
        exit 1
    fi
    echo "Installing ${missing[*]} ..."
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust (https://rustup.rs) first." >&2
    exit 1
fi
if [ ${#NEEDED_PACKAGES[@]} -gt 0 ]; then
    install_missing_packages "${NEEDED_PACKAGES[@]}"
fi

# The clean Debian root the package test installs into, downloaded once (root only).
bash scripts/prepare-debian-root.sh

# The end-to-end tests run the real binary; build it first so they test this tree.
cargo build --workspace --bins
cargo test --workspace
echo "[test.sh] cargo test done after ${SECONDS} s"

# The .deb: build, lintian, install/upgrade/remove/purge in a chroot, systemd-analyze.
bash scripts/test-package.sh
