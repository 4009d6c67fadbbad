//! The fleet simulator (docs/benchmarks.md, "Fleet"): many devices in one process, each
//! with its own SQLite store and outbox and the agent's real sync code
//! (`store_agent::sync::start`), against one Mosquitto on loopback and the reference
//! cloud. It measures what a broker outage does to a fleet:
//!
//! 1. **Boot**: every device starts at once with the product's defaults (a random
//!    boot delay up to `boot_delay_max_ms`, 30 s): connects per second at the broker.
//! 2. **Broker restart**: the broker stops; while it is down every device records a
//!    backlog of POS transactions; after the outage it starts again. Measured: the
//!    reconnect curve (connects per second, from the broker's own log), its peak
//!    against the stated bound, the time until every device is back, the time until
//!    every backlog is acknowledged by the cloud, and the broker's CPU time.
//!
//! Run: `cargo bench -p store-agent-e2e --bench fleet` (1,000 devices, 20 transactions
//! each, 20 s outage), or `-- --smoke` (20 devices, what CI runs to keep it working; no
//! figure is checked). `--devices N`, `--backlog K`, `--outage-s S`, `--boot-delay-ms B`
//! change the sizes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store_agent::cloud_sim::{CloudSim, CloudSimConfig};
use store_agent::config::Config;
use store_agent::events::Captured;
use store_agent::sample::{self, SampleSpec};
use store_agent::store::Store;
use store_agent::store::records::{PosLine, PosTransaction};
use store_agent::store::snapshot::ImportExpectations;
use store_agent_e2e::mqtt::{AclDevice, CLOUD_USER, Mosquitto, Pki, mosquitto_or_skip};
use store_agent_e2e::{STORE_ID, TENANT_ID, cpu_model, path_str, toml_string};
use tokio::runtime::Runtime;
use tokio::sync::watch;

// The shipped binary's allocator, so that the agent runs here as it runs in `store-agent`.
#[global_allocator]
static ALLOCATOR: store_agent::Allocator = store_agent::Allocator;

/// The cloud's sample store (the devices start with a copy of it, in sync).
const SEED: u64 = 1;
const CUSTOMERS: u64 = 200;
const PRODUCTS: u64 = 100;

struct Sizes {
    devices: usize,
    backlog: u64,
    outage: Duration,
    boot_delay_ms: u64,
    /// TLS with a client certificate per device and the ACL, as in a store.
    tls: bool,
}

impl Sizes {
    fn from_args() -> Sizes {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| -> Option<u64> {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} {v}: not a number")))
        };
        let smoke = args.iter().any(|a| a == "--smoke");
        let (devices, backlog, outage_s, boot) = if smoke {
            (20, 5, 3, 1_000)
        } else {
            (1_000, 20, 20, 30_000)
        };
        Sizes {
            devices: value("--devices").map_or(devices, |v| v as usize),
            backlog: value("--backlog").unwrap_or(backlog),
            outage: Duration::from_secs(value("--outage-s").unwrap_or(outage_s)),
            boot_delay_ms: value("--boot-delay-ms").unwrap_or(boot),
            tls: args.iter().any(|a| a == "--tls"),
        }
    }
}

/// Lets this process (and the broker it starts) hold a socket and SQLite's three
/// files per device.
fn raise_open_files() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        lim.rlim_cur
    }
}

fn device_id(i: usize) -> String {
    format!("fleet-{i:04}")
}

/// A device's configuration: product defaults for the connection (backoff 1 s doubling
/// to 120 s with full jitter) but for the boot delay, which the run sets. With `pki`,
/// TLS with the device's own client certificate; without, plain MQTT.
fn device_config(dir: &Path, i: usize, port: u16, boot_delay_ms: u64, pki: Option<&Pki>) -> Config {
    let transport = match pki {
        Some(pki) => {
            let files = pki.client(&device_id(i));
            format!(
                "ca_file = {}\ncert_file = {}\nkey_file = {}\n",
                toml_string(&path_str(pki.ca_file())),
                toml_string(&path_str(&files.cert)),
                toml_string(&path_str(&files.key)),
            )
        }
        None => "allow_plaintext = true\n".to_owned(),
    };
    let text = format!(
        "[store]\ntenant_id = \"{TENANT_ID}\"\nstore_id = \"{STORE_ID}\"\ndevice_id = \"{id}\"\n\n\
         [database]\npath = {db}\nread_connections = 1\n\n\
         [loyalty]\nhash_key = \"{key}\"\n\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\n{transport}\
         boot_delay_max_ms = {boot_delay_ms}\n",
        id = device_id(i),
        db = toml_string(&path_str(&dir.join("store.db"))),
        key = sample::DEMO_HASH_KEY_HEX,
    );
    Config::parse(&text, &|_| None).unwrap_or_else(|p| panic!("device configuration: {p:?}"))
}

/// One simulated device: its store and its running sync.
struct Device {
    store: Arc<Store>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn sale(device: usize, n: u64) -> PosTransaction {
    let gtin = sample::product_gtin(SEED, n % PRODUCTS);
    let line = |kind: &str, gtin: Option<String>| PosLine {
        kind: kind.into(),
        gtin,
        description: None,
        quantity_milli: 1000,
        amount_minor: 250,
    };
    PosTransaction {
        store_id: STORE_ID.into(),
        workstation: device_id(device),
        sequence_number: n as i64 + 1,
        business_day: "2026-11-23".into(),
        kind: "sale".into(),
        operator_id: None,
        customer_id: None,
        currency: "EUR".into(),
        total_minor: 250,
        tax_minor: 40,
        occurred_at_ms: None,
        lines: vec![line("sale", Some(gtin)), line("tender", None)],
    }
}

/// Broker log lines "New client connected … as fleet-NNNN" after byte `from`: (unix
/// second, client id).
fn connects(log: &str, from: usize) -> Vec<(i64, String)> {
    log.get(from..)
        .unwrap_or("")
        .lines()
        .filter_map(|l| {
            let (stamp, rest) = l.split_once(": ")?;
            let id = rest
                .strip_prefix("New client connected from ")?
                .split(" as ")
                .nth(1)?;
            let id = id.split_whitespace().next()?.to_owned();
            if !id.starts_with("fleet-") {
                return None;
            }
            let t = time::PrimitiveDateTime::parse(
                stamp,
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
            )
            .ok()?
            .assume_utc()
            .unix_timestamp();
            Some((t, id))
        })
        .collect()
}

/// Per-second connect counts from the first connect on, and the peak.
fn curve(events: &[(i64, String)]) -> (Vec<usize>, usize) {
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    for (t, _) in events {
        *per_second.entry(*t).or_default() += 1;
    }
    let (Some(first), Some(last)) = (per_second.keys().next(), per_second.keys().last()) else {
        return (Vec::new(), 0);
    };
    let counts: Vec<usize> = (*first..=*last)
        .map(|t| per_second.get(&t).copied().unwrap_or(0))
        .collect();
    let peak = counts.iter().copied().max().unwrap_or(0);
    (counts, peak)
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name in parentheses: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// Waits until `n` distinct fleet devices connected after log byte `from`; returns
/// the connects (first per device) and whether all came.
fn wait_connects(broker: &Mosquitto, from: usize, n: usize, timeout: Duration) -> (Vec<(i64, String)>, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut seen = BTreeSet::new();
        let firsts: Vec<(i64, String)> = connects(&broker.log(), from)
            .into_iter()
            .filter(|(_, id)| seen.insert(id.clone()))
            .collect();
        if firsts.len() >= n || Instant::now() >= deadline {
            let all = firsts.len() >= n;
            return (firsts, all);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Events still waiting in the devices' outboxes (rows leave only on the cloud's ack).
fn waiting(rt: &Runtime, devices: &[Device]) -> i64 {
    rt.block_on(async {
        let mut total = 0;
        for d in devices {
            total += d
                .store
                .reads()
                .read(|c| Ok(c.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))?))
                .await
                .unwrap_or(i64::MAX / 2);
        }
        total
    })
}

fn main() {
    let sizes = Sizes::from_args();
    if !mosquitto_or_skip("fleet benchmark") {
        return;
    }
    let files = raise_open_files();
    let n = sizes.devices;
    println!(
        "# Fleet: {n} devices ({}), {} POS transactions each during a {} s broker outage; {} cores ({}); open files {files}",
        if sizes.tls {
            "TLS, a client certificate each, ACL"
        } else {
            "plain MQTT"
        },
        sizes.backlog,
        sizes.outage.as_secs(),
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        cpu_model()
    );
    let data = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet");
    std::fs::create_dir_all(&data).unwrap();
    let dir = tempfile::tempdir_in(&data).expect("a work directory");
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let pki = sizes.tls.then(|| Pki::generate(&broker_dir));
    let mut broker = match &pki {
        Some(pki) => {
            let acl: Vec<AclDevice> = (0..n)
                .map(|i| AclDevice::new(&device_id(i), TENANT_ID, STORE_ID))
                .collect();
            Mosquitto::start(&broker_dir, pki, &acl)
        }
        None => Mosquitto::start_plain(&broker_dir),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cloud_dir = dir.path().join("cloud");
    std::fs::create_dir_all(&cloud_dir).unwrap();
    let cloud = rt
        .block_on(CloudSim::start({
            let mut config = CloudSimConfig::new("127.0.0.1", broker.port(), TENANT_ID, STORE_ID, &cloud_dir);
            config.tls = pki.as_ref().map(|pki| {
                let files = pki.client(CLOUD_USER);
                (pki.ca_file().to_owned(), files.cert, files.key)
            });
            config
        }))
        .expect("the cloud starts");
    assert!(
        rt.block_on(cloud.wait_ready(Duration::from_secs(60))),
        "the cloud connects"
    );

    // One store loaded with the cloud's sample data; every device starts from a copy.
    let template_dir = dir.path().join("template");
    let template_config = device_config(&template_dir, 0, broker.port(), 0, None);
    let template =
        Store::open(store_agent::runtime::store_options(&template_config).unwrap()).expect("template store");
    let snapshot = dir.path().join("sample.jsonl");
    sample::write_snapshot(
        &SampleSpec::new(SEED, CUSTOMERS, PRODUCTS),
        template.hasher(),
        std::fs::File::create(&snapshot).unwrap(),
    )
    .unwrap();
    template
        .import_snapshot_blocking(&snapshot, ImportExpectations::default())
        .expect("the sample imports");
    template.close();
    let opened = Instant::now();
    let mut devices = Vec::with_capacity(n);
    let log_at_boot = broker.log().len();
    for i in 0..n {
        let d = dir.path().join("devices").join(device_id(i));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(template_dir.join("store.db"), d.join("store.db")).unwrap();
        let config = device_config(&d, i, broker.port(), sizes.boot_delay_ms, pki.as_ref());
        let store = Arc::new(
            Store::open(store_agent::runtime::store_options(&config).unwrap()).expect("a device store"),
        );
        let (stop, stop_rx) = watch::channel(false);
        let _enter = rt.enter();
        let sync = store_agent::sync::start(&config, store.clone(), stop_rx)
            .expect("the sync starts")
            .expect("an [mqtt] section");
        devices.push(Device {
            store,
            stop,
            task: rt.spawn(sync),
        });
    }
    println!(
        "{n} devices opened and started in {:.1} s",
        opened.elapsed().as_secs_f64()
    );

    // 1. Boot.
    let boot_timeout = Duration::from_millis(sizes.boot_delay_ms) + Duration::from_secs(120);
    let (boot, all) = wait_connects(&broker, log_at_boot, n, boot_timeout);
    let (boot_curve, boot_peak) = curve(&boot);
    println!(
        "boot: {} of {n} connected over {} s; peak {boot_peak} connects/s (boot delay up to {} s)",
        boot.len(),
        boot_curve.len(),
        sizes.boot_delay_ms / 1000
    );
    assert!(
        all,
        "not every device connected at boot:\n{}",
        broker.log_tail(20)
    );

    // 2. The broker goes away; every device records its backlog meanwhile.
    broker.stop();
    let down = Instant::now();
    rt.block_on(async {
        let mut calls = tokio::task::JoinSet::new();
        for (i, d) in devices.iter().enumerate() {
            let store = d.store.clone();
            let backlog = sizes.backlog;
            calls.spawn(async move {
                for k in 0..backlog {
                    store
                        .record_pos_transaction(Captured::now(sale(i, k)))
                        .await
                        .expect("a sale is recorded offline");
                }
            });
        }
        while let Some(r) = calls.join_next().await {
            r.expect("a recording task");
        }
    });
    std::thread::sleep(sizes.outage.saturating_sub(down.elapsed()));
    let log_at_restart = broker.log().len();
    broker.start_again();
    let restarted = Instant::now();
    let broker_cpu_start = broker.pid().map_or(0.0, cpu_seconds);
    let (back, all) = wait_connects(&broker, log_at_restart, n, Duration::from_secs(300));
    let reconnected = restarted.elapsed();
    let (back_curve, back_peak) = curve(&back);
    assert!(all, "not every device came back:\n{}", broker.log_tail(20));
    let mut drained = None;
    while restarted.elapsed() < Duration::from_secs(600) {
        if waiting(&rt, &devices) == 0 {
            drained = Some(restarted.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let broker_cpu = broker.pid().map_or(0.0, cpu_seconds) - broker_cpu_start;
    let drained = drained.expect("every backlog reaches the cloud");
    let received: u64 = rt.block_on(async {
        let mut total = 0;
        for i in 0..n {
            total += cloud.received_count(&device_id(i)).await.unwrap_or(0);
        }
        total
    });
    assert_eq!(
        received,
        n as u64 * sizes.backlog,
        "the cloud holds every backlog event once"
    );
    // The bound: with full jitter, a device that has been failing for S s waits a random
    // time from a window that has grown to about S (it doubles with each failure, from
    // 1 s, capped at 120 s), so the fleet comes back spread over about S/2 s or more:
    // at most 2N/S connects per second. Without jitter, all N would come in one second.
    let window = sizes.outage.as_secs_f64().clamp(1.0, 120.0);
    let bound = ((2.0 * n as f64) / window).ceil() as usize;
    println!(
        "restart after {} s down: all {n} back in {:.1} s, peak {back_peak} connects/s (bound {bound}/s: {}), \
         {} backlog events acknowledged in {:.1} s, broker CPU {broker_cpu:.1} s",
        sizes.outage.as_secs(),
        reconnected.as_secs_f64(),
        if back_peak <= bound { "within" } else { "OVER" },
        n as u64 * sizes.backlog,
        drained.as_secs_f64()
    );
    println!("reconnect curve (connects per second from the first): {back_curve:?}");
    println!("boot curve (connects per second from the first): {boot_curve:?}");

    for d in devices {
        let _ = d.stop.send(true);
        let _ = rt.block_on(d.task);
        if let Ok(store) = Arc::try_unwrap(d.store) {
            store.close();
        }
    }
    rt.block_on(cloud.shutdown());
}
