//! Scan-to-screen latency (docs/benchmarks.md, "Screens"): a serial scanner on a
//! pseudo-terminal sends loyalty cards and product codes at a steady 20 scans/s to the
//! agent (in this process, `store_agent::runtime::run`, as `store-agent run` runs it)
//! holding the sample store with 1,000,000 customers and 200,000 products; a signed-in
//! associate console listens on `/api/v1/events`. The latency of a scan is from its
//! last byte written to the pty to its result arriving on the console's event stream:
//! the serial driver, decoding and classification, the store look-up (the whole
//! customer panel for a card), JSON and Server-Sent Events over HTTP.
//!
//! Baseline, in the same run: the bare store look-ups of the same scans on a read
//! connection of the same database (what no screen can beat). Target: p99 < 15 ms.
//!
//! Run: `cargo bench -p store-agent-e2e --bench screens` (full sizes: about two
//! minutes and 1.5 GB under target/bench-data, removed afterwards), or with
//! `-- --smoke` for a small store and a few scans (what CI runs to keep the benchmark
//! working; no timing is checked).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use store_agent::config::Config;
use store_agent::sample::{self, SampleSpec};
use store_agent::store::snapshot::ImportExpectations;
use store_agent::store::{Store, queries};
use store_agent_e2e::http::request;
use store_agent_e2e::{DEVICE_ID, Pty, STORE_ID, TENANT_ID, cpu_model, path_str, toml_string};

// The shipped binary's allocator, so that the agent runs here as it runs in `store-agent`.
#[global_allocator]
static ALLOCATOR: store_agent::Allocator = store_agent::Allocator;

const SEED: u64 = 1;
/// Scans per second, steady: a busy counter with a hand scanner does far fewer.
const SCANS_PER_S: u64 = 20;
const TARGET_P99: Duration = Duration::from_millis(15);

#[derive(Clone, Copy)]
struct Sizes {
    smoke: bool,
    customers: u64,
    products: u64,
    scans: u64,
}

fn config(dir: &Path, port: u16, scanner: &str) -> Config {
    let text = format!(
        "[store]\ntenant_id = \"{TENANT_ID}\"\nstore_id = \"{STORE_ID}\"\ndevice_id = \"{DEVICE_ID}\"\n\n\
         [database]\npath = {db}\n\n[loyalty]\nhash_key = \"{key}\"\n\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [[devices.scanners.serial]]\ndevice_id = \"scanner-1\"\npath = {scanner}\n",
        db = toml_string(&path_str(&dir.join("store.db"))),
        key = sample::DEMO_HASH_KEY_HEX,
        scanner = toml_string(scanner),
    );
    Config::parse(&text, &|_| None).unwrap_or_else(|problems| {
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        panic!("the benchmark's configuration is wrong: {}", text.join("; "))
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a scan is and the data the scanner sends.
#[derive(Clone)]
enum Scan {
    Card(String),
    Product(String),
}

impl Scan {
    fn data(&self) -> &str {
        match self {
            Scan::Card(d) | Scan::Product(d) => d,
        }
    }
}

/// Alternating cards and products, spread over the whole store.
fn scans(sizes: &Sizes) -> Vec<Scan> {
    (0..sizes.scans)
        .map(|i| {
            let k = i.wrapping_mul(2_654_435_761);
            if i % 2 == 0 {
                Scan::Card(sample::card_number(SEED, k % sizes.customers))
            } else {
                Scan::Product(sample::product_gtin(SEED, k % sizes.products))
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// p50, p95, p99 and max of `samples`, sorted in place.
fn summary(samples: &mut [Duration]) -> [Duration; 4] {
    samples.sort_unstable();
    [
        percentile(samples, 0.50),
        percentile(samples, 0.95),
        percentile(samples, 0.99),
        samples.last().copied().unwrap_or_default(),
    ]
}

/// Reads the console's event stream and sends the arrival time of every scan result.
fn listen(addr: String, cookie: String, tx: mpsc::SyncSender<(Instant, String)>) {
    let mut stream = TcpStream::connect(&addr).expect("the event stream connects");
    write!(
        stream,
        "GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let at = Instant::now();
        // Chunked transfer: the data lines arrive whole, between chunk-size lines.
        if let Some(data) = line.trim_end().strip_prefix("data: ")
            && data.contains("\"type\":\"scan\"")
        {
            let kind = serde_json::from_str::<serde_json::Value>(data)
                .ok()
                .and_then(|v| v["result"]["kind"].as_str().map(str::to_string))
                .unwrap_or_default();
            if tx.send((at, kind)).is_err() {
                return;
            }
        }
    }
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let sizes = if smoke {
        Sizes {
            smoke,
            customers: 2_000,
            products: 500,
            scans: 40,
        }
    } else {
        Sizes {
            smoke,
            customers: 1_000_000,
            products: 200_000,
            scans: 1_200,
        }
    };
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&data).expect("target/bench-data");
    let dir = tempfile::tempdir_in(&data).expect("a work directory");
    let mut scanner = Pty::open();
    let port = free_port();
    let config = config(dir.path(), port, &scanner.path);

    // The store, loaded before the agent starts (as `store-agent import` does).
    let spec = SampleSpec::new(SEED, sizes.customers, sizes.products);
    let options = store_agent::runtime::store_options(&config).unwrap();
    let store = Store::open(options).expect("the store opens");
    let snapshot = dir.path().join("sample.jsonl");
    let summary_of_sample =
        sample::write_snapshot(&spec, store.hasher(), std::fs::File::create(&snapshot).unwrap())
            .expect("the sample is written");
    store
        .import_snapshot_blocking(&snapshot, ImportExpectations::default())
        .expect("the sample imports");
    store.close();
    std::fs::remove_file(&snapshot).unwrap();

    // The agent, as `store-agent run` runs it: one runtime worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let agent = rt.spawn(store_agent::runtime::run(
        config.clone(),
        async move {
            let _ = stopped.await;
        },
        move || {
            let _ = ready_tx.send(());
        },
    ));
    ready_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the agent is ready");
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while request(&addr, "GET", "/readyz", &[], b"").status != 200 {
        assert!(Instant::now() < deadline, "/readyz never said ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A signed-in console.
    let page = request(&addr, "GET", "/console/sign-in", &[], b"");
    let (cookie, csrf) = (page.session_cookie().unwrap(), page.csrf());
    let who = &summary_of_sample.associates[0];
    let body = serde_json::json!({ "associate_id": who.associate_id, "pin": who.pin }).to_string();
    let res = request(
        &addr,
        "POST",
        "/api/v1/session",
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(res.status, 200, "sign-in: {}", res.body);
    let staff = res.session_cookie().unwrap();
    let (tx, rx) = mpsc::sync_channel(1024);
    {
        let (addr, staff) = (addr.clone(), staff.clone());
        std::thread::spawn(move || listen(addr, staff, tx));
    }
    // The scanner is connected once a scan comes through (the driver opens the pty
    // when the agent starts; the first scans are warm-up and not counted).
    let warm = scans(&Sizes { scans: 10, ..sizes });
    let mut connected = false;
    for s in warm.iter().cycle().take(600) {
        scanner
            .master
            .write_all(format!("{}\r", s.data()).as_bytes())
            .unwrap();
        if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            connected = true;
            break;
        }
    }
    assert!(connected, "no scan reached the console");
    std::thread::sleep(Duration::from_millis(300));
    while rx.try_recv().is_ok() {}

    // The run: one scan every 50 ms, each waited for.
    let list = scans(&sizes);
    let period = Duration::from_millis(1000 / SCANS_PER_S);
    let mut cards = Vec::new();
    let mut products = Vec::new();
    let started = Instant::now();
    for (i, s) in list.iter().enumerate() {
        let due = started + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let sent = Instant::now();
        scanner
            .master
            .write_all(format!("{}\r", s.data()).as_bytes())
            .unwrap();
        let (at, kind) = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("scan {i} ({}) never reached the console", s.data()));
        let latency = at.duration_since(sent);
        match s {
            Scan::Card(_) => {
                assert_eq!(kind, "customer", "a card opens the customer panel");
                cards.push(latency);
            }
            Scan::Product(_) => {
                assert_eq!(kind, "product");
                products.push(latency);
            }
        }
    }
    // Customer search over HTTP, as the console asks: e-mail and phone by their
    // keyed hashes (index), the phone's last four (scan until 20 hits), and a name
    // nobody has (the whole table).
    let mut searches: Vec<(&str, Vec<Duration>)> = Vec::new();
    for (what, make) in [
        (
            "e-mail",
            (|k: u64| sample::customer_email(k)) as fn(u64) -> String,
        ),
        ("phone number", |k| sample::customer_phone(k)),
        ("phone last 4", |k| format!("{:04}", (k + 1) % 10_000)),
        ("name nobody has", |k| format!("Qx{k}")),
    ] {
        let mut times = Vec::new();
        for i in 0..20u64 {
            let k = i.wrapping_mul(2_654_435_761) % sizes.customers;
            let q: String = make(k)
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            let t = Instant::now();
            let res = request(
                &addr,
                "GET",
                &format!("/api/v1/customers?q={q}"),
                &[("Cookie", &staff)],
                b"",
            );
            times.push(t.elapsed());
            assert_eq!(res.status, 200, "{}", res.body);
            let hits = res.json().as_array().map_or(0, Vec::len);
            if what == "name nobody has" {
                assert_eq!(hits, 0);
            } else {
                assert!(hits >= 1, "{what} {q} found nobody");
            }
        }
        searches.push((what, times));
    }

    let _ = stop.send(());
    rt.block_on(agent).unwrap().expect("the agent stops cleanly");

    // Baseline: the same look-ups straight on the store.
    let options = store_agent::runtime::store_options(&config).unwrap();
    let store = Store::open(options).expect("the store opens again");
    let mut bare_cards = Vec::new();
    let mut bare_products = Vec::new();
    for s in &list {
        let t = Instant::now();
        match s {
            Scan::Card(card) => {
                let hash = store.hasher().card_hash(card);
                let view = store
                    .reads()
                    .with(|c| queries::customer_view_by_card_hash(c, &hash))
                    .unwrap();
                assert!(view.is_some());
                bare_cards.push(t.elapsed());
            }
            Scan::Product(gtin) => {
                let p = store.reads().with(|c| queries::product_by_gtin(c, gtin)).unwrap();
                assert!(p.is_some());
                bare_products.push(t.elapsed());
            }
        }
    }
    store.close();

    println!(
        "## screens benchmark{}",
        if sizes.smoke {
            " (smoke: small store, figures mean nothing)"
        } else {
            ""
        }
    );
    println!();
    println!(
        "machine: {} cores, {} ({}); store: {} customers, {} products; {} scans at {SCANS_PER_S}/s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        std::env::consts::ARCH,
        sizes.customers,
        sizes.products,
        list.len()
    );
    println!();
    println!("| scan → console event | n | p50 ms | p95 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    let mut all: Vec<Duration> = cards.iter().chain(products.iter()).copied().collect();
    for (name, samples) in [
        ("loyalty card → customer panel", &mut cards),
        ("product → product lookup", &mut products),
        ("all scans", &mut all),
        ("baseline: bare customer view", &mut bare_cards),
        ("baseline: bare product lookup", &mut bare_products),
    ] {
        let n = samples.len();
        let [p50, p95, p99, max] = summary(samples);
        println!(
            "| {name} | {n} | {} | {} | {} | {} |",
            ms(p50),
            ms(p95),
            ms(p99),
            ms(max)
        );
    }
    println!();
    println!("| customer search over HTTP | n | p50 ms | max ms |");
    println!("|---|---|---|---|");
    for (what, mut times) in searches {
        let n = times.len();
        let [p50, _, _, max] = summary(&mut times);
        println!("| {what} | {n} | {} | {} |", ms(p50), ms(max));
    }
    let p99 = percentile(&all, 0.99);
    println!();
    println!(
        "target p99 < {} ms: {}",
        TARGET_P99.as_millis(),
        if p99 < TARGET_P99 { "met" } else { "NOT met" }
    );
}
