#!/usr/bin/env bash
# The long chaos run of docs/reliability.md: the real agent, Mosquitto and the
# reference cloud; 10,000 POS transactions (spool folder and HTTP mixed) while the
# agent is killed with SIGKILL 50 times, the broker restarted 10 times, and the
# link to the broker cut 20 times, slowed to 500 ± 200 ms 20 times and made to lose
# 20 % of its segments 20 times; an associate hands 50 BOPIS orders over and takes
# 15 returns (the sample has 16 returnable lines) meanwhile.
# Sizes can be changed with CHAOS_TRANSACTIONS, CHAOS_KILLS, CHAOS_BROKER_RESTARTS,
# CHAOS_PARTITIONS, CHAOS_DELAYS, CHAOS_LOSSY, CHAOS_HANDOVERS, CHAOS_RETURNS,
# CHAOS_PACE_MS and CHAOS_SEED. The report is the line starting with CHAOS.
# Needs Mosquitto (scripts/test.sh installs it as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAOS_TRANSACTIONS="${CHAOS_TRANSACTIONS:-10000}"
export CHAOS_KILLS="${CHAOS_KILLS:-50}"
export CHAOS_BROKER_RESTARTS="${CHAOS_BROKER_RESTARTS:-10}"
export CHAOS_PARTITIONS="${CHAOS_PARTITIONS:-20}"
export CHAOS_DELAYS="${CHAOS_DELAYS:-20}"
export CHAOS_LOSSY="${CHAOS_LOSSY:-20}"
export CHAOS_HANDOVERS="${CHAOS_HANDOVERS:-50}"
export CHAOS_RETURNS="${CHAOS_RETURNS:-15}"
export CHAOS_PACE_MS="${CHAOS_PACE_MS:-20}"
cargo build -q -p store-agent
cargo test -q -p store-agent-e2e --test chaos -- --nocapture
