//! The reference cloud: a small cloud that speaks sync protocol v1
//! ([`crate::sync::protocol`]), for `store-agent demo` (and `store-agent
//! cloud-sim`), the end-to-end tests and the benchmarks. A faithful counterpart
//! of the agent, not a product: one tenant and store, one process, its own
//! SQLite file.
//!
//! What it does:
//! * **Uplink.** Subscribes to `sa/v1/device/+/up/+`. Each [`UplinkBatch`] is
//!   stored in one SQLite transaction, de-duplicated by idempotency key; the
//!   contiguous high-water mark per (device, stream) is recomputed in the same
//!   transaction, and only after the commit is an [`Ack`] `{stream,
//!   acked_through}` published (QoS 1) to the sending device — also when every
//!   event was a duplicate. The MQTT PUBACK, too, goes out only once a message
//!   was handled (manual acks): a message received but never stored comes back
//!   from the broker's persistent session.
//! * **Requests.** A range is answered from the downlink log in `Reply::Range`s
//!   of at most [`MAX_PAYLOAD_BYTES`] each, or `Reply::Unavailable` when the
//!   range is trimmed, beyond the stream's end, or of another epoch. A snapshot
//!   request is answered with a `Reply::Snapshot` manifest whose URL is on the
//!   cloud's HTTP server.
//! * **Downlink.** [`CloudSim::publish`] and [`CloudSim::publish_many`] append to
//!   the log with the next seqs and update the entity state in one transaction,
//!   then publish [`DownlinkBatch`]es (QoS 1) on the store stream. One task does
//!   all of it, one change after the other, so messages leave in seq order.
//! * **Snapshots over HTTP** (axum): `GET /manifest?streams=a,b` (the agent's
//!   bootstrap endpoint) and `GET /snapshots/{file}`. The base data (listing
//!   every stream at `e1`/0) is served as it is while no stream moved;
//!   otherwise a snapshot of the requested streams is written from the entity
//!   state, streaming.
//! * **Presence and health** of each device are recorded (last message wins).
//! * **Fault injection** ([`Faults`], [`CloudSim::trim_log`],
//!   [`CloudSim::new_epoch`], [`CloudSim::go_away`]) and **inspection**
//!   ([`CloudSim::received_events`], [`CloudSim::acked_through`], …) for tests.
//!
//! Invariants:
//! * An ack never covers an event that is not committed (`synchronous=FULL`).
//! * Seqs of a store stream are consecutive from 1 in each epoch; the log holds
//!   every item of the current epoch after the stream's trimmed mark.
//! * The entity state is the base data plus every published item, so a
//!   generated snapshot at a stream's `(epoch, seq)` followed by the log after
//!   it is the stream.
//! * SQLite runs on its own thread or on the blocking pool (the snapshot
//!   writer, with its own read connection); no async task holds a connection
//!   or a lock across an `.await`. Every channel is bounded.
//!
//! [`UplinkBatch`]: crate::sync::protocol::UplinkBatch
//! [`Ack`]: crate::sync::protocol::Ack
//! [`DownlinkBatch`]: crate::sync::protocol::DownlinkBatch
//! [`MAX_PAYLOAD_BYTES`]: crate::sync::protocol::MAX_PAYLOAD_BYTES

mod db;
mod http;
mod keys;
mod mqtt;
mod snapshots;
#[cfg(test)]
mod tests;

pub use db::ReceivedEvent;
pub use keys::{WISHLIST_KEY_SEPARATOR, entity_key, fits_schema, normalize_key};

use crate::events::{DownlinkStream, UplinkStream};
use crate::sample::{self, SampleSpec};
use crate::store::snapshot::StreamPosition;
use crate::sync::protocol::{
    Command, CommandBody, DeviceDownlink, Health, MAX_MESSAGE_BYTES, Op, Presence, SnapshotManifest, Topics,
    VERSION,
};
use anyhow::{Context, anyhow};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Where the cloud's base data comes from.
#[derive(Debug, Clone)]
pub enum BaseData {
    /// The deterministic sample store, generated into the snapshot folder. Its
    /// tenant and store are replaced by the cloud's.
    Sample {
        /// What to generate.
        spec: SampleSpec,
        /// The tenant hashing key (hex) for card and pickup-code hashes; the agent
        /// must be configured with the same one.
        hash_key_hex: String,
    },
    /// An existing snapshot file for the cloud's tenant and store.
    File(PathBuf),
}

impl BaseData {
    /// The sample store `spec`, hashed with the public demo key
    /// ([`sample::DEMO_HASH_KEY_HEX`]).
    pub fn sample(spec: SampleSpec) -> BaseData {
        BaseData::Sample {
            spec,
            hash_key_hex: sample::DEMO_HASH_KEY_HEX.into(),
        }
    }
}

/// How to run the reference cloud.
#[derive(Debug, Clone)]
pub struct CloudSimConfig {
    /// The MQTT broker's host.
    pub broker_host: String,
    /// The MQTT broker's port.
    pub broker_port: u16,
    /// `(ca_file, cert_file, key_file)` for TLS with a client certificate
    /// (CN `cloud`); plain TCP when `None`.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// The MQTT client id (`"cloud"`, the CN the broker's ACL knows).
    pub client_id: String,
    /// The tenant served.
    pub tenant_id: String,
    /// The store served.
    pub store_id: String,
    /// The devices served (the cloud's device registry for this store): uplinks
    /// and requests of others are refused (logged and counted as bad), their
    /// presence ignored. `None`: every device that publishes is served, learned
    /// from the topics; acks always go to the sending device.
    pub devices: Option<Vec<String>>,
    /// The cloud's own SQLite file (created when missing; an existing one is
    /// reused with everything it holds, like a restarted cloud, and its base
    /// data is not loaded again).
    pub db_path: PathBuf,
    /// Where the HTTP server listens (`127.0.0.1:0` picks a free port; see
    /// [`CloudSim::http_addr`]).
    pub http_addr: SocketAddr,
    /// Where snapshot files are written and served from.
    pub snapshot_dir: PathBuf,
    /// The base data, loaded when the database is new.
    pub base: BaseData,
    /// When set, publish a small change (a stock count, a price) this often, so
    /// the demo's screens move.
    pub tick: Option<Duration>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
}

impl CloudSimConfig {
    /// A plaintext configuration for tests: database and snapshots under `dir`,
    /// HTTP on a free loopback port, the sample store with 200 customers and 100
    /// products (seed 1, demo key), any device, no ticker.
    pub fn new(
        broker_host: impl Into<String>,
        broker_port: u16,
        tenant_id: impl Into<String>,
        store_id: impl Into<String>,
        dir: &Path,
    ) -> CloudSimConfig {
        CloudSimConfig {
            broker_host: broker_host.into(),
            broker_port,
            tls: None,
            client_id: "cloud".into(),
            tenant_id: tenant_id.into(),
            store_id: store_id.into(),
            devices: None,
            db_path: dir.join("cloud.db"),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            snapshot_dir: dir.join("snapshots"),
            base: BaseData::sample(SampleSpec::new(1, 200, 100)),
            tick: None,
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// Faults the cloud injects, settable at any time ([`CloudSim::set_faults`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// The next N store-stream messages are logged (their seqs are used) but not
    /// published: the agents see a gap.
    pub drop_next_downlink: u32,
    /// Publish every store-stream message twice.
    pub duplicate_downlink: bool,
    /// Wait this long after the commit before publishing an ack.
    pub ack_delay: Duration,
    /// Store uplinks but do not ack them; when set back to false, the current
    /// mark of every held (device, stream) is acked.
    pub hold_acks: bool,
}

/// Counters since start.
#[derive(Debug, Default)]
struct Stats {
    /// Uplink events received again (same idempotency key).
    duplicates: AtomicU64,
    /// Messages that did not parse, did not fit the protocol or came from a
    /// device not served.
    bad: AtomicU64,
    /// Messages dropped because the inbound queue was full.
    dropped: AtomicU64,
}

/// The MQTT connection's wanted state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    /// Connected, or reconnecting.
    Running,
    /// Disconnected on purpose ([`CloudSim::go_away`]).
    Away,
    /// Stopping for good.
    Shutdown,
}

/// The faults and the acks they hold, under one lock so that an ack is either
/// held or sent, never lost between the two.
#[derive(Debug, Default)]
struct FaultState {
    faults: Faults,
    held: BTreeSet<(String, UplinkStream)>,
}

/// Where the cloud's messages go: the MQTT client, or (unit tests) a channel.
#[derive(Clone)]
enum Sink {
    Mqtt(rumqttc::AsyncClient),
    #[cfg(test)]
    Test(mpsc::Sender<(String, Vec<u8>)>),
}

impl Sink {
    /// Queues a QoS 1, not retained message.
    async fn publish(&self, topic: String, payload: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Sink::Mqtt(client) => client
                .publish(&topic, rumqttc::QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| anyhow!("cannot queue a message on {topic}: {e}")),
            #[cfg(test)]
            Sink::Test(tx) => tx
                .send((topic, payload))
                .await
                .map_err(|_| anyhow!("the test sink is closed")),
        }
    }

    /// Sends the PUBACK of a message that was handled.
    async fn settle(&self, publish: &rumqttc::Publish) {
        match self {
            Sink::Mqtt(client) => {
                if let Err(e) = client.ack(publish).await {
                    tracing::debug!(topic = %publish.topic, error = %e, "Cannot acknowledge an MQTT message.");
                }
            }
            #[cfg(test)]
            Sink::Test(_) => {}
        }
    }

    /// Queues a clean MQTT DISCONNECT.
    async fn disconnect(&self) -> anyhow::Result<()> {
        match self {
            Sink::Mqtt(client) => client
                .disconnect()
                .await
                .map_err(|e| anyhow!("cannot queue the MQTT disconnect: {e}")),
            #[cfg(test)]
            Sink::Test(_) => Ok(()),
        }
    }
}

/// What the tasks share.
struct Shared {
    tenant_id: String,
    store_id: String,
    devices: Option<BTreeSet<String>>,
    db: db::Db,
    sink: Sink,
    faults: Mutex<FaultState>,
    stats: Stats,
    snapshots: snapshots::Snapshots,
    run: watch::Sender<RunState>,
    /// Connected and subscribed.
    ready: watch::Sender<bool>,
    /// The publisher task's queue: every store-stream change goes through it.
    jobs: mpsc::Sender<mqtt::PublishJob>,
}

impl Shared {
    fn topics(&self, device: &str) -> Topics {
        Topics::for_parts(&self.tenant_id, &self.store_id, device)
    }

    fn store_topic(&self, stream: DownlinkStream) -> String {
        // Store topics do not depend on the device part.
        self.topics("").store_stream(stream)
    }

    fn serves(&self, device: &str) -> bool {
        self.devices.as_ref().is_none_or(|d| d.contains(device))
    }

    fn fault_state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        // The lock guards plain data; a panic while holding it leaves it usable.
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// JSON of a protocol type. They are plain structs with string keys: this
/// cannot fail.
fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("protocol envelopes always serialize")
}

/// The running tasks.
struct Tasks {
    mqtt: JoinHandle<()>,
    processor: JoinHandle<()>,
    publisher: JoinHandle<()>,
    http: JoinHandle<()>,
    ticker: Option<JoinHandle<()>>,
}

impl Tasks {
    fn abort(&self) {
        self.mqtt.abort();
        self.processor.abort();
        self.publisher.abort();
        self.http.abort();
        if let Some(t) = &self.ticker {
            t.abort();
        }
    }
}

/// Requests the MQTT client queues before `publish` waits (it waits while the
/// cloud is away).
const REQUEST_CAPACITY: usize = 1024;
/// Inbound messages waiting for the processor. The broker sends at most its
/// in-flight window of unacknowledged QoS 1 messages, far fewer.
const INBOUND_CAPACITY: usize = 4096;
/// The largest incoming MQTT packet accepted. Larger than the protocol's limit
/// on purpose: an oversized message from a device must be refused here as a bad
/// message, not kill the connection (and come back forever on reconnect).
const MAX_INCOMING_PACKET: usize = 1024 * 1024;
/// How long shutdown waits for a task before aborting it.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A running reference cloud. Stop it with [`CloudSim::shutdown`]; dropping it
/// aborts its tasks.
pub struct CloudSim {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    tasks: Mutex<Option<Tasks>>,
}

impl CloudSim {
    /// Opens the database (loading the base data when it is new), binds the
    /// HTTP server and starts the MQTT connection. Returns once the HTTP server
    /// listens; the MQTT connection comes up in the background
    /// ([`CloudSim::wait_ready`]).
    pub async fn start(config: CloudSimConfig) -> anyhow::Result<CloudSim> {
        crate::sync::tls::install_crypto_provider();
        let transport = match &config.tls {
            Some((ca, cert, key)) => crate::sync::tls::mqtt_transport(ca, cert, key)
                .context("cannot set up TLS for the cloud's MQTT connection")?,
            None => rumqttc::Transport::tcp(),
        };
        let (conn, base) = {
            let (db_path, base, dir) = (
                config.db_path.clone(),
                config.base.clone(),
                config.snapshot_dir.clone(),
            );
            let (tenant, store) = (config.tenant_id.clone(), config.store_id.clone());
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let mut conn = db::open(&db_path)?;
                let base = snapshots::prepare_base(&mut conn, &base, &dir, &tenant, &store)
                    .with_context(|| format!("cannot prepare the base data in {}", db_path.display()))?;
                Ok((conn, base))
            })
            .await
            .context("the base data loader panicked")??
        };
        let db = db::Db::start(conn)?;
        let snapshots = snapshots::Snapshots::new(
            config.snapshot_dir.clone(),
            config.db_path.clone(),
            config.tenant_id.clone(),
            config.store_id.clone(),
            base,
        );
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http_addr))?;
        let http_addr = listener
            .local_addr()
            .context("the HTTP listener has no address")?;
        snapshots.set_url_base(format!("http://{}", reachable(http_addr)));

        let mut options = rumqttc::MqttOptions::new(
            config.client_id.clone(),
            config.broker_host.clone(),
            config.broker_port,
        );
        options
            .set_transport(transport)
            .set_keep_alive(config.keep_alive)
            // The broker keeps the subscriptions and the messages queued while the
            // cloud is away; that is what the redelivery tests rely on.
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_MESSAGE_BYTES);
        let (client, eventloop) = rumqttc::AsyncClient::new(options, REQUEST_CAPACITY);

        let (jobs_tx, jobs_rx) = mpsc::channel(64);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_CAPACITY);
        let shared = Arc::new(Shared {
            tenant_id: config.tenant_id.clone(),
            store_id: config.store_id.clone(),
            devices: config.devices.as_ref().map(|d| d.iter().cloned().collect()),
            db,
            sink: Sink::Mqtt(client),
            faults: Mutex::new(FaultState::default()),
            stats: Stats::default(),
            snapshots,
            run: watch::Sender::new(RunState::Running),
            ready: watch::Sender::new(false),
            jobs: jobs_tx,
        });
        let broker = format!("{}:{}", config.broker_host, config.broker_port);
        let tasks = Tasks {
            mqtt: tokio::spawn(mqtt::mqtt_loop(eventloop, shared.clone(), inbound_tx, broker)),
            processor: tokio::spawn(mqtt::processor(shared.clone(), inbound_rx)),
            publisher: tokio::spawn(mqtt::publisher(shared.clone(), jobs_rx)),
            http: tokio::spawn(http::serve(listener, shared.clone())),
            ticker: config
                .tick
                .map(|every| tokio::spawn(mqtt::ticker(shared.clone(), every))),
        };
        tracing::info!(
            http = %http_addr,
            tenant = %config.tenant_id,
            store = %config.store_id,
            broker = %format!("{}:{}", config.broker_host, config.broker_port),
            "The reference cloud is running."
        );
        Ok(CloudSim {
            shared,
            http_addr,
            tasks: Mutex::new(Some(tasks)),
        })
    }

    /// The address the HTTP server is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The manifest endpoint's URL, for the agent's `snapshot_manifest_url`.
    pub fn manifest_url(&self) -> String {
        format!("http://{}/manifest", reachable(self.http_addr))
    }

    /// True while connected to the broker and subscribed.
    pub fn is_ready(&self) -> bool {
        *self.shared.ready.borrow()
    }

    /// Waits until connected and subscribed; false if `timeout` passed first.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut ready = self.shared.ready.subscribe();
        matches!(
            tokio::time::timeout(timeout, ready.wait_for(|r| *r)).await,
            Ok(Ok(_))
        )
    }

    /// Publishes one change of `stream` and returns its seq: appended to the log
    /// and applied to the entity state in one transaction, then published at
    /// QoS 1 as a one-item [`DownlinkBatch`](crate::sync::protocol::DownlinkBatch)
    /// on `sa/v1/store/{tenant}/{store}/{stream}`. The entity is not checked
    /// against the agent's schema (tests send bad ones on purpose); one without
    /// its key fields does not change the entity state.
    pub async fn publish(&self, stream: DownlinkStream, op: Op, entity: Value) -> anyhow::Result<i64> {
        let seqs = self.publish_many(stream, vec![(op, entity)]).await?;
        seqs.first()
            .copied()
            .ok_or_else(|| anyhow!("publishing on {stream} assigned no seq"))
    }

    /// Publishes several changes of `stream` with consecutive seqs, packed into
    /// as few batches as fit
    /// [`MAX_PAYLOAD_BYTES`](crate::sync::protocol::MAX_PAYLOAD_BYTES); returns
    /// their seqs. Refused before anything is logged when an item alone cannot
    /// fit one message.
    pub async fn publish_many(
        &self,
        stream: DownlinkStream,
        items: Vec<(Op, Value)>,
    ) -> anyhow::Result<Vec<i64>> {
        let (done, result) = oneshot::channel();
        self.shared
            .jobs
            .send(mqtt::PublishJob::Publish { stream, items, done })
            .await
            .map_err(|_| anyhow!("the cloud's publisher has stopped"))?;
        result
            .await
            .map_err(|_| anyhow!("the cloud's publisher stopped while publishing on {stream}"))?
    }

    /// Starts a new epoch of `stream` and returns its name: seqs restart (the
    /// next item is seq 1) and the old epoch's log is gone, so an agent needs a
    /// snapshot. Nothing is published until the next change.
    pub async fn new_epoch(&self, stream: DownlinkStream) -> anyhow::Result<String> {
        let (done, result) = oneshot::channel();
        self.shared
            .jobs
            .send(mqtt::PublishJob::NewEpoch { stream, done })
            .await
            .map_err(|_| anyhow!("the cloud's publisher has stopped"))?;
        result
            .await
            .map_err(|_| anyhow!("the cloud's publisher stopped while starting an epoch of {stream}"))?
    }

    /// Drops `stream`'s log through `through_seq` (at most the current seq), so
    /// ranges from there are answered "unavailable". Returns the trimmed mark.
    pub async fn trim_log(&self, stream: DownlinkStream, through_seq: i64) -> anyhow::Result<i64> {
        self.shared
            .db
            .call(move |c| Ok(db::trim_log(c, stream, through_seq)?))
            .await
            .with_context(|| format!("cannot trim the log of {stream}"))
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.fault_state().faults.clone()
    }

    /// Replaces the faults. Turning `hold_acks` off acks the current mark of
    /// every (device, stream) whose ack was held.
    pub async fn set_faults(&self, faults: Faults) -> anyhow::Result<()> {
        let released = {
            let mut state = self.shared.fault_state();
            let released = if faults.hold_acks {
                BTreeSet::new()
            } else {
                std::mem::take(&mut state.held)
            };
            state.faults = faults;
            released
        };
        mqtt::release_acks(&self.shared, released).await
    }

    /// Drops the next `n` store-stream messages (see [`Faults::drop_next_downlink`]).
    pub fn drop_next_downlink(&self, n: u32) {
        self.shared.fault_state().faults.drop_next_downlink = n;
    }

    /// Publishes every store-stream message twice, or not.
    pub fn set_duplicate_downlink(&self, on: bool) {
        self.shared.fault_state().faults.duplicate_downlink = on;
    }

    /// Delays every ack by `delay`.
    pub fn set_ack_delay(&self, delay: Duration) {
        self.shared.fault_state().faults.ack_delay = delay;
    }

    /// Holds acks, or releases them (see [`Faults::hold_acks`]).
    pub async fn set_hold_acks(&self, hold: bool) -> anyhow::Result<()> {
        let mut faults = self.faults();
        faults.hold_acks = hold;
        self.set_faults(faults).await
    }

    /// Disconnects from the broker cleanly (after what is already queued) and
    /// stays away until [`CloudSim::come_back`]. The broker keeps the persistent
    /// session: messages for the cloud queue there. Publishing while away waits
    /// once the client's queue is full.
    pub async fn go_away(&self) -> anyhow::Result<()> {
        let changed = self.shared.run.send_if_modified(|s| {
            let running = *s == RunState::Running;
            if running {
                *s = RunState::Away;
            }
            running
        });
        if !changed {
            return Ok(());
        }
        self.shared.sink.disconnect().await?;
        let mut ready = self.shared.ready.subscribe();
        tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| !*r))
            .await
            .map_err(|_| anyhow!("the cloud did not disconnect from the broker within 10 s"))?
            .map_err(|_| anyhow!("the cloud's MQTT task has stopped"))?;
        Ok(())
    }

    /// Reconnects after [`CloudSim::go_away`]; returns at once ([`CloudSim::wait_ready`]).
    pub fn come_back(&self) {
        self.shared.run.send_if_modified(|s| {
            let away = *s == RunState::Away;
            if away {
                *s = RunState::Running;
            }
            away
        });
    }

    /// Sends a [`Command`] to one device (on its `down/command` topic).
    pub async fn send_command(&self, device: &str, body: CommandBody) -> anyhow::Result<()> {
        let command = Command {
            v: VERSION,
            command_id: uuid::Uuid::now_v7().to_string(),
            body,
        };
        let topic = self.shared.topics(device).device_down(DeviceDownlink::Command);
        self.shared.sink.publish(topic, to_json(&command)).await
    }

    /// Uplink events stored from `device`, all streams.
    pub async fn received_count(&self, device: &str) -> anyhow::Result<u64> {
        let device = device.to_string();
        self.shared
            .db
            .call(move |c| Ok(db::received_count(c, &device)?))
            .await
    }

    /// The events stored from `device` on `stream`, in seq order.
    pub async fn received_events(
        &self,
        device: &str,
        stream: UplinkStream,
    ) -> anyhow::Result<Vec<ReceivedEvent>> {
        let device = device.to_string();
        self.shared
            .db
            .call(move |c| Ok(db::received_events(c, &device, stream.as_str())?))
            .await
    }

    /// Uplink events received again since start (same idempotency key).
    pub fn duplicates_seen(&self) -> u64 {
        self.shared.stats.duplicates.load(Ordering::Relaxed)
    }

    /// Messages refused since start: not parsing, not fitting the protocol, or
    /// from a device not served.
    pub fn bad_messages(&self) -> u64 {
        self.shared.stats.bad.load(Ordering::Relaxed)
    }

    /// Messages dropped since start because the inbound queue was full.
    pub fn dropped_messages(&self) -> u64 {
        self.shared.stats.dropped.load(Ordering::Relaxed)
    }

    /// The high-water mark of `(device, stream)`: what the last ack said or will say.
    pub async fn acked_through(&self, device: &str, stream: UplinkStream) -> anyhow::Result<i64> {
        let device = device.to_string();
        self.shared
            .db
            .call(move |c| Ok(db::acked_through(c, &device, stream.as_str())?))
            .await
    }

    /// The current entity of `stream` with `key` (written as
    /// [`normalize_key`] accepts it: any GTIN form, `"{customer_id}/{gtin}"` for
    /// wishlists).
    pub async fn entity(&self, stream: DownlinkStream, key: &str) -> anyhow::Result<Option<Value>> {
        let key = normalize_key(stream, key);
        self.shared
            .db
            .call(move |c| Ok(db::entity_in_state(c, stream, &key)?))
            .await
    }

    /// Every current entity of `stream`, in key order.
    pub async fn entities(&self, stream: DownlinkStream) -> anyhow::Result<Vec<Value>> {
        self.shared.db.call(move |c| Ok(db::entities(c, stream)?)).await
    }

    /// The last seq published on `stream` in its current epoch (0: none).
    pub async fn current_seq(&self, stream: DownlinkStream) -> anyhow::Result<i64> {
        Ok(self.position(stream).await?.map_or(0, |p| p.seq))
    }

    /// The `(epoch, seq)` of `stream`, if it has one.
    pub async fn position(&self, stream: DownlinkStream) -> anyhow::Result<Option<StreamPosition>> {
        let pos = self.shared.db.call(move |c| Ok(db::position(c, stream)?)).await?;
        Ok(pos.map(|p| StreamPosition {
            epoch: p.epoch,
            seq: p.seq,
        }))
    }

    /// The last presence message of `device`.
    pub async fn presence(&self, device: &str) -> anyhow::Result<Option<Presence>> {
        let device = device.to_string();
        self.shared.db.call(move |c| db::presence(c, &device)).await
    }

    /// The last health report of `device`.
    pub async fn health(&self, device: &str) -> anyhow::Result<Option<Health>> {
        let device = device.to_string();
        self.shared.db.call(move |c| db::health(c, &device)).await
    }

    /// The manifest `GET /manifest` would give for `streams` (every stream with
    /// a position when `None`).
    pub async fn manifest(&self, streams: Option<Vec<DownlinkStream>>) -> anyhow::Result<SnapshotManifest> {
        mqtt::manifest(&self.shared, streams).await
    }

    /// Stops the tasks: a clean MQTT disconnect, the HTTP server, the ticker.
    /// Inspection keeps working afterwards; calling it again does nothing.
    pub async fn shutdown(&self) {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(tasks) = tasks else {
            return;
        };
        self.shared.run.send_replace(RunState::Shutdown);
        if let Some(t) = &tasks.ticker {
            t.abort();
        }
        // A clean DISCONNECT, so the broker keeps the session without a Will.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.shared.sink.disconnect()).await;
        let Tasks {
            mqtt,
            processor,
            publisher,
            http,
            ticker,
        } = tasks;
        for (name, handle) in [("mqtt", mqtt), ("processor", processor), ("http", http)] {
            let abort = handle.abort_handle();
            if tokio::time::timeout(STOP_GRACE, handle).await.is_err() {
                tracing::warn!(task = name, "A cloud-sim task did not stop in time; aborted.");
                abort.abort();
            }
        }
        publisher.abort();
        if let Some(t) = ticker {
            let _ = t.await;
        }
        tracing::info!("The reference cloud stopped.");
    }
}

impl Drop for CloudSim {
    fn drop(&mut self) {
        if let Some(tasks) = self.tasks.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            self.shared.run.send_replace(RunState::Shutdown);
            tasks.abort();
        }
    }
}

/// `addr` as a client can reach it: a wildcard bind is reached over loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], a.port())),
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    }
}
