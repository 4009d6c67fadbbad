//! The `store-agent` command line end to end: configuration checks, database commands,
//! sample data and all-or-nothing imports, a `SIGKILL` in the middle of an import, a clean stop
//! of `run` on `SIGTERM` and `SIGINT`, the demo, and the promise that card numbers never reach
//! the disk.
//!
//! Each test owns a [`TestDir`] and drives the real binary. Every assertion is one a broken
//! agent would fail: exact exit codes, line numbers computed from the text the test wrote,
//! counts compared with what the generator says it wrote, bytes searched for card numbers.

use serde_json::Value;
use std::time::{Duration, Instant};
use store_agent_e2e::{RunningAgent, TestDir, line_number_of};

/// The fixed "now" of every sample snapshot, so files are reproducible.
const REFERENCE_TIME_MS: &str = "1790000000000";

/// How long `run` may take to open (and create) its database and log "Agent ready.". Generous:
/// a debug build on a busy two-core machine, with other tests running beside it.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `run` may take to stop after SIGTERM or SIGINT. The agent's stop path is short
/// (close the store, checkpoint the WAL); ten seconds means "it stops", not "it is fast".
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `store-agent sample-data` with a fixed reference time, returning its JSON summary.
fn sample_data(dir: &TestDir, out: &str, customers: u64, products: u64, seed: u64) -> Value {
    let output = dir.run_ok([
        "sample-data",
        "--customers",
        &customers.to_string(),
        "--products",
        &products.to_string(),
        "--seed",
        &seed.to_string(),
        "--out",
        out,
        "--reference-time-ms",
        REFERENCE_TIME_MS,
    ]);
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|e| panic!("sample-data did not print a JSON summary ({e}):\n{output}"))
}

/// Asserts that every count `sample-data` reported equals the same count in `status --json`,
/// and that the counts a reader would look at first are there at all.
fn assert_counts_match(summary: &Value, status: &Value, context: &str) {
    let written = summary["counts"]
        .as_object()
        .unwrap_or_else(|| panic!("no counts object in the sample-data summary: {summary}"));
    for kind in [
        "customers",
        "products",
        "loyalty_cards",
        "stock",
        "orders",
        "associates",
    ] {
        assert!(
            written.contains_key(kind),
            "sample-data did not count {kind}: {summary}"
        );
    }
    for (kind, n) in written {
        assert_eq!(
            &status["counts"][kind], n,
            "{context}: status count of {kind} differs from what sample-data wrote\nstatus: {status:#}\nsummary counts: {:#}",
            summary["counts"]
        );
    }
}

/// The count of `kind` in a summary or status document.
fn count(document: &Value, kind: &str) -> u64 {
    document["counts"][kind]
        .as_u64()
        .unwrap_or_else(|| panic!("no count of {kind} in {document}"))
}

/// Whether `haystack` contains `needle` as a byte sequence.
fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// 1. config check

#[test]
fn config_check_accepts_a_good_file_and_reports_every_problem_with_key_and_line() {
    let dir = TestDir::new();
    let good = dir.write_config();
    let output = dir.run(["config", "check", &good]);
    assert_eq!(output.code(), Some(0), "{output}");
    assert_eq!(output.stdout.trim(), format!("{good}: ok"), "{output}");

    // Two problems in two sections: a value out of range and a misspelt key. Neither may hide
    // the other, and each must point at its own line.
    let text = dir
        .config_text()
        .replace(
            "device_id = \"test-device\"\n",
            "device_id = \"test-device\"\ncurency = \"EUR\"\n",
        )
        .replace("\n\n[loyalty]", "\nread_connections = 0\n\n[loyalty]");
    let bad = dir.write("bad.toml", &text);
    let unknown_line = line_number_of(&text, "curency =");
    let range_line = line_number_of(&text, "read_connections =");
    assert!(
        unknown_line < range_line,
        "the test text has the [store] problem first:\n{text}"
    );

    let output = dir.run(["config", "check", &bad]);
    assert_eq!(
        output.code(),
        Some(1),
        "config check must exit 1 on a bad file\n{output}"
    );
    let problems: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(
        problems.len(),
        2,
        "exactly the two problems, one per line\n{output}"
    );
    assert!(
        problems[0].starts_with(&format!("{bad}: line {unknown_line}: store.curency")),
        "the unknown key with its section, line and file, first (file order)\n{output}"
    );
    assert!(
        problems[1].starts_with(&format!("{bad}: line {range_line}: database.read_connections")),
        "the out-of-range key with its line\n{output}"
    );
    assert!(
        problems[1].contains("32"),
        "the message says the allowed range\n{output}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. db init, migrate, integrity

#[test]
fn db_commands_create_migrate_check_and_detect_corruption() {
    let dir = TestDir::new();
    let config = dir.write_config();
    let database = dir.path_str("store.db");

    let output = dir.run_ok(["db", "init", "--config", &config]);
    assert!(dir.database().is_file(), "db init created no database\n{output}");

    let again = dir.run(["db", "init", "--config", &config]);
    assert!(!again.success(), "a second db init must refuse\n{again}");
    assert!(
        again.stderr.contains(&database) && again.stderr.contains("already exists"),
        "the refusal names the file and says it exists\n{again}"
    );

    let migrate = dir.run_ok(["db", "migrate", "--config", &config]);
    assert!(migrate.stdout.contains("up to date"), "{migrate}");

    let integrity = dir.run(["db", "integrity", "--config", &config]);
    assert_eq!(integrity.code(), Some(0), "{integrity}");
    assert_eq!(integrity.stdout.trim(), format!("{database}: ok"), "{integrity}");

    // A copy of the (closed, checkpointed) database with garbage over its second and third
    // pages, as a failing SD card would leave it.
    let mut bytes = std::fs::read(dir.database()).expect("read the database");
    assert!(
        bytes.len() > 9000,
        "the new database is only {} bytes",
        bytes.len()
    );
    bytes[5000..9000].fill(0xFF);
    let corrupt = dir.write("corrupt.db", &bytes);
    let output = dir.run(["db", "integrity", "--database", &corrupt]);
    assert!(
        !output.success(),
        "db integrity must fail on a corrupt file\n{output}"
    );
    assert!(
        !output.stdout.contains(&format!("{corrupt}: ok")),
        "a corrupt file is not ok\n{output}"
    );
    assert!(
        output.all_output().contains(&corrupt),
        "the report names the file\n{output}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. sample-data, import, status; all or nothing

/// What `status --json` says of the database, without the disk's free space (which
/// changes with everything else on the machine).
fn stored_state(dir: &TestDir, config: &str) -> Value {
    let mut status = dir.status_json(config);
    status.as_object_mut().expect("an object").remove("storage");
    status
}

#[test]
fn sample_data_is_reproducible_and_import_is_all_or_nothing() {
    let dir = TestDir::new();
    let config = dir.write_config();

    let first = dir.path_str("sample-7a.jsonl");
    let second = dir.path_str("sample-7b.jsonl");
    let other_seed = dir.path_str("sample-8.jsonl");
    let summary = sample_data(&dir, &first, 300, 120, 7);
    let summary_again = sample_data(&dir, &second, 300, 120, 7);
    sample_data(&dir, &other_seed, 300, 120, 8);
    let bytes = std::fs::read(&first).expect("read the first snapshot");
    assert!(
        bytes == std::fs::read(&second).expect("read the second snapshot"),
        "same seed, sizes and reference time must give the same bytes"
    );
    assert_eq!(summary, summary_again);
    assert!(
        bytes != std::fs::read(&other_seed).expect("read the seed-8 snapshot"),
        "another seed must give another file"
    );
    assert_eq!(count(&summary, "customers"), 300);
    assert_eq!(count(&summary, "products"), 120);

    dir.run_ok(["import", &first, "--config", &config]);
    let status = stored_state(&dir, &config);
    assert_counts_match(&summary, &status, "after the import");

    // Every stream of the snapshot's header is recorded with the snapshot's position, so the
    // cloud sync can continue from it.
    let header: Value = serde_json::from_str(
        std::str::from_utf8(&bytes)
            .expect("the snapshot is UTF-8")
            .lines()
            .next()
            .expect("a header line"),
    )
    .expect("the header is JSON");
    let header_streams = header["streams"].as_object().expect("streams in the header");
    assert!(
        !header_streams.is_empty(),
        "the header lists no streams: {header}"
    );
    let downlink = status["downlink"].as_array().expect("a downlink array in status");
    let mut listed: Vec<&str> = downlink
        .iter()
        .map(|d| d["stream"].as_str().expect("a stream name"))
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = header_streams.keys().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(
        listed, expected,
        "status lists the snapshot's streams\n{status:#}"
    );
    for d in downlink {
        let position = &header_streams[d["stream"].as_str().unwrap()];
        assert_eq!(d["epoch"], position["epoch"], "{d}");
        assert_eq!(d["last_seq"], position["seq"], "{d}");
    }

    // A different, larger store whose import must fail: had any of it been applied, the
    // product count (products come first in the file) or the epochs would change.
    let bigger = dir.path_str("bigger.jsonl");
    let bigger_summary = sample_data(&dir, &bigger, 500, 200, 9);
    let bigger_text = std::fs::read_to_string(&bigger).expect("read the bigger snapshot");
    let lines: Vec<&str> = bigger_text.lines().collect();
    let customer_lines: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("{\"customer\":"))
        .collect();
    let bad_index = customer_lines[customer_lines.len() / 2];
    let bad_line_number = bad_index + 1;
    let line = lines[bad_index];
    let start = line.find("\"points\":").expect("a customer has points") + "\"points\":".len();
    let end = start
        + line[start..]
            .find(|c: char| !c.is_ascii_digit())
            .expect("points are followed by more fields");
    assert!(end > start, "points are a number: {line}");
    let bad_record = format!("{}\"{}\"{}", &line[..start], &line[start..end], &line[end..]);
    let mut bad_lines = lines.clone();
    bad_lines[bad_index] = &bad_record;
    let bad = dir.write("bad-record.jsonl", bad_lines.join("\n") + "\n");
    assert!(
        bad_line_number > 2 && bad_line_number < lines.len() - 1,
        "the bad record is in the middle"
    );

    let output = dir.run(["import", &bad, "--config", &config]);
    assert!(!output.success(), "a bad record must fail the import\n{output}");
    assert!(
        output.stderr.contains(&bad) && output.stderr.contains(&format!("line {bad_line_number}")),
        "the error names the file and line {bad_line_number}\n{output}"
    );
    let after_bad = stored_state(&dir, &config);
    assert_eq!(after_bad, status, "a failed import changes nothing");

    let truncated = dir.write("truncated.jsonl", lines[..lines.len() - 1].join("\n") + "\n");
    let output = dir.run(["import", &truncated, "--config", &config]);
    assert!(
        !output.success(),
        "a truncated snapshot must be refused\n{output}"
    );
    assert!(
        output.stderr.contains(&truncated) && output.stderr.contains("incomplete"),
        "the error names the file and says it is incomplete\n{output}"
    );
    let after_truncated = stored_state(&dir, &config);
    assert_eq!(after_truncated, status, "a refused import changes nothing");

    // The intact file imports: the two failures above came from the damage, not from a store
    // that cannot be imported at all.
    dir.run_ok(["import", &bigger, "--config", &config]);
    assert_counts_match(
        &bigger_summary,
        &dir.status_json(&config),
        "after the intact import",
    );
}

// ---------------------------------------------------------------------------------------------
// 4. SIGKILL in the middle of an import

/// How long the import has been loading into its new file when it is killed. A full snapshot
/// is loaded into `store.db.loading`, which replaces the database only once complete; the big
/// snapshot below takes several seconds in a debug build.
const LOADING_BEFORE_KILL: Duration = Duration::from_millis(1500);

#[test]
fn sigkill_during_import_leaves_the_previous_import_intact() {
    let dir = TestDir::new();
    let config = dir.write_config();

    let small = dir.path_str("small.jsonl");
    let small_summary = sample_data(&dir, &small, 100, 50, 1);
    dir.run_ok(["import", &small, "--config", &config]);
    assert_counts_match(
        &small_summary,
        &dir.status_json(&config),
        "after the small import",
    );

    // Big enough to take several seconds to import in a debug build (about 500,000 records,
    // 110 MB of JSON, a 60 MB database).
    let big = dir.path_str("big.jsonl");
    let big_summary = sample_data(&dir, &big, 150_000, 2_000, 2);

    let loading = std::path::PathBuf::from(format!("{}.loading", dir.database().display()));
    let started = Instant::now();
    let mut import: RunningAgent = dir.spawn(["import", &big, "--config", &config]);
    let caught = import.wait_until(Duration::from_secs(600), |_| loading.exists());
    assert!(
        caught,
        "the import did not start its new file within the time limit"
    );
    std::thread::sleep(LOADING_BEFORE_KILL);
    assert!(
        import.try_status().is_none(),
        "the import ended (after {:?}) before it was killed: grow the big snapshot\n--- stderr ---\n{}",
        started.elapsed(),
        import.stderr_so_far()
    );
    import.signal(libc::SIGKILL);
    let output = import.finish(Duration::from_secs(60));
    assert_eq!(
        output.signal(),
        Some(libc::SIGKILL),
        "the import was killed mid-way, not finished\n{output}"
    );
    let left_loading = loading.exists();
    let loading_len = std::fs::metadata(&loading).map_or(0, |m| m.len());
    eprintln!(
        "killed the import after {:?}; its unfinished new file has {loading_len} bytes",
        started.elapsed()
    );

    let integrity = dir.run(["db", "integrity", "--config", &config]);
    assert_eq!(integrity.code(), Some(0), "{integrity}");
    assert!(integrity.stdout.trim().ends_with(": ok"), "{integrity}");

    let status = dir.status_json(&config);
    let is = |summary: &Value| {
        summary["counts"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(kind, n)| &status["counts"][kind] == n)
    };
    let (small_state, big_state) = (is(&small_summary), is(&big_summary));
    assert!(
        small_state || big_state,
        "after the kill the database holds exactly one of the snapshots, not a mix\nstatus: {status:#}"
    );
    eprintln!(
        "after the kill the database holds the {} snapshot",
        if small_state {
            "small (earlier)"
        } else {
            "big (killed)"
        }
    );
    assert_eq!(
        small_state, left_loading,
        "a kill before the swap leaves the new file unfinished and the old database in place; \
         a kill after it leaves no new file"
    );

    // The next command that opens the store removes the unfinished file, and imports work.
    dir.run_ok(["import", &big, "--config", &config]);
    assert!(!loading.exists(), "the unfinished new file is still there");
    assert_counts_match(
        &big_summary,
        &dir.status_json(&config),
        "after the second big import",
    );
}

// ---------------------------------------------------------------------------------------------
// 5. run stops cleanly on SIGTERM and SIGINT

/// Starts `run` on a new database, waits until it is ready, sends `signal` and checks it exits
/// 0 in time with its WAL checkpointed and the database sound.
fn run_stops_cleanly_on(signal: libc::c_int) {
    let dir = TestDir::new();
    let config = dir.write_config();
    let mut agent = dir.spawn(["run", "--config", &config]);

    let ready = agent.wait_for_stderr("Agent ready.", READY_TIMEOUT);
    assert!(
        ready,
        "the agent did not log \"Agent ready.\" within {READY_TIMEOUT:?} (status {:?})\n--- stderr ---\n{}",
        agent.try_status(),
        agent.stderr_so_far()
    );
    assert!(dir.database().is_file(), "run did not create the database");
    assert!(
        agent.try_status().is_none(),
        "the agent exited on its own instead of running until stopped\n--- stderr ---\n{}",
        agent.stderr_so_far()
    );

    agent.signal(signal);
    let output = agent.finish(STOP_TIMEOUT);
    assert_eq!(
        output.code(),
        Some(0),
        "signal {signal} must stop the agent cleanly\n{output}"
    );

    let wal = dir.wal();
    let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(wal_len, 0, "the WAL must be checkpointed at shutdown\n{output}");

    let config_path = dir.path_str("config.toml");
    let integrity = dir.run(["db", "integrity", "--config", &config_path]);
    assert_eq!(integrity.code(), Some(0), "{integrity}");
    assert!(integrity.stdout.trim().ends_with(": ok"), "{integrity}");
}

#[test]
fn run_stops_cleanly_on_sigterm() {
    run_stops_cleanly_on(libc::SIGTERM);
}

#[test]
fn run_stops_cleanly_on_sigint() {
    run_stops_cleanly_on(libc::SIGINT);
}

/// The README's first command: the demo generates, imports, then runs the agent until Ctrl-C.
#[test]
fn demo_runs_the_agent_until_interrupted() {
    let dir = TestDir::new();
    let demo_dir = dir.path_str("demo");
    let mut agent = dir.spawn([
        "demo",
        "--dir",
        &demo_dir,
        "--customers",
        "100",
        "--products",
        "30",
    ]);
    let ready = agent.wait_for_stderr("Agent ready.", READY_TIMEOUT);
    assert!(
        ready,
        "the demo's agent did not become ready (status {:?})\n--- stderr ---\n{}",
        agent.try_status(),
        agent.stderr_so_far()
    );
    agent.signal(libc::SIGINT);
    let output = agent.finish(STOP_TIMEOUT);
    assert_eq!(
        output.code(),
        Some(0),
        "Ctrl-C must stop the demo cleanly\n{output}"
    );
    assert!(output.stderr.contains("Stopped cleanly."), "{output}");
    assert!(
        output.stdout.contains(&store_agent::sample::card_number(1, 0)),
        "{output}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. run refuses a bad configuration

#[test]
fn run_refuses_a_bad_configuration_and_names_the_key() {
    let dir = TestDir::new();
    let text = dir
        .config_text()
        .replace("\n\n[loyalty]", "\nbusy_timeout_ms = 0\n\n[loyalty]");
    let config = dir.write("config.toml", &text);
    let line = line_number_of(&text, "busy_timeout_ms =");

    let output = dir.spawn(["run", "--config", &config]).finish(READY_TIMEOUT);
    assert!(!output.success(), "run must refuse a bad configuration\n{output}");
    assert!(
        output.signal().is_none(),
        "it exits with an error, not a crash\n{output}"
    );
    assert!(
        output
            .stderr
            .contains(&format!("line {line}: database.busy_timeout_ms")),
        "the error names the key and its line\n{output}"
    );
    assert!(
        !dir.database().exists(),
        "nothing is created from a configuration that was refused"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. demo

#[test]
fn demo_without_run_prints_example_cards_and_the_status() {
    let dir = TestDir::new();
    let demo_dir = dir.path_str("demo");
    let output = dir.run([
        "demo",
        "--dir",
        &demo_dir,
        "--no-run",
        "--customers",
        "200",
        "--products",
        "50",
    ]);
    assert_eq!(output.code(), Some(0), "{output}");

    // The demo uses seed 1; its first customer's card is what a person would try first.
    let card = store_agent::sample::card_number(1, 0);
    assert!(
        output.stdout.contains(&card),
        "the demo prints example card numbers (expected {card})\n{output}"
    );
    let has_row = |name: &str, n: &str| {
        output.stdout.lines().any(|l| {
            let l = l.trim();
            l.starts_with(name) && l[name.len()..].trim() == n
        })
    };
    assert!(
        has_row("customers", "200"),
        "the status shows the 200 customers\n{output}"
    );
    assert!(
        has_row("products", "50"),
        "the status shows the 50 products\n{output}"
    );
    assert!(
        std::path::Path::new(&demo_dir).join("store.db").is_file(),
        "the demo keeps its database in --dir"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. privacy

#[test]
fn card_numbers_and_pickup_codes_never_reach_the_snapshot_or_the_database() {
    let dir = TestDir::new();
    let config = dir.write_config();
    let snapshot = dir.path_str("sample.jsonl");
    let seed = 7;
    let customers = 300;
    sample_data(&dir, &snapshot, customers, 120, seed);
    dir.run_ok(["import", &snapshot, "--config", &config]);

    let mut files = vec![(
        snapshot.clone(),
        std::fs::read(&snapshot).expect("read the snapshot"),
    )];
    files.push((
        dir.path_str("store.db"),
        std::fs::read(dir.database()).expect("read the database"),
    ));
    if let Ok(wal) = std::fs::read(dir.wal()) {
        files.push((dir.path_str("store.db-wal"), wal));
    }

    let mut spec = store_agent::sample::SampleSpec::new(seed, customers, 120);
    spec.reference_time_ms = REFERENCE_TIME_MS.parse().unwrap();
    let secrets: Vec<String> = (0..customers)
        .map(|i| store_agent::sample::card_number(seed, i))
        .chain((0..spec.bopis_orders()).map(|k| store_agent::sample::pickup_code(seed, k)))
        .collect();
    assert_eq!(secrets.len() as u64, customers + spec.bopis_orders());
    for (name, bytes) in &files {
        for secret in &secrets {
            assert!(
                !contains_bytes(bytes, secret.as_bytes()),
                "{secret} occurs in clear in {name}"
            );
        }
    }

    // The search itself works: the same bytes with one card number written in are caught.
    let mut planted = files[1].1.clone();
    planted.extend_from_slice(secrets[0].as_bytes());
    assert!(contains_bytes(&planted, secrets[0].as_bytes()));
}

// ---------------------------------------------------------------------------------------------
// scan decode, for support staff checking what a scanner sends

#[test]
fn scan_decode_prints_one_json_object_and_applies_the_store_rules() {
    let dir = TestDir::new();
    let decode = |args: &[&str]| -> Value {
        let out = dir.run_ok(args.iter().copied());
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{out}"))
    };
    let product = decode(&["scan", "decode", r"]C1\x1d0109521234543213\x1d3103000123"]);
    assert_eq!(product["kind"], "product");
    assert_eq!(product["symbology"], "]C1");
    assert_eq!(product["gtin14"], "09521234543213");
    assert_eq!(product["ais"][1]["ai"], "3103");
    assert_eq!(product["error"], Value::Null);

    let bad = decode(&["scan", "decode", "4006381333932"]);
    assert_eq!(
        bad["kind"], "payment_card_rejected",
        "a failed EAN starting with 4 is treated as a card"
    );
    let bad = decode(&["scan", "decode", "04006381333932"]);
    assert_eq!(bad["kind"], "invalid");
    assert!(bad["error"].as_str().unwrap().contains("check digit"), "{bad}");

    let pan = dir.run_ok(["scan", "decode", "4111111111111111"]);
    assert!(pan.stdout.contains("payment_card_rejected"), "{pan}");
    assert!(
        !pan.all_output().contains("4111111111111111"),
        "the PAN must not be echoed\n{pan}"
    );

    // The store's own rules: a pickup QR prefix from the config.
    let config = dir.write_config();
    let with_rules = format!(
        "{}\n[scan]\norder_code_prefixes = [\"https://shop.example/pickup/\"]\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, with_rules).unwrap();
    let order = decode(&[
        "scan",
        "decode",
        "https://shop.example/pickup/PU-123",
        "--config",
        &config,
    ]);
    assert_eq!(order["kind"], "order_code");
    let without = decode(&["scan", "decode", "https://shop.example/pickup/PU-123"]);
    assert_eq!(without["kind"], "unknown");

    let refused = dir.run(["scan", "decode", r"\x1"]);
    assert!(!refused.success());
    assert!(refused.stderr.contains("two hex digits"), "{refused}");
}
