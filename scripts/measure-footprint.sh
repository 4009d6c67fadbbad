#!/usr/bin/env bash
# Footprint of the shipped build (docs/benchmarks.md, "Footprint"): the size of
# the stripped release binary, and the agent's resident memory after a minute
# idle on a store of 1,000,000 customers and 200,000 products.
#
#   scripts/measure-footprint.sh [--idle-seconds N] [--customers N] [--products N]
#
# Builds with the release profile (what the .deb ships). Takes about two
# minutes plus the build; uses a temporary folder under /tmp, removed after.
set -euo pipefail
cd "$(dirname "$0")/.."

IDLE_S=60
CUSTOMERS=1000000
PRODUCTS=200000
while [ $# -gt 0 ]; do
    case "$1" in
        --idle-seconds) IDLE_S="$2"; shift 2 ;;
        --customers) CUSTOMERS="$2"; shift 2 ;;
        --products) PRODUCTS="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

cargo build --release -p store-agent >&2
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/store-agent"

work="$(mktemp -d /tmp/store-agent-footprint.XXXXXX)"
agent_pid=""
cleanup() {
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$work/config.toml" <<CONF
[store]
tenant_id = "footprint"
store_id = "store-0001"
device_id = "pos-01"

[database]
path = "$work/store.db"

[loyalty]
hash_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

[http]
listen = "127.0.0.1:$port"

[logging]
format = "text"
CONF

echo "Writing and importing the sample store ($CUSTOMERS customers, $PRODUCTS products) ..." >&2
"$bin" sample-data --customers "$CUSTOMERS" --products "$PRODUCTS" --seed 1 \
    --out "$work/store.jsonl" --config "$work/config.toml" >&2
"$bin" import "$work/store.jsonl" --config "$work/config.toml" >&2
rm -f "$work/store.jsonl"

"$bin" run --config "$work/config.toml" >"$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/agent.log" >&2; exit 1; }
echo "Agent ready; idle for ${IDLE_S} s ..." >&2
sleep "$IDLE_S"

rss_kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$agent_pid/status")"
hwm_kb="$(awk '/^VmHWM:/ {print $2}' "/proc/$agent_pid/status")"
threads="$(awk '/^Threads:/ {print $2}' "/proc/$agent_pid/status")"
size_b="$(stat -c %s "$bin")"
db_b="$(stat -c %s "$work/store.db")"
stripped="no"
file "$bin" 2>/dev/null | grep -q "stripped" && ! file "$bin" | grep -q "not stripped" && stripped="yes"

printf 'machine: %s cores, %s\n' "$(nproc)" "$(uname -m)"
printf 'binary: %s bytes (%.1f MiB), stripped: %s\n' "$size_b" "$(echo "$size_b / 1048576" | bc -l)" "$stripped"
printf 'database: %.0f MiB (%s customers, %s products)\n' "$(echo "$db_b / 1048576" | bc -l)" "$CUSTOMERS" "$PRODUCTS"
printf 'idle RSS after %s s: %s kB (%.1f MiB); peak RSS %s kB; %s threads\n' \
    "$IDLE_S" "$rss_kb" "$(echo "$rss_kb / 1024" | bc -l)" "$hwm_kb" "$threads"
