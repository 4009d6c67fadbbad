#!/usr/bin/env bash
# The MQTT protocol (docs/protocol.md) against RabbitMQ's MQTT plugin: issue 7,
# "Fleet scale". Not part of scripts/test.sh or CI; run it by hand:
#
#     sudo scripts/rabbitmq-check.sh
#
# It installs rabbitmq-server with apt-get when it is missing (as root; otherwise it
# says what to install and exits 2), starts a PRIVATE RabbitMQ node for this run
# only (its own directory, node name, cookie, epmd and ports, every listener on
# 127.0.0.1; never the system service), runs tests/tests/rabbitmq.rs against it,
# and stops the node and removes its directory afterwards, also on failure.
#
# Environment: RABBITMQ_CHECK_KEEP=1 keeps the node's directory (logs, Mnesia) for
# a post-mortem; its path is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
STARTED=$SECONDS

# The Debian package puts its commands in /usr/sbin (wrappers that su to the
# rabbitmq user) and the real scripts in /usr/lib/rabbitmq/bin; this run uses the
# real ones, as the calling user, so nothing of it touches /var/lib/rabbitmq.
RABBIT_BIN=/usr/lib/rabbitmq/bin
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "[rabbitmq-check] $*"; }

# --- 1. RabbitMQ installed? -----------------------------------------------------
have_rabbitmq() {
    [ -x "$RABBIT_BIN/rabbitmq-server" ] && [ -x "$RABBIT_BIN/rabbitmq-plugins" ] &&
        [ -x "$RABBIT_BIN/rabbitmqctl" ] &&
        command -v rabbitmq-server >/dev/null 2>&1 && command -v rabbitmq-plugins >/dev/null 2>&1
}

# The system node the package may have started: stop it (systemd when it runs,
# otherwise the pid in the package's pid file; never by process name), and keep it
# from starting at boot, so it holds no ports and uses no memory beside ours.
stop_system_service() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl stop rabbitmq-server.service 2>/dev/null || true
        systemctl disable rabbitmq-server.service 2>/dev/null || true
        return 0
    fi
    command -v update-rc.d >/dev/null 2>&1 && update-rc.d rabbitmq-server disable >/dev/null 2>&1 || true
    local pidfile pid
    for pidfile in /run/rabbitmq/pid /var/run/rabbitmq/pid /var/lib/rabbitmq/mnesia/rabbit@*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(tr -dc '0-9' <"$pidfile")
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
        say "stopping the system RabbitMQ node (pid $pid from $pidfile)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    done
}

if ! have_rabbitmq; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "RabbitMQ is not installed. Install it with:" >&2
        echo "    sudo apt-get install --no-install-recommends rabbitmq-server" >&2
        echo "or run this script as root, which installs it." >&2
        exit 2
    fi
    say "installing rabbitmq-server ..."
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rabbitmq-server
    have_rabbitmq || { echo "rabbitmq-server installed, but its commands are missing" >&2; exit 1; }
    stop_system_service
fi
RABBIT_VERSION=$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo unknown)
ERLANG_VERSION=$(dpkg-query -W -f='${Version}' erlang-base 2>/dev/null || echo unknown)
command -v epmd >/dev/null 2>&1 || { echo "epmd (package erlang-base) is missing" >&2; exit 1; }
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust first" >&2; exit 1; }

# --- 2. A private node -----------------------------------------------------------
NODE="sa-check-$$@localhost"
WORK=""
SERVER_PID=""
EPMD_PID=""
MQTT_PORT="-"
RESULT="FAILED"

# Free TCP ports on 127.0.0.1, none picked twice; `count` consecutive ones when asked
# (the command-line tools' distribution range). Below the kernel's ephemeral range, so
# no other program's port-0 listener or outgoing connection takes one of them while
# the node boots; a port is free when no socket in any state uses it.
PICKED=" "
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPHEMERAL_LOW" -gt 12000 ] 2>/dev/null || EPHEMERAL_LOW=32768
port_free() {
    [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ] && [[ "$PICKED" != *" $1 "* ]]
}
free_port() {
    local count=${1:-1} base p ok
    for _ in $(seq 1 200); do
        base=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000 - 20)))
        ok=1
        for ((p = base; p < base + count; p++)); do port_free "$p" || { ok=0; break; }; done
        if [ "$ok" = 1 ]; then
            for ((p = base; p < base + count; p++)); do PICKED+="$p "; done
            echo "$base"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}
stop_node() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        say "stopping node $NODE (pid $SERVER_PID)"
        HOME="$WORK/home" timeout 60 "$RABBIT_BIN/rabbitmqctl" -n "$NODE" stop >/dev/null 2>&1 ||
            kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 1; done
    fi
    # The Erlang VM itself (the pid the node wrote), in case the wrapper went first.
    local beam
    beam=$(tr -dc '0-9' 2>/dev/null <"$WORK/rabbit.pid" || true)
    if [ -n "$beam" ] && kill -0 "$beam" 2>/dev/null; then
        kill -TERM "$beam" 2>/dev/null || true
        sleep 5
        kill -0 "$beam" 2>/dev/null && kill -KILL "$beam" 2>/dev/null || true
    fi
    if [ -n "$SERVER_PID" ]; then
        kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
    if [ -n "$EPMD_PID" ]; then
        kill -TERM "$EPMD_PID" 2>/dev/null || true
        wait "$EPMD_PID" 2>/dev/null || true
        EPMD_PID=""
    fi
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_node
    say "summary: $RESULT (exit $rc) in $((SECONDS - STARTED)) s; RabbitMQ $RABBIT_VERSION, Erlang $ERLANG_VERSION; node $NODE, MQTT 127.0.0.1:$MQTT_PORT"
    if [ -n "$WORK" ]; then
        grep -E '^RABBITMQ (RESULT|FINDING) ' "$WORK/test.log" 2>/dev/null | sed 's/^/[rabbitmq-check]   /' || true
        if [ "${RABBITMQ_CHECK_KEEP:-0}" = 1 ]; then
            say "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WORK=$(mktemp -d /tmp/sa-rabbitmq.XXXXXX)
chmod 700 "$WORK"
mkdir -p "$WORK/home" "$WORK/mnesia" "$WORK/log"
# (Through a file, not $(...): PICKED must be kept in this shell.)
free_port >"$WORK/port"; MQTT_PORT=$(cat "$WORK/port")
free_port >"$WORK/port"; AMQP_PORT=$(cat "$WORK/port")
free_port >"$WORK/port"; DIST_PORT=$(cat "$WORK/port")
free_port >"$WORK/port"; EPMD_PORT=$(cat "$WORK/port")
free_port 11 >"$WORK/port"; CTL_DIST_MIN=$(cat "$WORK/port")

# Everything the node and the command-line tools read. RABBITMQ_CONF_ENV_FILE
# points at our own (empty) file, so /etc/rabbitmq/rabbitmq-env.conf is not read.
# rmq runs a RabbitMQ command with HOME set to this run's directory, which holds its
# Erlang cookie (cargo keeps the real HOME: rustup lives there).
rmq() { HOME="$WORK/home" "$RABBIT_BIN/$1" "${@:2}"; }
export RABBITMQ_NODENAME="$NODE"
export RABBITMQ_BASE="$WORK"
export RABBITMQ_CONF_ENV_FILE="$WORK/rabbitmq-env.conf"
export RABBITMQ_CONFIG_FILE="$WORK/rabbitmq.conf"
export RABBITMQ_ADVANCED_CONFIG_FILE="$WORK/advanced.config"
export RABBITMQ_MNESIA_BASE="$WORK/mnesia"
export RABBITMQ_LOG_BASE="$WORK/log"
export RABBITMQ_LOGS="$WORK/log/node.log"
export RABBITMQ_ENABLED_PLUGINS_FILE="$WORK/enabled_plugins"
export RABBITMQ_PID_FILE="$WORK/rabbit.pid"
export RABBITMQ_DIST_PORT="$DIST_PORT"
export ERL_EPMD_ADDRESS=127.0.0.1
export ERL_EPMD_PORT="$EPMD_PORT"
export RABBITMQ_CTL_DIST_PORT_MIN="$CTL_DIST_MIN"
export RABBITMQ_CTL_DIST_PORT_MAX="$((CTL_DIST_MIN + 10))"
export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
: >"$RABBITMQ_CONF_ENV_FILE"
echo '[rabbitmq_mqtt].' >"$RABBITMQ_ENABLED_PLUGINS_FILE"
PASSWORD="sa-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

# RabbitMQ 3.10 (Debian 12): MQTT 3.1.1 only; a non-clean session is a durable
# queue per client id that lives `mqtt.subscription_ttl` ms without a consumer
# (3.13's mqtt.max_session_expiry_interval_seconds does not exist yet and would be
# refused as an unknown key); retained messages go to a per-vhost, per-node DETS
# file (the default store, named here so the run does not depend on the default).
cat >"$RABBITMQ_CONFIG_FILE" <<EOF
# A private node for scripts/rabbitmq-check.sh: loopback only.
listeners.tcp.1 = 127.0.0.1:$AMQP_PORT
listeners.ssl = none
distribution.listener.interface = 127.0.0.1
distribution.listener.port_range.min = $DIST_PORT
distribution.listener.port_range.max = $DIST_PORT

# The protocol's MAX_MESSAGE_BYTES (128 KiB, docs/protocol.md section 9) as the
# broker's limit on a message body, as Mosquitto's max_packet_size is there.
max_message_size = 131072

default_vhost = /
default_user = sa-check
default_pass = $PASSWORD
loopback_users = none

mqtt.listeners.tcp.1 = 127.0.0.1:$MQTT_PORT
mqtt.listeners.ssl = none
mqtt.allow_anonymous = true
mqtt.default_user = sa-check
mqtt.default_pass = $PASSWORD
mqtt.vhost = /
mqtt.exchange = amq.topic
# Persistent sessions: kept 30 days without their client (Mosquitto's
# persistent_client_expiration 30d in docs/protocol.md).
mqtt.subscription_ttl = 2592000000
mqtt.durable_queue_type = classic
mqtt.prefetch = 10
# Retained messages (presence): on disk, synced every 2 s.
mqtt.retained_message_store = rabbit_mqtt_retained_msg_store_dets
mqtt.retained_message_store_dets_sync_interval = 2000

log.console = false
log.file.level = info
EOF

say "RabbitMQ $RABBIT_VERSION (Erlang $ERLANG_VERSION): node $NODE in $WORK"
say "ports on 127.0.0.1: MQTT $MQTT_PORT, AMQP $AMQP_PORT, distribution $DIST_PORT, epmd $EPMD_PORT, CLI $CTL_DIST_MIN-$((CTL_DIST_MIN + 10))"

# Our own epmd on our own port, in the foreground (so it has a pid we own), rather
# than the daemon the VM would start and leave behind.
epmd -port "$EPMD_PORT" -address 127.0.0.1 >"$WORK/log/epmd.log" 2>&1 &
EPMD_PID=$!
for _ in $(seq 1 50); do port_free "$EPMD_PORT" || break; sleep 0.1; done

rmq rabbitmq-server >"$WORK/log/stdout.log" 2>&1 </dev/null &
SERVER_PID=$!

show_node_log() {
    echo "--- node log ($RABBITMQ_LOGS) ---" >&2
    tail -n 200 "$RABBITMQ_LOGS" >&2 2>/dev/null || true
    echo "--- node stdout/stderr ---" >&2
    tail -n 100 "$WORK/log/stdout.log" >&2 2>/dev/null || true
}

BOOT_STARTED=$SECONDS
ready=0
for _ in $(seq 1 240); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        say "the node exited during boot"
        break
    fi
    # Ours, and up: the node logged the listener, and the port takes connections.
    if grep -q "Failed to start Ranch listener" "$RABBITMQ_LOGS" 2>/dev/null; then
        say "the node could not open a listener"
        break
    fi
    if grep -q "started MQTT TCP listener on 127.0.0.1:$MQTT_PORT" "$RABBITMQ_LOGS" 2>/dev/null &&
        (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.5
done
if [ "$ready" != 1 ]; then
    say "the node's MQTT listener on 127.0.0.1:$MQTT_PORT was not up within 120 s"
    show_node_log
    exit 1
fi
BOOT_SECONDS=$((SECONDS - BOOT_STARTED))
say "MQTT listener up after ${BOOT_SECONDS} s"
# The listeners the node really opened (all must be on 127.0.0.1).
rmq rabbitmq-diagnostics -n "$NODE" -q listeners 2>/dev/null | sed 's/^/[rabbitmq-check]   /' || true
if ss -Htln | awk '{print $4}' | grep -Eq "^(0\.0\.0\.0|\*|\[::\]):($MQTT_PORT|$AMQP_PORT|$DIST_PORT|$EPMD_PORT)$"; then
    say "a listener of the node is not on 127.0.0.1:"
    ss -Htlnp | grep -E ":($MQTT_PORT|$AMQP_PORT|$DIST_PORT|$EPMD_PORT) " >&2 || true
    exit 1
fi

# --- 3. The test -----------------------------------------------------------------
cd "$REPO"
cargo build -p store-agent
TEST_STARTED=$SECONDS
if RABBITMQ_MQTT_PORT="$MQTT_PORT" RABBITMQ_VERSION="$RABBIT_VERSION" \
    cargo test -p store-agent-e2e --test rabbitmq -- --nocapture 2>&1 | tee "$WORK/test.log"; then
    RESULT="PASSED: test $((SECONDS - TEST_STARTED)) s, node boot ${BOOT_SECONDS} s"
else
    RESULT="FAILED: cargo test exited non-zero after $((SECONDS - TEST_STARTED)) s"
    show_node_log
    exit 1
fi
