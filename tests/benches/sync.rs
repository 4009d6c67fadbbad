//! Benchmarks of the cloud sync against a real Mosquitto (plaintext, loopback), each next to
//! a baseline measured in the same run (docs/benchmarks.md, "Cloud sync"):
//!
//! 1. **Downlink apply rate**: the agent's sync (in this process) receives N one-item stock
//!    messages and applies them durably; the baseline is a plain rumqttc subscriber receiving
//!    the same N messages from the same broker. Target: agent ≥ 20,000 messages/s.
//! 2. **Backlog drain**: N POS transactions wait in the outbox; the reference cloud
//!    ([`CloudSim`]) comes up and the agent drains them until every event is acknowledged.
//!    The baseline is `mosquitto_pub -q 1 -l` publishing the same payloads one per message.
//!    Meanwhile a loop reads the customer view (what the associate screen shows) and records
//!    its latency. Targets: ≥ 5,000 events/s, customer view p99 < 2 ms.
//! 3. **Snapshot load**: a fresh agent bootstraps from a cloud whose base is the sample store
//!    with 1,000,000 customers and 200,000 products (request, manifest, HTTP download,
//!    SHA-256, import). Target: < 15 s.
//!
//! Run: `cargo bench -p store-agent-e2e --bench sync` (full sizes: several minutes and a few
//! GB of disk under target/bench-data, removed afterwards), or with `-- --smoke` for small
//! sizes (what CI runs, to keep the benchmark working; no timing is checked). `-- --only
//! downlink|drain|snapshot` runs one part.

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use rusqlite::Connection;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use store_agent::cloud_sim::{BaseData, CloudSim, CloudSimConfig};
use store_agent::config::Config;
use store_agent::events::{Captured, DownlinkStream};
use store_agent::sample::{self, SampleSpec};
use store_agent::store::records::{PosLine, PosTransaction};
use store_agent::store::snapshot::ImportExpectations;
use store_agent::store::{Recorded, Store, open_read_only, queries};
use store_agent::sync::protocol::{Ack, DownlinkBatch, DownlinkItem, Op, Topics, UplinkBatch, VERSION};
use store_agent_e2e::mqtt::{Mosquitto, mosquitto_or_skip};
use store_agent_e2e::{DEVICE_ID, STORE_ID, TENANT_ID, cpu_model, path_str, toml_string};
use tokio::runtime::Runtime;
use tokio::sync::watch;

// The shipped binary's allocator, so that the agent runs here as it runs in `store-agent`.
#[global_allocator]
static ALLOCATOR: store_agent::Allocator = store_agent::Allocator;

/// Seed of the sample stores. The sample snapshot's streams are at epoch `sample-{SEED}`.
const SEED: u64 = 1;

/// The agent's `drain_events_per_s` in the drain benchmark (the configuration's default).
const DRAIN_RATE: u64 = 20_000;

/// The second drain's `drain_events_per_s`: the configuration's maximum, so the rate limit
/// does not decide the figure and what the pipeline itself can do shows.
const UNTHROTTLED_RATE: u64 = 1_000_000;

/// POS transactions recorded concurrently while the outbox fills: enough to keep the store's
/// writer queue (256 jobs) full, so the writer never waits for the next call.
const FILL_IN_FLIGHT: usize = 512;

/// How often the customer-view loop reads during the drain: one view every this long, far
/// more than the screens of a store ask for, without taking a whole core from the drain.
const VIEW_PACE: Duration = Duration::from_millis(2);

/// The most lines one `mosquitto_pub -l` is given. Mosquitto 2.0.11's `mosquitto_pub -l -q 1`
/// publishes only part of a longer input (of 100,000 lines, 34,485; of 70,000, 4,485) and exits
/// as if done, apparently when its message ids wrap around after 65,535; 60,000 lines all go.
const MOSQUITTO_PUB_LINES: usize = 50_000;

/// How often the benchmark looks at the agent's database while it waits.
const POLL: Duration = Duration::from_millis(2);

/// Problem sizes of a run.
struct Sizes {
    smoke: bool,
    /// Downlink messages (one item each).
    downlink_messages: u64,
    /// Outbox events drained.
    drain_events: u64,
    /// The small sample store of the downlink and drain benchmarks.
    store_customers: u64,
    store_products: u64,
    /// The cloud's base data in the snapshot benchmark.
    snapshot_customers: u64,
    snapshot_products: u64,
    /// How long any wait may take before the benchmark fails.
    timeout: Duration,
}

impl Sizes {
    fn new(smoke: bool) -> Sizes {
        if smoke {
            Sizes {
                smoke,
                downlink_messages: 2_000,
                drain_events: 2_000,
                store_customers: 500,
                store_products: 200,
                snapshot_customers: 2_000,
                snapshot_products: 500,
                timeout: Duration::from_secs(60),
            }
        } else {
            Sizes {
                smoke,
                downlink_messages: 100_000,
                drain_events: 100_000,
                store_customers: 10_000,
                store_products: 2_000,
                snapshot_customers: 1_000_000,
                snapshot_products: 200_000,
                timeout: Duration::from_secs(900),
            }
        }
    }
}

/// Polls `done` every `every` until it holds; panics with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, every: Duration, mut done: impl FnMut() -> bool) -> Instant {
    let end = Instant::now() + timeout;
    loop {
        if done() {
            return Instant::now();
        }
        assert!(Instant::now() < end, "{what}: not within {timeout:?}");
        std::thread::sleep(every);
    }
}

/// One integer from a read-only connection (0 when the row is missing).
fn int(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

fn file_inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .expect("the agent's database exists")
        .ino()
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn runtime(workers: usize, name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The agent's configuration: the sample data's tenant, store and hashing key, a database in
/// `dir`, and a plaintext `[mqtt]` section for the broker on `port` without a boot delay.
fn agent_config(dir: &Path, port: u16) -> Config {
    let text = format!(
        "[store]\n\
         tenant_id = \"{TENANT_ID}\"\n\
         store_id = \"{STORE_ID}\"\n\
         device_id = \"{DEVICE_ID}\"\n\
         \n\
         [database]\n\
         path = {db}\n\
         \n\
         [loyalty]\n\
         hash_key = \"{key}\"\n\
         \n\
         [mqtt]\n\
         host = \"127.0.0.1\"\n\
         port = {port}\n\
         allow_plaintext = true\n\
         boot_delay_max_ms = 0\n\
         backoff_base_ms = 100\n\
         backoff_cap_ms = 1000\n\
         drain_events_per_s = {DRAIN_RATE}\n",
        db = toml_string(&path_str(&dir.join("store.db"))),
        key = sample::DEMO_HASH_KEY_HEX,
    );
    Config::parse(&text, &|_| None).unwrap_or_else(|problems| {
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        panic!(
            "the benchmark's agent configuration is wrong: {}",
            text.join("; ")
        )
    })
}

/// The agent in this process: its store, and its sync while it runs.
struct Agent {
    config: Config,
    store: Arc<Store>,
    running: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Agent {
    fn open(config: Config) -> Agent {
        let options = store_agent::runtime::store_options(&config).expect("store options");
        let store = Arc::new(Store::open(options).expect("the agent's store opens"));
        Agent {
            config,
            store,
            running: None,
        }
    }

    /// Starts `store_agent::sync::start`'s future on `rt`.
    fn start(&mut self, rt: &Runtime) {
        let _enter = rt.enter();
        let (stop, stop_rx) = watch::channel(false);
        let sync = store_agent::sync::start(&self.config, self.store.clone(), stop_rx)
            .expect("the sync starts")
            .expect("the configuration has an [mqtt] section");
        self.running = Some((stop, rt.spawn(sync)));
    }

    /// Stops the sync and waits for it (a clean MQTT disconnect).
    fn stop(&mut self, rt: &Runtime) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(true);
            rt.block_on(task).expect("the sync task ends cleanly");
        }
    }

    /// A read-only connection to the agent's database, for the benchmark to watch it.
    fn watch(&self) -> Connection {
        open_read_only(self.store.path()).expect("the agent's database opens read-only")
    }

    fn close(mut self, rt: &Runtime) {
        self.stop(rt);
        if let Ok(store) = Arc::try_unwrap(self.store) {
            store.close();
        }
    }
}

/// Waits for the agent's CONNACK state, its subscription in the broker's log, then a short
/// settle: from then on the broker routes the store's streams to its session.
fn wait_subscribed(agent: &Agent, broker: &Mosquitto, timeout: Duration) {
    let db = agent.watch();
    wait_until("the agent is online", timeout, POLL, || {
        db.query_row("SELECT state FROM sync_state WHERE id = 1", [], |r| {
            r.get::<_, String>(0)
        })
        .is_ok_and(|s| s == "online")
    });
    let filter = Topics::for_parts(TENANT_ID, STORE_ID, DEVICE_ID).store_filter();
    assert!(
        broker.wait_for_log(&filter, timeout),
        "the agent did not subscribe to {filter}:\n{}",
        broker.log_tail(20)
    );
    std::thread::sleep(Duration::from_millis(300));
}

/// Options of a plain rumqttc client of `broker`.
fn plain_options(broker: &Mosquitto, id: &str) -> MqttOptions {
    broker.plain_options(id)
}

/// Polls `eventloop` until the CONNACK.
async fn connected(eventloop: &mut EventLoop, id: &str) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return,
            Ok(_) => {}
            Err(e) => panic!("{id} cannot connect: {e}"),
        }
    }
}

/// What a raw publisher did: when it published the first message and when the broker
/// acknowledged the last.
struct Published {
    first: Instant,
    last_puback: Instant,
}

/// Connects a raw rumqttc client and publishes `payloads` on `topic` at QoS 1 as fast as the
/// client takes them (its in-flight window is rumqttc's default of 100).
async fn publish_all(options: MqttOptions, topic: String, payloads: Vec<Vec<u8>>) -> Published {
    let id = options.client_id();
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    connected(&mut eventloop, &id).await;
    let n = payloads.len();
    let acks = tokio::spawn(async move {
        let mut acked = 0;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked += 1;
                    if acked == n {
                        return Instant::now();
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("{id}: the connection broke after {acked} PUBACKs: {e}"),
            }
        }
    });
    let first = Instant::now();
    for payload in payloads {
        client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await
            .expect("the publish request is queued");
    }
    let last_puback = acks.await.expect("the publisher's event loop task");
    Published { first, last_puback }
}

/// A raw rumqttc client, connected and subscribed to `topic` (the SUBACK seen).
async fn subscribed(options: MqttOptions, id: &str, topic: &str, qos: QoS) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    connected(&mut eventloop, id).await;
    client
        .subscribe(topic, qos)
        .await
        .expect("the subscribe request is queued");
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("{id}: no SUBACK: {e}"),
        }
    }
    (client, eventloop)
}

/// Subscribes a raw rumqttc client to `topic` at QoS 1 and returns, once the broker granted
/// it, a task that ends when `n` messages arrived, with the time the last one did.
async fn count_messages(options: MqttOptions, topic: &str, n: u64) -> tokio::task::JoinHandle<Instant> {
    let id = options.client_id();
    let (client, mut eventloop) = subscribed(options, &id, topic, QoS::AtLeastOnce).await;
    tokio::spawn(async move {
        // The client lives as long as its event loop is polled.
        let _client = client;
        let mut received = 0;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    received += 1;
                    if received == n {
                        return Instant::now();
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("{id}: the connection broke after {received} messages: {e}"),
            }
        }
    })
}

/// Writes the sample store `spec` as a snapshot file.
fn write_sample(spec: &SampleSpec, store: &Store, file: &Path) {
    let out = std::fs::File::create(file).expect("the sample snapshot file");
    sample::write_snapshot(spec, store.hasher(), out).expect("the sample snapshot is written");
}

// ---------------------------------------------------------------------------------------------
// 1. Downlink apply rate

struct DownlinkFigures {
    messages: u64,
    bytes: u64,
    agent: Duration,
    agent_publish: Duration,
    /// Durable one-row commits per second on the same disk, one after the other.
    bare_commits: f64,
    baseline: Duration,
    baseline_publish: Duration,
}

/// `n` store-stream messages of the stock stream, each a batch of one upsert, seqs 1..=n in
/// `epoch`, cycling over the sample's products.
fn stock_messages(n: u64, epoch: &str, products: u64) -> Vec<Vec<u8>> {
    let gtins: Vec<String> = (0..products).map(|i| sample::product_gtin(SEED, i)).collect();
    (1..=n)
        .map(|seq| {
            let gtin = &gtins[(seq % products) as usize];
            let batch = DownlinkBatch {
                v: VERSION,
                stream: DownlinkStream::Stock.as_str().into(),
                epoch: epoch.into(),
                items: vec![DownlinkItem {
                    seq: seq as i64,
                    op: Op::Upsert,
                    entity: serde_json::json!({
                        "gtin": gtin,
                        "on_hand": (seq % 97) as i64,
                        "reserved_bopis": 0,
                        "aisle": format!("A{}", seq % 40),
                        "bin": format!("{}", seq % 12),
                        "updated_at_ms": 1_790_000_000_000i64 + seq as i64,
                    }),
                }],
            };
            serde_json::to_vec(&batch).expect("a batch serializes")
        })
        .collect()
}

/// The ceiling of one durable commit per message on this disk: `n` transactions of one
/// stock-row upsert each, one after the other, on a bare rusqlite connection with the agent's
/// journal settings (WAL, `synchronous=FULL`). Commits per second.
fn bare_commit_rate(dir: &Path, n: u64) -> f64 {
    let conn = Connection::open(dir.join("bare-commits.db")).expect("a bare database");
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE stock (gtin TEXT PRIMARY KEY, on_hand INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL)
         WITHOUT ROWID",
    )
    .unwrap();
    let mut upsert = conn
        .prepare(
            "INSERT INTO stock (gtin, on_hand, updated_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (gtin) DO UPDATE SET on_hand = excluded.on_hand, updated_at_ms = excluded.updated_at_ms",
        )
        .unwrap();
    let started = Instant::now();
    for i in 0..n as i64 {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        upsert
            .execute(rusqlite::params![format!("{:014}", i % 2000), i % 97, i])
            .unwrap();
        conn.execute_batch("COMMIT").unwrap();
    }
    rate(n, started.elapsed())
}

fn downlink(sizes: &Sizes, data: &Path, aux: &Runtime, agent_rt: &Runtime) -> DownlinkFigures {
    let dir = tempfile::tempdir_in(data).expect("a work directory");
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let broker = Mosquitto::start_plain(&broker_dir);

    // The agent's store: the small sample store, every stream of it at sample-1 / 0.
    let spec = SampleSpec::new(SEED, sizes.store_customers, sizes.store_products);
    let mut agent = Agent::open(agent_config(&dir.path().join("agent"), broker.port()));
    let sample_file = dir.path().join("sample.jsonl");
    write_sample(&spec, &agent.store, &sample_file);
    agent
        .store
        .import_snapshot_blocking(&sample_file, ImportExpectations::default())
        .expect("the sample store imports");

    let n = sizes.downlink_messages;
    let payloads = stock_messages(n, &format!("sample-{SEED}"), spec.products);
    let bytes = payloads.iter().map(|p| p.len() as u64).sum();

    // Baseline first, on a topic the agent does not read: a bare subscriber.
    let baseline_topic = "bench/baseline/stock";
    let received = aux.block_on(count_messages(
        plain_options(&broker, "bench-baseline-sub"),
        baseline_topic,
        n,
    ));
    let published = aux.block_on(publish_all(
        plain_options(&broker, "bench-baseline-pub"),
        baseline_topic.into(),
        payloads.clone(),
    ));
    let last = aux.block_on(async {
        tokio::time::timeout(sizes.timeout, received)
            .await
            .expect("the baseline subscriber got every message in time")
            .expect("the baseline subscriber task")
    });
    let baseline = last - published.first;
    let baseline_publish = published.last_puback - published.first;

    // The agent: subscribed, then the same messages on its store's stock topic.
    agent.start(agent_rt);
    wait_subscribed(&agent, &broker, sizes.timeout);
    let db = agent.watch();
    let stock_seq = "SELECT last_seq FROM downlink_streams WHERE stream = 'stock'";
    assert_eq!(int(&db, stock_seq), 0, "the stock stream starts at seq 0");
    let topic = Topics::for_parts(TENANT_ID, STORE_ID, DEVICE_ID).store_stream(DownlinkStream::Stock);
    let publisher = aux.spawn(publish_all(
        plain_options(&broker, "bench-cloud-pub"),
        topic,
        payloads,
    ));
    let applied = wait_until(
        "the agent applies every downlink message",
        sizes.timeout,
        POLL,
        || int(&db, stock_seq) >= n as i64,
    );
    let published = aux.block_on(publisher).expect("the publisher task");
    let agent_time = applied - published.first;
    let dead: i64 = int(&db, "SELECT count(*) FROM dead_letters");
    let bare_commits = bare_commit_rate(dir.path(), n.min(20_000));
    assert_eq!(dead, 0, "no downlink message was refused");
    drop(db);
    agent.close(agent_rt);
    drop(broker);
    DownlinkFigures {
        messages: n,
        bytes,
        agent: agent_time,
        agent_publish: published.last_puback - published.first,
        bare_commits,
        baseline,
        baseline_publish,
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Backlog drain

struct DrainFigures {
    events: u64,
    payload_bytes: u64,
    bootstrap: Duration,
    /// mosquitto_pub's time and how many processes it took.
    baseline: Option<(Duration, usize)>,
    idle_views: Latencies,
    /// At [`DRAIN_RATE`], then at [`UNTHROTTLED_RATE`].
    runs: Vec<DrainRun>,
}

/// One drain of `events` outbox events.
struct DrainRun {
    /// The agent's `drain_events_per_s`.
    rate: u64,
    /// How long recording the events took.
    fill: Duration,
    drain: Duration,
    views: Latencies,
    wire: Wire,
}

/// Latencies of one measured operation.
struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    fn new(mut samples: Vec<Duration>) -> Latencies {
        samples.sort_unstable();
        Latencies { samples }
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.samples.len() as f64 - 1.0) * p).round() as usize;
        self.samples[i]
    }

    fn max(&self) -> Duration {
        self.samples.last().copied().unwrap_or_default()
    }

    /// "p50 / p99 / max" in ms, or "none" without samples.
    fn summary(&self) -> String {
        if self.samples.is_empty() {
            return "none".into();
        }
        format!(
            "{:.1} / {:.1} / {:.1}",
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(self.max())
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// POS transaction `i`: a sale of two items paid in cash, on one of eight registers.
fn pos_transaction(i: u64, spec: &SampleSpec) -> PosTransaction {
    let line = |kind: &str, gtin: Option<String>, amount: i64| PosLine {
        kind: kind.into(),
        gtin,
        description: Some(format!("{kind} line")),
        quantity_milli: 1000,
        amount_minor: amount,
    };
    let a = 199 + (i % 1000) as i64;
    let b = 2_49 + (i % 300) as i64;
    PosTransaction {
        store_id: STORE_ID.into(),
        workstation: format!("POS-{}", i % 8 + 1),
        sequence_number: (i / 8 + 1) as i64,
        business_day: "2026-11-23".into(),
        kind: "sale".into(),
        operator_id: Some("A001".into()),
        customer_id: (i % 3 == 0).then(|| sample::customer_id(i % spec.customers)),
        currency: "EUR".into(),
        total_minor: a + b,
        tax_minor: (a + b) / 6,
        occurred_at_ms: Some(1_790_000_000_000 + i as i64),
        lines: vec![
            line("sale", Some(sample::product_gtin(SEED, i % spec.products)), a),
            line(
                "sale",
                Some(sample::product_gtin(SEED, (i * 7 + 1) % spec.products)),
                b,
            ),
            line("tender", None, a + b),
        ],
    }
}

/// Records POS transactions `first..first + n` through `Store::record_pos_transaction`, [`FILL_IN_FLIGHT`]
/// calls at a time. Each is its own durable transaction.
async fn fill_outbox(store: Arc<Store>, spec: SampleSpec, first: u64, n: u64) -> Duration {
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in first..first + n {
        while calls.len() >= FILL_IN_FLIGHT {
            calls.join_next().await.expect("a call").expect("the call's task");
        }
        let store = store.clone();
        let tx = pos_transaction(i, &spec);
        calls.spawn(async move {
            let recorded = store
                .record_pos_transaction(Captured::now(tx))
                .await
                .expect("the transaction is recorded");
            assert!(matches!(recorded, Recorded::New { .. }), "{recorded:?}");
        });
    }
    while let Some(call) = calls.join_next().await {
        call.expect("the call's task");
    }
    started.elapsed()
}

/// Reads customer views of random sample customers (by card number, as a scan at the
/// counter: HMAC, then the view in one read transaction) every [`VIEW_PACE`] until `stop`.
/// Returns the latencies and how many views were found.
fn view_loop(store: Arc<Store>, customers: u64, stop: Arc<AtomicBool>) -> (Vec<Duration>, u64) {
    let cards: Vec<String> = (0..customers.min(50_000))
        .map(|i| sample::card_number(SEED, i * (customers / customers.min(50_000))))
        .collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut samples = Vec::new();
    let mut found = 0;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // xorshift64: a random customer each time, so the pages read are not all hot.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let card = &cards[(state % cards.len() as u64) as usize];
        let started = Instant::now();
        let hash = store.hasher().card_hash(card);
        let view = store
            .reads()
            .with(|c| queries::customer_view_by_card_hash(c, &hash))
            .expect("the customer view query");
        samples.push(started.elapsed());
        found += u64::from(view.is_some());
        next += VIEW_PACE;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    (samples, found)
}

/// `mosquitto_pub`: `PATH`, then where Debian installs it.
fn mosquitto_pub() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join("mosquitto_pub"))
        .find(|candidate| candidate.is_file())
}

/// What the drain looks like on the wire: the agent's uplink messages and the cloud's acks,
/// as a third client subscribed to the device's topics (QoS 0) sees them.
enum Seen {
    /// An uplink batch: its first and last seq and its number of events.
    Up { last: i64, events: usize },
    /// An ack.
    Ack { through: i64 },
}

/// Subscribes to every topic of the benchmark's device and records what passes until `stop`.
async fn observe(
    options: MqttOptions,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<(Instant, Seen)>> {
    let id = options.client_id();
    let (client, mut eventloop) = subscribed(
        options,
        &id,
        &format!("sa/v1/device/{DEVICE_ID}/#"),
        QoS::AtMostOnce,
    )
    .await;
    tokio::spawn(async move {
        let _client = client;
        let mut seen = Vec::new();
        loop {
            let event = tokio::select! {
                event = eventloop.poll() => event,
                _ = stop.changed() => return seen,
            };
            let Ok(Event::Incoming(Packet::Publish(p))) = event else {
                continue;
            };
            let at = Instant::now();
            if p.topic.ends_with("/up/pos_transactions") {
                let batch: UplinkBatch = serde_json::from_slice(&p.payload).expect("an uplink batch");
                let last = batch.events.last().map_or(0, |e| e.seq);
                seen.push((
                    at,
                    Seen::Up {
                        last,
                        events: batch.events.len(),
                    },
                ));
            } else if p.topic.ends_with("/down/ack") {
                let ack: Ack = serde_json::from_slice(&p.payload).expect("an ack");
                seen.push((
                    at,
                    Seen::Ack {
                        through: ack.acked_through,
                    },
                ));
            }
        }
    })
}

/// The drain as the wire shows it.
struct Wire {
    messages: usize,
    events_sent: usize,
    acks: usize,
    /// Per uplink message: its publish → the first ack that covers it.
    ack_latency: Latencies,
    /// Per ack: its arrival → the agent's next uplink message (if any came after it).
    ack_to_next_send: Latencies,
    /// Uplink messages sent while every event sent before was already acknowledged: the
    /// pipeline was empty.
    sends_after_idle: usize,
}

fn wire(seen: &[(Instant, Seen)]) -> Wire {
    let mut messages = 0;
    let mut events_sent = 0;
    let mut acks = 0;
    let mut ack_latency = Vec::new();
    let mut ack_to_next_send = Vec::new();
    let mut sends_after_idle = 0;
    let mut acked = 0;
    let mut sent = 0;
    for (i, (at, what)) in seen.iter().enumerate() {
        match what {
            Seen::Up { last, events } => {
                messages += 1;
                events_sent += events;
                if sent <= acked && i > 0 {
                    sends_after_idle += 1;
                }
                sent = sent.max(*last);
                let covered = seen[i..].iter().find_map(|(t, w)| match w {
                    Seen::Ack { through } if through >= last => Some(*t),
                    _ => None,
                });
                if let Some(t) = covered {
                    ack_latency.push(t - *at);
                }
            }
            Seen::Ack { through } => {
                acks += 1;
                acked = acked.max(*through);
                let next = seen[i..]
                    .iter()
                    .find_map(|(t, w)| matches!(w, Seen::Up { .. }).then_some(*t));
                if let Some(t) = next {
                    ack_to_next_send.push(t - *at);
                }
            }
        }
    }
    Wire {
        messages,
        events_sent,
        acks,
        ack_latency: Latencies::new(ack_latency),
        ack_to_next_send: Latencies::new(ack_to_next_send),
        sends_after_idle,
    }
}

fn drain(sizes: &Sizes, data: &Path, aux: &Runtime, agent_rt: &Runtime) -> DrainFigures {
    let dir = tempfile::tempdir_in(data).expect("a work directory");
    let broker_dir = dir.path().join("broker");
    let cloud_dir = dir.path().join("cloud");
    std::fs::create_dir_all(&broker_dir).unwrap();
    std::fs::create_dir_all(&cloud_dir).unwrap();
    let broker = Mosquitto::start_plain(&broker_dir);

    // The cloud, with the small sample store as its base.
    let spec = SampleSpec::new(SEED, sizes.store_customers, sizes.store_products);
    let mut cloud_config = CloudSimConfig::new("127.0.0.1", broker.port(), TENANT_ID, STORE_ID, &cloud_dir);
    cloud_config.base = BaseData::sample(spec.clone());
    let cloud = aux
        .block_on(CloudSim::start(cloud_config))
        .expect("the cloud starts");
    assert!(
        aux.block_on(cloud.wait_ready(sizes.timeout)),
        "the cloud connects"
    );

    // A store bootstrapped from the cloud, then offline while the backlog builds up: the
    // situation after a long outage.
    let mut agent = Agent::open(agent_config(&dir.path().join("agent"), broker.port()));
    let db = agent.watch();
    let started = Instant::now();
    agent.start(agent_rt);
    let bootstrapped = wait_until("the agent bootstraps from the cloud", sizes.timeout, POLL, || {
        int(&db, "SELECT count(*) FROM downlink_streams") == DownlinkStream::ALL.len() as i64
    });
    let bootstrap = bootstrapped - started;
    agent.stop(agent_rt);

    let n = sizes.drain_events;
    let fill = agent_rt.block_on(fill_outbox(agent.store.clone(), spec.clone(), 0, n));
    assert_eq!(
        int(
            &db,
            "SELECT count(*) FROM outbox WHERE stream = 'pos_transactions'"
        ),
        n as i64
    );

    // Baseline: the same payloads, one per message, through mosquitto_pub, in files of at most
    // MOSQUITTO_PUB_LINES lines (see there).
    let mut files = Vec::new();
    let mut payload_bytes = 0;
    {
        let mut stmt = db
            .prepare("SELECT payload FROM outbox WHERE stream = 'pos_transactions' ORDER BY seq")
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        let mut out: Option<std::io::BufWriter<std::fs::File>> = None;
        let mut lines = 0;
        while let Some(row) = rows.next().unwrap() {
            let payload: String = row.get(0).unwrap();
            assert!(!payload.contains('\n'), "a payload is one line");
            if lines % MOSQUITTO_PUB_LINES == 0 {
                if let Some(mut full) = out.take() {
                    full.flush().unwrap();
                }
                let file = dir.path().join(format!("payloads-{}.txt", files.len()));
                out = Some(std::io::BufWriter::new(std::fs::File::create(&file).unwrap()));
                files.push(file);
            }
            let out = out.as_mut().expect("a payload file");
            out.write_all(payload.as_bytes()).unwrap();
            out.write_all(b"\n").unwrap();
            payload_bytes += payload.len() as u64;
            lines += 1;
        }
        if let Some(mut last) = out {
            last.flush().unwrap();
        }
    }
    let baseline = mosquitto_pub().map(|binary| {
        let topic = "bench/baseline/pos_transactions";
        let received = aux.block_on(count_messages(
            plain_options(&broker, "bench-baseline-sub"),
            topic,
            n,
        ));
        let started = Instant::now();
        for file in &files {
            let output = std::process::Command::new(&binary)
                .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
                .args(["-i", "bench-mosquitto-pub", "-q", "1", "-t", topic, "-l"])
                .stdin(std::fs::File::open(file).unwrap())
                .output()
                .expect("mosquitto_pub runs");
            assert!(
                output.status.success(),
                "mosquitto_pub failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let elapsed = started.elapsed();
        aux.block_on(async {
            tokio::time::timeout(sizes.timeout, received)
                .await
                .expect("the subscriber got every mosquitto_pub message")
                .expect("the subscriber task")
        });
        (elapsed, files.len())
    });
    if baseline.is_none() {
        eprintln!("SKIP the drain baseline: no mosquitto_pub executable");
    }

    // The customer view while idle, for comparison.
    let view_store = agent.store.clone();
    let views = |duration: Option<Duration>, stop: Arc<AtomicBool>| {
        let store = view_store.clone();
        let customers = spec.customers;
        let thread = std::thread::spawn(move || view_loop(store, customers, stop.clone()));
        if let Some(d) = duration {
            std::thread::sleep(d);
        }
        thread
    };
    let stop = Arc::new(AtomicBool::new(false));
    let idle = views(Some(Duration::from_secs(1)), stop.clone());
    stop.store(true, Ordering::Relaxed);
    let (idle_views, _) = idle.join().expect("the idle view loop");

    // The drain at the configured rate, then (after filling the outbox again) with the rate
    // limit out of the way, each with the view loop beside it.
    let mut runs = Vec::new();
    for (round, drain_rate) in [DRAIN_RATE, UNTHROTTLED_RATE].into_iter().enumerate() {
        let round = round as u64;
        let fill = if round == 0 {
            fill
        } else {
            agent_rt.block_on(fill_outbox(agent.store.clone(), spec.clone(), round * n, n))
        };
        agent
            .config
            .mqtt
            .as_mut()
            .expect("an [mqtt] section")
            .drain_events_per_s = drain_rate;
        let acked = "SELECT acked_seq FROM outbox_streams WHERE stream = 'pos_transactions'";
        let (stop_observer, observer_stop) = watch::channel(false);
        let observer = aux.block_on(observe(plain_options(&broker, "bench-observer"), observer_stop));
        let stop = Arc::new(AtomicBool::new(false));
        let during = views(None, stop.clone());
        let started = Instant::now();
        agent.start(agent_rt);
        let drained = wait_until("the agent drains the outbox", sizes.timeout, POLL, || {
            int(&db, acked) >= ((round + 1) * n) as i64
        });
        stop.store(true, Ordering::Relaxed);
        let (drain_views, views_found) = during.join().expect("the view loop");
        let drain = drained - started;
        // The last ack is on its way to the observer too.
        std::thread::sleep(Duration::from_millis(200));
        let _ = stop_observer.send(true);
        let wire = wire(&aux.block_on(observer).expect("the observer task"));
        agent.stop(agent_rt);
        assert_eq!(int(&db, "SELECT count(*) FROM outbox"), 0, "the outbox is empty");
        let received = aux
            .block_on(cloud.received_count(DEVICE_ID))
            .expect("the cloud's count");
        assert_eq!(received, (round + 1) * n, "the cloud stored every event");
        assert_eq!(
            views_found,
            drain_views.len() as u64,
            "every customer view found a customer"
        );
        runs.push(DrainRun {
            rate: drain_rate,
            fill,
            drain,
            views: Latencies::new(drain_views),
            wire,
        });
    }

    drop(db);
    agent.close(agent_rt);
    aux.block_on(cloud.shutdown());
    drop(broker);
    DrainFigures {
        events: n,
        payload_bytes,
        bootstrap,
        baseline,
        idle_views: Latencies::new(idle_views),
        runs,
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Snapshot load

struct SnapshotFigures {
    customers: u64,
    products: u64,
    records: u64,
    bytes: u64,
    base: Duration,
    total: Duration,
    /// Start → the import's parser thread starts (connect, snapshot request, manifest
    /// reply, HTTP request; the writer takes the import job).
    to_import: Option<Duration>,
    /// Parser thread starts → every stream has its position: the download (streamed into
    /// the parser, size and SHA-256 checked at its end) and the import, committed.
    import: Option<Duration>,
    /// Of which: parser thread ends → every stream has its position (the last queued
    /// batches, the index rebuild, the commit).
    import_tail: Option<Duration>,
}

/// Whether a thread of this process is called `name` (the store names its import's parser
/// thread `snapshot-parser`; the agent runs in this process).
fn thread_running(name: &str) -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| {
        tasks.filter_map(Result::ok).any(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim_end() == name)
        })
    })
}

/// The `records` of a snapshot file's trailer (`{"end":{"records":N}}`).
fn trailer_records(file: &Path) -> u64 {
    let mut f = std::fs::File::open(file).expect("the cloud's base file");
    let len = f.metadata().unwrap().len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).unwrap();
    let mut tail = String::new();
    f.read_to_string(&mut tail).unwrap();
    let last = tail.trim_end().lines().last().unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(last).expect("the trailer is JSON");
    value["end"]["records"].as_u64().expect("a trailer with records")
}

fn snapshot(sizes: &Sizes, data: &Path, aux: &Runtime, agent_rt: &Runtime) -> SnapshotFigures {
    let dir = tempfile::tempdir_in(data).expect("a work directory");
    let broker_dir = dir.path().join("broker");
    let cloud_dir = dir.path().join("cloud");
    std::fs::create_dir_all(&broker_dir).unwrap();
    std::fs::create_dir_all(&cloud_dir).unwrap();
    let broker = Mosquitto::start_plain(&broker_dir);

    let spec = SampleSpec::new(SEED, sizes.snapshot_customers, sizes.snapshot_products);
    let mut cloud_config = CloudSimConfig::new("127.0.0.1", broker.port(), TENANT_ID, STORE_ID, &cloud_dir);
    cloud_config.base = BaseData::sample(spec.clone());
    let snapshot_dir = cloud_config.snapshot_dir.clone();
    let started = Instant::now();
    let cloud = aux
        .block_on(CloudSim::start(cloud_config))
        .expect("the cloud starts");
    let base = started.elapsed();
    assert!(
        aux.block_on(cloud.wait_ready(sizes.timeout)),
        "the cloud connects"
    );
    let manifest = aux.block_on(cloud.manifest(None)).expect("the base manifest");
    let base_file = snapshot_dir.join(manifest.url.rsplit('/').next().expect("a file name"));
    let records = trailer_records(&base_file);
    // The cloud has just written its database and the base file (about 2 GB). Flush them
    // before the clock starts, so that the kernel's write-back of the cloud's preparation
    // does not share the disk and the CPU with the measured load.
    let synced = std::process::Command::new("sync").status();
    assert!(
        synced.is_ok_and(|s| s.success()),
        "sync(1) flushes the cloud's files"
    );

    let mut agent = Agent::open(agent_config(&dir.path().join("agent"), broker.port()));
    // Watched through the agent's own read pool, as the screens read: a connection of the
    // benchmark's own would keep the database file open, and a full snapshot would then be
    // copied into it in place instead of replacing the file (see `store::snapshot`).
    let reads = agent.store.reads().clone();
    let count = |sql: &str| reads.with(|c| Ok(int(c, sql))).unwrap_or(0);
    let inode_before = file_inode(agent.store.path());
    let (mut importing, mut parsed) = (None, None);
    let started = Instant::now();
    agent.start(agent_rt);
    let loaded = wait_until(
        "the agent loads the snapshot",
        sizes.timeout,
        Duration::from_millis(5),
        || {
            let now = Instant::now();
            if parsed.is_none() {
                let running = thread_running("snapshot-parser");
                if running {
                    importing.get_or_insert(now);
                } else if importing.is_some() {
                    parsed = Some(now);
                }
            }
            count("SELECT count(*) FROM downlink_streams") == DownlinkStream::ALL.len() as i64
        },
    );
    let customers = count("SELECT count(*) FROM customers") as u64;
    assert_eq!(customers, spec.customers, "every customer was loaded");
    let products = count("SELECT count(*) FROM products") as u64;
    assert_eq!(products, spec.products, "every product was loaded");
    let inode_after = file_inode(agent.store.path());
    assert_ne!(
        inode_before, inode_after,
        "the full snapshot replaced the database file (the fast path), not copied into it"
    );
    agent.close(agent_rt);
    aux.block_on(cloud.shutdown());
    drop(cloud);
    drop(broker);
    let between =
        |a: Option<Instant>, b: Option<Instant>| a.zip(b).map(|(a, b)| b.saturating_duration_since(a));
    SnapshotFigures {
        customers,
        products,
        records,
        bytes: manifest.size,
        base,
        total: loaded - started,
        to_import: importing.map(|t| t - started),
        import: between(importing, Some(loaded)),
        import_tail: between(parsed, Some(loaded)),
    }
}

// ---------------------------------------------------------------------------------------------

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn print_downlink(f: &DownlinkFigures) {
    let agent = rate(f.messages, f.agent);
    let baseline = rate(f.messages, f.baseline);
    println!(
        "### 1. Downlink apply rate: {} one-item stock messages ({:.0} bytes each), QoS 1",
        f.messages,
        f.bytes as f64 / f.messages as f64
    );
    println!();
    println!("| receiver | seconds | messages/s | publisher's last PUBACK, s |");
    println!("|---|---|---|---|");
    println!(
        "| agent: applied and committed (downlink_streams.last_seq = N) | {:.2} | {agent:.0} | {:.2} |",
        f.agent.as_secs_f64(),
        f.agent_publish.as_secs_f64()
    );
    println!(
        "| baseline: bare rumqttc subscriber, last message received | {:.2} | {baseline:.0} | {:.2} |",
        f.baseline.as_secs_f64(),
        f.baseline_publish.as_secs_f64()
    );
    println!("| **ratio agent / baseline** | | **{:.2}** | |", agent / baseline);
    println!();
    println!(
        "for scale: durable one-row commits one after the other (WAL, synchronous=FULL, bare rusqlite, same disk): {:.0} commits/s",
        f.bare_commits
    );
    println!();
    println!("target: agent ≥ 20,000 messages/s: {}", met(agent >= 20_000.0));
    println!();
}

fn print_drain(f: &DrainFigures) {
    println!(
        "### 2. Backlog drain: {} POS transactions ({:.0} bytes of payload each)",
        f.events,
        f.payload_bytes as f64 / f.events as f64
    );
    println!();
    println!("| step | seconds | per second |");
    println!("|---|---|---|");
    println!(
        "| agent bootstrap from the cloud before the outage (not a target) | {:.2} | |",
        f.bootstrap.as_secs_f64()
    );
    for run in &f.runs {
        println!(
            "| fill: record_pos_transaction, {FILL_IN_FLIGHT} calls in flight, one commit each | {:.2} | {:.0} events/s |",
            run.fill.as_secs_f64(),
            rate(f.events, run.fill)
        );
        println!(
            "| **drain, drain_events_per_s = {}: sync start → every event acked by the cloud, outbox empty** | {:.2} | **{:.0} events/s** |",
            run.rate,
            run.drain.as_secs_f64(),
            rate(f.events, run.drain)
        );
    }
    match f.baseline {
        Some((b, runs)) => println!(
            "| baseline: `mosquitto_pub -q 1 -l`, one event per message, {runs} run(s) of ≤ {MOSQUITTO_PUB_LINES} lines, first start → last exit | {:.2} | {:.0} messages/s |",
            b.as_secs_f64(),
            rate(f.events, b)
        ),
        None => println!("| baseline: `mosquitto_pub` not installed | | |"),
    }
    println!();
    let rates: Vec<String> = f.runs.iter().map(|r| r.rate.to_string()).collect();
    println!(
        "| the drain on the wire (a QoS 0 observer of the device's topics), drain_events_per_s = | {} |",
        rates.join(" | ")
    );
    println!("|---|{}", "---|".repeat(f.runs.len()));
    let row = |name: &str, cell: &dyn Fn(&Wire) -> String| {
        let cells: Vec<String> = f.runs.iter().map(|r| cell(&r.wire)).collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    row("uplink messages", &|w| w.messages.to_string());
    row("events in them (resends included)", &|w| {
        w.events_sent.to_string()
    });
    row("mean events per message", &|w| {
        format!("{:.0}", w.events_sent as f64 / w.messages.max(1) as f64)
    });
    row("acks from the cloud", &|w| w.acks.to_string());
    row(
        "uplink message → first ack covering it, p50 / p99 / max ms",
        &|w| w.ack_latency.summary(),
    );
    row(
        "ack → the agent's next uplink message, p50 / p99 / max ms",
        &|w| w.ack_to_next_send.summary(),
    );
    row(
        "uplink messages sent with everything before them acked (pipeline ran dry)",
        &|w| w.sends_after_idle.to_string(),
    );
    println!();
    println!("| customer view by card number, one every {VIEW_PACE:?} | n | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    let mut lines = vec![("idle, before the drain (1 s)".to_owned(), &f.idle_views)];
    for run in &f.runs {
        lines.push((format!("during the drain at {} events/s", run.rate), &run.views));
    }
    for (name, l) in lines {
        println!(
            "| {name} | {} | {:.3} | {:.3} | {:.3} |",
            l.samples.len(),
            ms(l.percentile(0.5)),
            ms(l.percentile(0.99)),
            ms(l.max())
        );
    }
    println!();
    let first = &f.runs[0];
    println!(
        "targets at drain_events_per_s = {DRAIN_RATE}: drain ≥ 5,000 events/s: {}; customer view p99 < 2 ms during the drain: {}",
        met(rate(f.events, first.drain) >= 5_000.0),
        met(first.views.percentile(0.99) < Duration::from_millis(2)),
    );
    println!();
}

fn print_snapshot(f: &SnapshotFigures) {
    let opt = |d: Option<Duration>| d.map_or("?".to_owned(), |d| format!("{:.2}", d.as_secs_f64()));
    println!(
        "### 3. Snapshot load: {} customers, {} products: {} records, {:.0} MB",
        f.customers,
        f.products,
        f.records,
        f.bytes as f64 / 1e6
    );
    println!();
    println!("| phase | seconds |");
    println!("|---|---|");
    println!(
        "| cloud base data: generate the sample store and load it into the cloud (not part of the figure) | {:.2} |",
        f.base.as_secs_f64()
    );
    println!(
        "| sync start → the import's parser thread starts (connect, subscribe, snapshot request, manifest reply, HTTP GET) | {} |",
        opt(f.to_import)
    );
    println!(
        "| download streamed into the import (SHA-256 and size checked at the end), parse, validate, insert, rebuild indexes, commit (→ every stream has its position) | {} |",
        opt(f.import)
    );
    println!(
        "| of which after the parser thread ended: last batches, index rebuild, commit | {} |",
        opt(f.import_tail)
    );
    println!(
        "| **total: sync start → every downlink stream has its position** | **{:.2}** |",
        f.total.as_secs_f64()
    );
    println!();
    println!(
        "{:.0} records/s overall{}; target < 15 s: {}",
        rate(f.records, f.total),
        f.import
            .map(|i| format!(", {:.0} records/s in the import phase", rate(f.records, i)))
            .unwrap_or_default(),
        met(f.total < Duration::from_secs(15))
    );
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    // With RUST_LOG set, the agent's and the cloud's logs go to stderr, as `store-agent run`
    // writes them (the snapshot load's phases, for one, at `store_agent=debug`).
    if std::env::var_os("RUST_LOG").is_some() {
        store_agent::logging::init(store_agent::logging::LogFormat::Text, "info").expect("logging starts");
    }
    if !mosquitto_or_skip("the sync benchmark") {
        return;
    }
    let sizes = Sizes::new(smoke);
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&data).expect("target/bench-data");
    // The agent's runtime as `store-agent run` builds it (one worker per core); the cloud,
    // the raw clients and their baselines on a runtime of their own.
    let agent_rt = runtime(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
        "agent",
    );
    let aux = runtime(2, "bench");

    println!(
        "## sync benchmark{}",
        if smoke {
            " (smoke: small sizes, figures mean nothing)"
        } else {
            ""
        }
    );
    println!();
    if !sizes.smoke {
        println!(
            "machine: {} cores, {} ({}); Mosquitto plaintext on 127.0.0.1",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model(),
            std::env::consts::ARCH
        );
        println!();
    }
    if runs("downlink") {
        let f = downlink(&sizes, &data, &aux, &agent_rt);
        print_downlink(&f);
    }
    if runs("drain") {
        let f = drain(&sizes, &data, &aux, &agent_rt);
        print_drain(&f);
    }
    if runs("snapshot") {
        let f = snapshot(&sizes, &data, &aux, &agent_rt);
        print_snapshot(&f);
    }
}
