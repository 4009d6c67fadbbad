#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers with cargo-fuzz (libFuzzer): the targets
# of fuzz/fuzz_targets/, one after the other (one job: the machines have 2 cores).
# Figures and findings in docs/reliability.md.
#
#   scripts/fuzz.sh                      # 60 s per target, every target
#   scripts/fuzz.sh 300                  # 5 minutes per target
#   scripts/fuzz.sh 120 poslog downlink  # only these targets
#
# It installs cargo-fuzz (`cargo install --locked cargo-fuzz`) when `cargo fuzz` is
# missing, and builds on the stable toolchain with RUSTC_BOOTSTRAP=1 (libFuzzer
# and the sanitizer need nightly flags). Each target's corpus, fuzz/corpus/<target>/,
# is seeded at run time from the shared test corpora ($STORE_AGENT_CORPORA, else
# ../shared/corpora next to the repository) when they are there, plus a few inline
# seeds; corpora are never committed (.gitignore). Crashes land in
# fuzz/artifacts/<target>/, logs in fuzz/target/fuzz-logs/. Exits non-zero when a
# target crashed (or failed to run).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
shift || true
ALL_TARGETS=(scan_decode msr_tracks poslog escpos_journal downlink)
if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    TARGETS=("${ALL_TARGETS[@]}")
fi
case "$SECONDS_PER_TARGET" in
'' | *[!0-9]*)
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
    ;;
esac
for t in "${TARGETS[@]}"; do
    if [ ! -f "fuzz/fuzz_targets/$t.rs" ]; then
        echo "[fuzz] unknown target $t (have: ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
done

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "[fuzz] installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

CORPORA=${STORE_AGENT_CORPORA:-../shared/corpora}
LOGS=fuzz/target/fuzz-logs
mkdir -p "$LOGS"

# seed TARGET: stdin becomes one file of fuzz/corpus/TARGET/, named by its SHA-1 as
# libFuzzer names its own, so that seeding again adds nothing.
seed() {
    local dir=fuzz/corpus/$1 tmp sum
    mkdir -p "$dir"
    tmp=$(mktemp "$dir/.seed.XXXXXX")
    cat >"$tmp"
    sum=$(sha1sum "$tmp" | cut -d' ' -f1)
    mv -f "$tmp" "$dir/$sum"
}

# seed_jsonl TARGET FIELD FILE...: every string FIELD of the JSON Lines files.
seed_jsonl() {
    local target=$1 field=$2 s
    shift 2
    while IFS= read -r -d '' s; do
        printf '%s' "$s" | seed "$target"
    done < <(jq -j --arg f "$field" '.[$f] | strings | (., "\u0000")' "$@")
}

seed_corpora() {
    if [ ! -d "$CORPORA" ]; then
        echo "[fuzz] no shared corpora at $CORPORA; inline seeds only"
        return
    fi
    echo "[fuzz] seeding from $CORPORA"
    local f
    if [ -d "$CORPORA/gs1" ]; then
        seed_jsonl scan_decode input "$CORPORA"/gs1/*.jsonl
    fi
    if [ -d "$CORPORA/msr" ]; then
        seed_jsonl msr_tracks raw "$CORPORA"/msr/*.jsonl
    fi
    if [ -d "$CORPORA/poslog" ]; then
        while IFS= read -r -d '' f; do
            seed poslog <"$f"
        done < <(find "$CORPORA/poslog" -name '*.xml' -print0)
    fi
    if [ -d "$CORPORA/escpos" ]; then
        # escpos_journal reads a configuration byte and a chunk-size byte first:
        # split on cut, pieces of up to 7 bytes.
        while IFS= read -r -d '' f; do
            { printf '\001\007'; cat "$f"; } | seed escpos_journal
        done < <(find "$CORPORA/escpos" -name '*.bin' -print0)
    fi
}

seed_inline() {
    local s
    for s in \
        '4006381333931' ']E00123456789012' ']C1010952012345678815210526'$'\x1d''10ABC' \
        '(01)09520123456788(17)271231(10)LOT7' 'https://id.example/01/09520123456788/10/ABC?17=271231' \
        '4111 1111 1111 1111' '9800000000000018' '2012345012349' '2300007001258' \
        'https://shop.example/pickup/A123' 'RCPT-2026-0001' ']Q3BOPIS-77' '01234565'; do
        printf '%s' "$s" | seed scan_decode
    done
    for s in \
        ';7012345678901234=4912000?' '%B9400123456789012^LOYALTY/MEMBER^4912000?;9400123456789012=4912000?' \
        '%B4111111111111111^TEST/VISA^2812201123456?'$'\r\n' ';6012000000000001?' '%E?;E?'; do
        printf '%s' "$s" | seed msr_tracks
    done
    seed poslog <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/" xmlns:acs="http://example.invalid/acs">
  <Transaction>
    <BusinessUnit><UnitID TypeCode="RetailStore">s0001</UnitID></BusinessUnit>
    <WorkstationID>3</WorkstationID>
    <SequenceNumber>0042</SequenceNumber>
    <BusinessDayDate>2026-12-06</BusinessDayDate>
    <RetailTransaction>
      <LineItem><SequenceNumber>1</SequenceNumber>
        <Sale><POSIdentity POSIDType="GTIN"><POSItemID>09520123456788</POSItemID></POSIdentity>
          <Quantity UnitOfMeasureCode="KGM">0.420</Quantity><ExtendedAmount>3.15</ExtendedAmount></Sale></LineItem>
      <LineItem><SequenceNumber>2</SequenceNumber>
        <Tender TenderType="CreditDebit"><Amount>3.15</Amount>
          <CreditDebit><PrimaryAccountNumber>************1111</PrimaryAccountNumber></CreditDebit>
          <acs:CardInfo Scheme="VISA"><PrimaryAccountNumber>4111111111111111</PrimaryAccountNumber><acs:Last4>1111</acs:Last4></acs:CardInfo></Tender></LineItem>
      <Total TotalType="TransactionGrandAmount" CurrencyCode="EUR">3.15</Total>
    </RetailTransaction>
  </Transaction>
</POSLog>
XML
    printf '\001\003\033@\033t\000SHOP\nVISA 4111 1111 1111 1111\nTOTAL 3.15\n\035H\002\035kE\005A1234\035V\000' |
        seed escpos_journal
    printf '\001\000Ref 7 5111 1111 1111 1118 2812\n\035V\000' | seed escpos_journal
    # The escpos_journal crash of 2026-12-06 (a PAN next to other digits), minimised.
    printf '41051111111111111 1' | seed escpos_journal
    printf '\002\000RECEIPT 1\n\034(C\002\0000\002caf\303\251\t12.50\nThank you\n\033i' | seed escpos_journal
    for s in \
        '{"v":1,"stream":"stock","epoch":"e1","items":[{"seq":1,"op":"upsert","entity":{"gtin":"09520123456788","on_hand":3,"reserved_bopis":1,"aisle":"12","bin":"B3","updated_at_ms":1763890000000}}]}' \
        '{"v":1,"stream":"products","epoch":"2025-11-01.1","items":[{"seq":2,"op":"delete","entity":{"gtin":"04006381333931"}}]}' \
        '{"v":1,"stream":"pos_transactions","acked_through":17}' \
        '{"type":"range","v":1,"request_id":"r1","batch":{"v":1,"stream":"stock","epoch":"e1","items":[]}}' \
        '{"type":"unavailable","v":1,"request_id":"r2","stream":"stock","reason":"trimmed"}' \
        '{"type":"snapshot","v":1,"request_id":"r3","manifest":{"url":"https://snapshots.example/s.jsonl","size":10,"sha256":"00","streams":{"stock":{"epoch":"e1","seq":9}}}}' \
        '{"type":"nearby_stock","v":1,"request_id":"r4","gtin":"04006381333931","stores":[{"store_id":"s2","name":"Market","available":4,"distance_m":1200}]}' \
        '{"v":1,"command_id":"ops-1","body":{"type":"resync","streams":["stock"]}}' \
        '{"request_id":"er-1","customer_id":"c-1"}' \
        'sa/v1/store/acme/s0001/stock' 'sa/v1/device/d1/down/ack' 'sa/v1/device/d1/up/health' 'sa/v1/device/d1/presence'; do
        printf '%s' "$s" | seed downlink
    done
}

seed_corpora
seed_inline

# Per-target libFuzzer options. The ESC/POS samples run to 20 KB, which held
# escpos_journal to about 100 executions a second; their first 4 KB (libFuzzer's
# own default limit) already hold the commands, and longer inputs are truncated.
declare -A EXTRA_ARGS=([escpos_journal]="-max_len=4096")

declare -A SECS EXECS COV FT CORP CRASHES STATUS
failed=0
for t in "${TARGETS[@]}"; do
    echo "[fuzz] building $t"
    cargo fuzz build "$t"
    mkdir -p "fuzz/artifacts/$t"
    marker=$(mktemp)
    log=$LOGS/$t.log
    echo "[fuzz] running $t for ${SECONDS_PER_TARGET}s (log: $log)"
    start=$(date +%s)
    rc=0
    # shellcheck disable=SC2086 # EXTRA_ARGS holds separate options
    cargo fuzz run "$t" -- -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 \
        -print_final_stats=1 ${EXTRA_ARGS[$t]:-} >"$log" 2>&1 || rc=$?
    SECS[$t]=$(($(date +%s) - start))
    EXECS[$t]=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)
    COV[$t]=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    FT[$t]=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    CORP[$t]=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
    # Crashes of this run: artifacts newer than its start.
    artifacts=$(find "fuzz/artifacts/$t" -type f -newer "$marker")
    rm -f "$marker"
    CRASHES[$t]=$(grep -c . <<<"$artifacts" || true)
    if [ "$rc" -ne 0 ] || [ "${CRASHES[$t]}" -gt 0 ]; then
        STATUS[$t]="FAILED (exit $rc)"
        failed=1
        echo "[fuzz] $t FAILED; last lines of $log:"
        tail -n 30 "$log"
        if [ -n "$artifacts" ]; then
            sed 's/^/[fuzz]   artifact: /' <<<"$artifacts"
        fi
    else
        STATUS[$t]=ok
    fi
done

echo
echo "| target | seconds | executions | cov | ft | corpus (units/size) | crashes | status |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
for t in "${TARGETS[@]}"; do
    echo "| $t | ${SECS[$t]} | ${EXECS[$t]:-?} | ${COV[$t]:-?} | ${FT[$t]:-?} | ${CORP[$t]:-?} | ${CRASHES[$t]} | ${STATUS[$t]} |"
done
exit "$failed"
