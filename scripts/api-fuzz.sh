#!/usr/bin/env bash
# Schemathesis against the agent's own OpenAPI document (/api/v1/openapi.json),
# signed in as an associate and as a kiosk: property-based requests to every
# operation, and the checks that no answer is a 5xx, that every status code is one
# the document lists, and that every body fits the document's schema and content
# type. Issue 7; figures in docs/reliability.md.
#
#   scripts/api-fuzz.sh                 # 200 examples per operation and role
#   EXAMPLES=1000 scripts/api-fuzz.sh   # a longer run
#
# It installs Schemathesis (pinned) with pip into a virtualenv under
# ~/.cache/store-agent/ once, builds the agent, runs `store-agent demo` on a free
# loopback port with its own temporary directory, and stops it by its PID at the
# end. The reports (JUnit XML and the run logs) land in target/api-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${EXAMPLES:-200}
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/store-agent/schemathesis-$SCHEMATHESIS_VERSION
OUT=target/api-fuzz
mkdir -p "$OUT"

if [ ! -x "$VENV/bin/st" ]; then
    echo "[api-fuzz] installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build -q -p store-agent --bin store-agent
AGENT=target/debug/store-agent

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
DEMO_DIR=$(mktemp -d)
"$AGENT" demo --dir "$DEMO_DIR/demo" --listen "127.0.0.1:$PORT" >"$OUT/demo.log" 2>&1 &
DEMO_PID=$!
cleanup() {
    kill "$DEMO_PID" 2>/dev/null || true
    wait "$DEMO_PID" 2>/dev/null || true
    rm -rf "$DEMO_DIR"
}
trap cleanup EXIT

for _ in $(seq 1 120); do
    curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
    kill -0 "$DEMO_PID" 2>/dev/null || { cat "$OUT/demo.log"; echo "[api-fuzz] the demo stopped" >&2; exit 1; }
    sleep 0.5
done
curl -fsS "$BASE/healthz" >/dev/null

# The demo prints its sample store as one JSON object: an associate and a card.
read -r ASSOCIATE PIN CARD < <(python3 - "$OUT/demo.log" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
start = text.index("\n{") + 1
sample, _ = json.JSONDecoder().raw_decode(text[start:])
a = next(a for a in sample["associates"] if a["role"] == "associate")
print(a["associate_id"], a["pin"], sample["example_cards"][0][1])
EOF
)

# A page gives a session cookie and, in data-csrf, that session's CSRF token.
page_session() { # page cookie-jar -> prints "session csrf"
    local html
    html=$(curl -fsS -b "$2" -c "$2" "$BASE$1")
    local csrf=${html#*data-csrf=\"}
    csrf=${csrf%%\"*}
    local sid
    sid=$(awk '$6 == "sa_session" { print $7 }' "$2" | tail -n 1)
    echo "$sid $csrf"
}

JAR_STAFF=$DEMO_DIR/staff.jar
read -r _ CSRF < <(page_session /console/sign-in "$JAR_STAFF")
curl -fsS -b "$JAR_STAFF" -c "$JAR_STAFF" -H "X-CSRF-Token: $CSRF" -H 'Content-Type: application/json' \
    -d "{\"associate_id\":\"$ASSOCIATE\",\"pin\":\"$PIN\"}" "$BASE/api/v1/session" >/dev/null
read -r STAFF_SID STAFF_CSRF < <(page_session /console "$JAR_STAFF")

JAR_KIOSK=$DEMO_DIR/kiosk.jar
read -r KIOSK_SID KIOSK_CSRF < <(page_session /kiosk "$JAR_KIOSK")
# A shopper identifies at the kiosk, so that its customer routes have someone.
curl -fsS -b "$JAR_KIOSK" -H "X-CSRF-Token: $KIOSK_CSRF" -H 'Content-Type: application/json' \
    -d "{\"screen\":\"kiosk\",\"data\":\"$CARD\"}" "$BASE/api/v1/scans" >/dev/null

CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
failed=0
for role in staff kiosk; do
    if [ "$role" = staff ]; then sid=$STAFF_SID csrf=$STAFF_CSRF; else sid=$KIOSK_SID csrf=$KIOSK_CSRF; fi
    echo "[api-fuzz] $role: $EXAMPLES examples per operation against $BASE"
    # Left out: the live event stream (it never ends) and the two operations that
    # end the session the run signs in with (sign-out, the kiosk's end).
    if ! "$VENV/bin/st" run "$BASE/api/v1/openapi.json" \
        -H "Cookie: sa_session=$sid" -H "X-CSRF-Token: $csrf" \
        --exclude-path /api/v1/events --exclude-path /api/v1/kiosk/end \
        --exclude-path /api/v1/session --include-method GET --include-method POST \
        --checks "$CHECKS" --max-examples "$EXAMPLES" --request-timeout 10 --workers 2 \
        --seed 7 --report junit --report-dir "$OUT/$role" \
        >"$OUT/$role.log" 2>&1; then
        failed=1
    fi
    grep -E "^(Test cases:|  [0-9]+ generated)|failures|passed|warnings in" "$OUT/$role.log" | sed "s/^/[api-fuzz] $role: /" || true
done
# Sign-in itself, with a fresh anonymous session (its CSRF token) for wrong PINs
# and malformed bodies; the throttle answers 429 after a few failures per id.
read -r ANON_SID ANON_CSRF < <(page_session /console/sign-in "$DEMO_DIR/anon.jar")
echo "[api-fuzz] sign-in: $EXAMPLES examples"
if ! "$VENV/bin/st" run "$BASE/api/v1/openapi.json" \
    -H "Cookie: sa_session=$ANON_SID" -H "X-CSRF-Token: $ANON_CSRF" \
    --include-path /api/v1/session \
    --checks "$CHECKS" --max-examples "$EXAMPLES" --request-timeout 10 --workers 2 \
    --seed 7 --report junit --report-dir "$OUT/sign-in" \
    >"$OUT/sign-in.log" 2>&1; then
    failed=1
fi
grep -E "^(  [0-9]+ generated)|failures|passed|warnings in" "$OUT/sign-in.log" | sed "s/^/[api-fuzz] sign-in: /" || true

if ! kill -0 "$DEMO_PID" 2>/dev/null; then
    echo "[api-fuzz] the agent stopped during the run; see $OUT/demo.log" >&2
    failed=1
fi
if [ "$failed" -ne 0 ]; then
    echo "[api-fuzz] FAILED: see $OUT/*.log" >&2
    exit 1
fi
echo "[api-fuzz] ok: no 5xx, every answer as documented (logs in $OUT)"
