#!/usr/bin/env bash
# The package test: builds the .deb, runs lintian, installs it with dpkg into a
# clean Debian root (a debootstrap chroot, unpacked fresh from a cached tarball),
# checks what got installed and how, upgrades it, removes and purges it, and
# checks both systemd units with systemd-analyze (verify, and the security
# exposure of store-agent.service against the 2.5 target).
#
#   scripts/test-package.sh              # needs root (chroot, file owners)
#   STORE_AGENT_DEB_PROFILE=release scripts/test-package.sh   # test the shipping build
#
# The chroot tarball is made by scripts/prepare-debian-root.sh (scripts/test.sh
# runs it as one of its installs); this test itself uses no network.
# Without root, or without the tarball, it skips with the reason, unless
# CI=true, where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT_TARBALL="${STORE_AGENT_DEBIAN_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/store-agent/debian-bookworm-root.tar}"
PROFILE="${STORE_AGENT_DEB_PROFILE:-ci-bench}"
SECURITY_TARGET="2.5"

skip() {
    if [ "${CI:-}" = "true" ]; then
        echo "package test: FAILED: $1 (CI=true: a skipped package test is a failure)" >&2
        exit 1
    fi
    echo "package test: skipped: $1" >&2
    exit 0
}

[ "$(id -u)" -eq 0 ] || skip "needs root for the chroot and the file owners"
[ -f "$ROOT_TARBALL" ] || skip "no Debian root at $ROOT_TARBALL (run scripts/prepare-debian-root.sh as root)"
for tool in lintian systemd-analyze chroot dpkg-deb; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done

failures=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1" >&2; failures=$((failures + 1)); }
check() { # check DESCRIPTION COMMAND...
    local what="$1"; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

work="$(mktemp -d /tmp/store-agent-pkg.XXXXXX)"
root="$work/root"
cleanup() {
    for m in "$root/proc" "$root/dev"; do
        mountpoint -q "$m" 2>/dev/null && umount -l "$m"
    done
    rm -rf "$work"
}
trap cleanup EXIT

# --- Build: version 1, and the same build as version 2 for the upgrade --------
deb1="$(packaging/build-deb.sh --profile "$PROFILE" --output "$work/v1")"
deb2="$(packaging/build-deb.sh --profile "$PROFILE" --no-build --deb-revision 2 --output "$work/v2")"
echo "built $deb1 and $deb2"
check "the package is named store-agent_<version>_<arch>.deb" \
    bash -c "[[ \"\$(basename '$deb1')\" =~ ^store-agent_[0-9][^_]*_[a-z0-9]+\.deb$ ]]"

# --- lintian: no errors (kept warnings are listed in docs/operations.md) ------
lintian_out="$(lintian --fail-on error "$deb1" 2>&1)" && lintian_rc=0 || lintian_rc=$?
echo "$lintian_out" | grep -v "not recommended" || true
check "lintian reports no errors" [ "$lintian_rc" -eq 0 ]
check "lintian output has no E: line" bash -c "! grep -q '^E:' <<<\"\$1\"" _ "$lintian_out"

# --- A clean Debian root -------------------------------------------------------
mkdir -p "$root"
tar -C "$root" -xf "$ROOT_TARBALL"
mount -t proc proc "$root/proc"
cp "$deb1" "$deb2" "$root/tmp/"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# systemd is not running in the chroot. Make the maintainer scripts believe it
# is, with a systemctl in front of the real one that records what it was asked,
# so that "not started on first install" and "restarted on upgrade" can be
# checked. The real systemctl does enable/disable offline in a chroot and
# ignores start/stop there.
mkdir -p "$root/run/systemd/system"
cat >"$root/usr/local/bin/systemctl" <<'FAKE'
#!/bin/sh
echo "systemctl $*" >> /var/log/fake-systemctl.log
exec /usr/bin/systemctl "$@"
FAKE
chmod 755 "$root/usr/local/bin/systemctl"
calls() { cat "$root/var/log/fake-systemctl.log" 2>/dev/null || true; }

# --- First install -------------------------------------------------------------
check "dpkg -i installs the package" in_root dpkg -i "/tmp/$(basename "$deb1")"
check "store-agent --version runs from /usr/bin" \
    bash -c "chroot '$root' /usr/bin/store-agent --version | grep -q '^store-agent [0-9]'"

# The shipped config leaves the loyalty key to the environment: config check
# must say so, and pass once the key is given.
out="$(in_root /usr/bin/store-agent config check /etc/store-agent/config.toml 2>&1)" && rc=0 || rc=$?
check "config check of the shipped file fails without the loyalty key" [ "$rc" -ne 0 ]
check "... and names loyalty.hash_key" grep -q "loyalty.hash_key" <<<"$out"
key="00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
check "config check passes with STORE_AGENT_LOYALTY_HASH_KEY" \
    in_root STORE_AGENT_LOYALTY_HASH_KEY="$key" /usr/bin/store-agent config check /etc/store-agent/config.toml

owner_mode() { # owner_mode PATH EXPECTED ("user:group mode")
    local got
    got="$(in_root stat -c '%U:%G %a' "$1" 2>&1)"
    if [ "$got" = "$2" ]; then pass "$1 is $2"; else fail "$1 is '$got', expected '$2'"; fi
}
owner_mode /usr/bin/store-agent "root:root 755"
owner_mode /etc/store-agent/config.toml "root:root 644"
owner_mode /etc/store-agent/tls "root:store-agent 750"
owner_mode /usr/lib/systemd/system/store-agent.service "root:root 644"
owner_mode /usr/lib/systemd/system/store-kiosk.service "root:root 644"
owner_mode /usr/lib/udev/rules.d/60-store-agent.rules "root:root 644"
owner_mode /usr/share/man/man1/store-agent.1.gz "root:root 644"
owner_mode /var/lib/store-agent "store-agent:store-agent 750"
owner_mode /var/spool/store-agent "store-agent:store-agent 2770"
owner_mode /var/spool/store-agent/poslog "store-agent:store-agent 2770"
check "/etc/store-agent/config.toml is a conffile" \
    bash -c "chroot '$root' dpkg-query -W -f='\${Conffiles}' store-agent | grep -q '/etc/store-agent/config.toml'"

for user in store-agent store-kiosk; do
    entry="$(in_root getent passwd "$user" || true)"
    uid="$(cut -d: -f3 <<<"$entry")"
    check "$user is a system user (uid ${uid:-none} < 1000)" bash -c "[ -n '$uid' ] && [ '$uid' -lt 1000 ]"
    check "$user cannot log in" bash -c "[[ '$entry' == *:/usr/sbin/nologin ]]"
done

check "store-agent.service is enabled" test -L "$root/etc/systemd/system/multi-user.target.wants/store-agent.service"
check "store-kiosk.service is not enabled" test ! -e "$root/etc/systemd/system/graphical.target.wants/store-kiosk.service"
check "nothing was started on first install" bash -c "! grep -Eq ' (start|restart|try-restart|reload-or-restart) ' <<<\"\$1\"" _ "$(calls)"

# The service user can create and use the database where the config puts it.
check "the store-agent user creates the database in /var/lib/store-agent" \
    in_root setpriv --reuid store-agent --regid store-agent --init-groups \
    env STORE_AGENT_LOYALTY_HASH_KEY="$key" /usr/bin/store-agent db init --config /etc/store-agent/config.toml
check "... owned by store-agent" bash -c "[ \"\$(chroot '$root' stat -c %U /var/lib/store-agent/store.db)\" = store-agent ]"

# --- Upgrade: the administrator's edit of the conffile stays; the service restarts
echo "# edited by the store's IT" >>"$root/etc/store-agent/config.toml"
: >"$root/var/log/fake-systemctl.log"
check "dpkg -i of the next version upgrades in place" in_root dpkg -i "/tmp/$(basename "$deb2")"
check "the upgrade keeps the edited config" grep -q "edited by the store's IT" "$root/etc/store-agent/config.toml"
check "the upgrade restarts store-agent.service" grep -Eq "systemctl .*(try-restart|restart).* store-agent.service" "$root/var/log/fake-systemctl.log"
check "the database survives the upgrade" test -f "$root/var/lib/store-agent/store.db"

# --- Remove keeps data; purge removes it ---------------------------------------
check "dpkg -r removes the package" in_root dpkg -r store-agent
check "remove deletes /usr/bin/store-agent" test ! -e "$root/usr/bin/store-agent"
check "remove keeps the database" test -f "$root/var/lib/store-agent/store.db"
check "remove keeps the spool" test -d "$root/var/spool/store-agent/poslog"
check "remove keeps the config" test -f "$root/etc/store-agent/config.toml"
check "remove stops the service" grep -Eq "systemctl .*stop.* store-agent.service" "$root/var/log/fake-systemctl.log"
check "dpkg -P purges the package" in_root dpkg -P store-agent
for gone in /var/lib/store-agent /var/spool/store-agent /etc/store-agent /usr/lib/systemd/system/store-agent.service \
    /etc/systemd/system/multi-user.target.wants/store-agent.service; do
    check "purge removes $gone" test ! -e "$root$gone"
done
check "purge removes the store-agent user" bash -c "! chroot '$root' getent passwd store-agent >/dev/null"
check "dpkg no longer knows the package" bash -c "! chroot '$root' dpkg-query -W -f='\${Status}' store-agent 2>/dev/null | grep -q installed"

# --- systemd-analyze ------------------------------------------------------------
# Installed again, so that the units' programs and users exist in the root.
in_root dpkg -i "/tmp/$(basename "$deb1")" >/dev/null 2>&1
for unit in store-agent.service store-kiosk.service; do
    out="$(systemd-analyze verify --root="$root" "/usr/lib/systemd/system/$unit" 2>&1)" && rc=0 || rc=$?
    [ -n "$out" ] && echo "$out"
    check "systemd-analyze verify $unit" [ "$rc" -eq 0 ]
done
report="$(systemd-analyze security --offline=true --root="$root" /usr/lib/systemd/system/store-agent.service 2>&1 || true)"
score="$(grep -o 'Overall exposure level for store-agent.service: [0-9.]*' <<<"$report" | awk '{print $NF}')"
echo "systemd-analyze security store-agent.service: ${score:-unknown} (target $SECURITY_TARGET)"
kiosk_score="$(systemd-analyze security --offline=true --root="$root" /usr/lib/systemd/system/store-kiosk.service 2>&1 \
    | grep -o 'Overall exposure level for store-kiosk.service: [0-9.]*' | awk '{print $NF}' || true)"
echo "systemd-analyze security store-kiosk.service: ${kiosk_score:-unknown}"
check "store-agent.service exposure ${score:-unknown} <= $SECURITY_TARGET" \
    awk -v s="${score:-99}" -v t="$SECURITY_TARGET" 'BEGIN { exit !(s <= t) }'

if [ "$failures" -ne 0 ]; then
    echo "package test: $failures check(s) failed" >&2
    exit 1
fi
echo "package test: all checks passed"
