//! The sync engine: one task that drives the uplink pump and applies the
//! downlink, fed by the connection task.
//!
//! Invariants:
//! * An outbox row leaves only through [`Store::acknowledge`], called for the
//!   cloud's application-level [`Ack`]; a PUBACK means nothing here.
//! * Per uplink stream, events go out in seq order; after a reconnect, or when
//!   acks stop coming for `ack_timeout_ms`, sending starts again from the oldest
//!   unacknowledged event with the same idempotency keys (the cloud de-duplicates).
//! * At most `window_events` unacknowledged events per stream, and at most
//!   `drain_events_per_s` events per second, so a backlog drains without starving
//!   the screens of the database.
//! * Publishing never waits: the engine uses `try_publish` and keeps what did not
//!   fit for the next turn.
//! * Cloud input never stops the engine: what does not parse is a dead letter.

use super::connection::ConnectionEvent;
use super::fetch;
use super::protocol::{
    Ack, CommandBody, DeviceDownlink, DeviceUplink, DownlinkBatch, Health, MAX_PAYLOAD_BYTES, NearbyStore,
    Reply, Request, RequestBody, SnapshotManifest, Topic, Topics, UplinkBatch, UplinkEvent, VERSION,
};
use crate::config::MqttConfig;
use crate::events::{DownlinkStream, UplinkStream, now_ms};
use crate::store::Store;
use crate::store::outbox::{self, OutboxRow};
use crate::store::snapshot::ImportExpectations;
use crate::store::status::SyncState;
use rumqttc::{AsyncClient, QoS};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// The most events in one uplink message.
pub const MAX_BATCH_EVENTS: usize = 500;

/// The most store-stream messages applied in one transaction.
const GROUP_MAX: usize = 512;

/// How soon the pump runs again after it sent something: long enough for the
/// rate limiter to gather tokens for well-filled messages (at 20,000 events/s,
/// 200 per turn), short enough to keep the window full.
const BUSY_POLL: Duration = Duration::from_millis(10);

/// How often the pump looks at an outbox that was empty last time.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How often the pump reads an outbox nothing in this process wrote to, in case
/// another process did (an offline command run beside the agent).
const IDLE_RECHECK: Duration = Duration::from_secs(5);

/// Nearby-stock look-ups waiting for the cloud at most; more are answered "not now".
const MAX_NEARBY_WAITING: usize = 32;

/// What the engine needs besides the store and the client.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The `[mqtt]` section.
    pub mqtt: MqttConfig,
    /// This device's id on the wire.
    pub device_id: String,
    /// Its tenant, checked against snapshot headers.
    pub tenant_id: String,
    /// Its store, checked against snapshot headers.
    pub store_id: String,
}

/// Per uplink stream: what was sent and what the cloud has acknowledged.
#[derive(Debug, Clone, Copy)]
struct UplinkState {
    /// Highest seq handed to the client in this round (0: start from the oldest
    /// pending event).
    sent_through: i64,
    /// Highest seq the cloud acknowledged.
    acked: i64,
    /// When the last ack moved `acked` forward (or sending started).
    progress_at: Instant,
}

impl UplinkState {
    /// A stream the cloud has acknowledged through `acked`; sending starts from
    /// its oldest pending event.
    fn starting(acked: i64) -> UplinkState {
        UplinkState {
            sent_through: 0,
            acked,
            progress_at: Instant::now(),
        }
    }
}

/// A request waiting for its reply.
#[derive(Debug, Clone)]
struct Pending {
    request_id: String,
    body: RequestBody,
    sent_at: Instant,
}

/// Per downlink stream.
#[derive(Debug, Clone, Default)]
struct DownlinkState {
    /// The range or snapshot request in flight for this stream.
    pending: Option<Pending>,
    /// Highest seq seen in any message of `seen_epoch`, applied or not: what a
    /// range fetch after a gap or a snapshot must reach.
    highest_seen: i64,
    /// The epoch `highest_seen` counts in; a message of another epoch starts over.
    seen_epoch: String,
    /// A snapshot of this stream is downloading or loading: its messages wait.
    loading: bool,
}

/// Result of a snapshot download, back to the engine.
struct SnapshotDone {
    streams: Vec<DownlinkStream>,
    manifest: Option<SnapshotManifest>,
    /// Records loaded and the import's milliseconds, or why it failed.
    result: Result<(u64, u64), String>,
    /// When the download started.
    started: Instant,
}

/// The engine's state; see the module invariants.
pub struct Engine {
    store: Arc<Store>,
    client: AsyncClient,
    topics: Topics,
    opts: EngineOptions,
    http: reqwest::Client,
    connected: bool,
    uplink: HashMap<UplinkStream, UplinkState>,
    downlink: HashMap<DownlinkStream, DownlinkState>,
    tokens: f64,
    refilled_at: Instant,
    sync_state: SyncState,
    done_tx: mpsc::Sender<SnapshotDone>,
    done_rx: mpsc::Receiver<SnapshotDone>,
    /// Store-stream messages received and not yet applied: they are applied
    /// together, in order, before anything else is handled.
    group: Vec<crate::store::downlink::Received>,
    /// An ack opened the window: run the pump now rather than at its next poll.
    wake_pump: bool,
    /// The store's write generation when the pump last found every outbox stream
    /// with nothing to send, and when that was: while no write happened since, the
    /// pump does not read the outbox again (an idle agent then costs no queries),
    /// except every [`IDLE_RECHECK`]. Cleared by anything that makes events due
    /// again without a write (a reconnect, an ack timeout, an ack).
    pump_idle_at: Option<(u64, Instant)>,
    /// Nearby-stock look-ups waiting for the cloud's reply, by request id.
    nearby: HashMap<String, oneshot::Sender<Vec<NearbyStore>>>,
}

/// A screen asks for a product's stock in nearby stores. The answer is dropped
/// (the receiver sees an error) when the store is offline or the cloud does not
/// answer before the caller gives up.
#[derive(Debug)]
pub struct NearbyLookup {
    /// The GTIN on 14 digits.
    pub gtin: String,
    /// Where the stores go.
    pub reply: oneshot::Sender<Vec<NearbyStore>>,
}

impl Engine {
    /// An engine for `store`, publishing through `client`.
    pub fn new(
        store: Arc<Store>,
        client: AsyncClient,
        topics: Topics,
        opts: EngineOptions,
    ) -> anyhow::Result<Engine> {
        let http = fetch::http_client(&opts.mqtt)?;
        let (done_tx, done_rx) = mpsc::channel(4);
        let broker = format!("{}:{}", opts.mqtt.host, opts.mqtt.port);
        let now = now_ms();
        Ok(Engine {
            store,
            client,
            topics,
            http,
            connected: false,
            uplink: HashMap::new(),
            downlink: HashMap::new(),
            tokens: 0.0,
            refilled_at: Instant::now(),
            sync_state: SyncState {
                state: "connecting".into(),
                since_ms: now,
                offline_since_ms: None,
                broker,
                last_error: None,
            },
            opts,
            done_tx,
            done_rx,
            group: Vec::new(),
            wake_pump: false,
            pump_idle_at: None,
            nearby: HashMap::new(),
        })
    }

    /// Runs until `stop` or until the connection task goes away.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<ConnectionEvent>,
        mut lookups: mpsc::Receiver<NearbyLookup>,
        mut stop: watch::Receiver<bool>,
    ) {
        self.record_state().await;
        if let Err(e) = self.load_acked().await {
            tracing::error!(error = %e, "Cannot read the outbox state; the sync starts from the oldest event.");
        }
        let mut health = tokio::time::interval(Duration::from_secs(self.opts.mqtt.health_interval_s));
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut next_pump = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                event = events.recv() => match event {
                    Some(e) => {
                        // Take whatever else is waiting too: store-stream messages among
                        // them are applied with one commit (see `flush_group`).
                        self.on_connection_event(e).await;
                        let mut taken = 1;
                        while taken < GROUP_MAX {
                            let Ok(e) = events.try_recv() else { break };
                            self.on_connection_event(e).await;
                            taken += 1;
                        }
                        self.flush_group().await;
                        if std::mem::take(&mut self.wake_pump) {
                            next_pump = tokio::time::Instant::now();
                        }
                    }
                    None => break,
                },
                Some(done) = self.done_rx.recv() => self.on_snapshot_done(done).await,
                Some(lookup) = lookups.recv() => self.ask_nearby(lookup),
                _ = health.tick(), if self.connected => self.publish_health().await,
                _ = tokio::time::sleep_until(next_pump), if self.connected => {
                    let busy = self.pump().await;
                    self.check_timeouts().await;
                    next_pump = tokio::time::Instant::now() + if busy { BUSY_POLL } else { IDLE_POLL };
                }
            }
        }
        if self.connected {
            self.sync_state.state = "offline".into();
            self.sync_state.since_ms = now_ms();
            self.sync_state.offline_since_ms = Some(self.sync_state.since_ms);
            self.sync_state.last_error = Some("the agent stopped".into());
            self.record_state().await;
        }
    }

    async fn load_acked(&mut self) -> anyhow::Result<()> {
        let rows = self.store.reads().read(outbox::acked_seqs).await?;
        for (name, acked) in rows {
            if let Some(stream) = UplinkStream::ALL.into_iter().find(|s| s.as_str() == name) {
                self.uplink.insert(stream, UplinkState::starting(acked));
            }
        }
        Ok(())
    }

    async fn record_state(&self) {
        if let Err(e) = self.store.set_sync_state(self.sync_state.clone()).await {
            tracing::warn!(error = %e, "Cannot record the sync state.");
        }
    }

    async fn on_connection_event(&mut self, event: ConnectionEvent) {
        if !matches!(event, ConnectionEvent::Message { .. }) {
            self.flush_group().await;
        }
        match event {
            ConnectionEvent::Connected { .. } => {
                self.connected = true;
                let now = now_ms();
                self.sync_state.state = "online".into();
                self.sync_state.since_ms = now;
                self.sync_state.offline_since_ms = None;
                self.sync_state.last_error = None;
                self.record_state().await;
                // Whatever was in flight may be lost: resend from the oldest
                // unacknowledged event. Requests are asked again too.
                for s in self.uplink.values_mut() {
                    s.sent_through = 0;
                    s.progress_at = Instant::now();
                }
                self.pump_idle_at = None;
                for d in self.downlink.values_mut() {
                    if !d.loading {
                        d.pending = None;
                    }
                }
                self.bootstrap().await;
            }
            ConnectionEvent::Disconnected { error } => {
                // No reply will come over this connection: the screens hear "offline".
                self.nearby.clear();
                let now = now_ms();
                if self.connected || self.sync_state.state == "connecting" {
                    self.sync_state.since_ms = now;
                    self.sync_state.offline_since_ms.get_or_insert(now);
                }
                self.connected = false;
                self.sync_state.state = "offline".into();
                self.sync_state.last_error = Some(error);
                self.record_state().await;
            }
            ConnectionEvent::Message { topic, payload } => self.on_message(topic, payload).await,
        }
    }

    /// Streams without a local position are loaded from a snapshot first.
    async fn bootstrap(&mut self) {
        let positions = match self
            .store
            .reads()
            .read(|c| {
                DownlinkStream::ALL
                    .into_iter()
                    .map(|s| crate::store::downlink::position(c, s).map(|p| (s, p)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "Cannot read the downlink positions.");
                return;
            }
        };
        let missing: Vec<DownlinkStream> = positions
            .into_iter()
            .filter(|(s, p)| p.is_none() && !self.state(*s).loading && self.state(*s).pending.is_none())
            .map(|(s, _)| s)
            .collect();
        if missing.is_empty() {
            return;
        }
        tracing::info!(streams = ?missing.iter().map(|s| s.as_str()).collect::<Vec<_>>(), "No local copy yet: asking for a snapshot.");
        if let Some(url) = self.opts.mqtt.snapshot_manifest_url.clone() {
            let names: Vec<String> = missing.iter().map(|s| s.as_str().to_owned()).collect();
            match fetch::manifest(&self.http, &url, &names).await {
                Ok(manifest) => {
                    self.start_snapshot(missing, manifest);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "The manifest endpoint failed; asking over MQTT.")
                }
            }
        }
        self.request(
            missing[0],
            RequestBody::Snapshot {
                streams: missing.clone(),
            },
        );
        for s in &missing[1..] {
            self.state(*s).pending = self.state(missing[0]).pending.clone();
        }
    }

    fn state(&mut self, stream: DownlinkStream) -> &mut DownlinkState {
        self.downlink.entry(stream).or_default()
    }

    /// Publishes a request and remembers it as the stream's pending one.
    fn request(&mut self, stream: DownlinkStream, body: RequestBody) {
        let request = Request {
            v: VERSION,
            request_id: uuid::Uuid::now_v7().to_string(),
            body: body.clone(),
        };
        let payload = serde_json::to_vec(&request).unwrap_or_default();
        match self.client.try_publish(
            self.topics.device_up(DeviceUplink::Requests),
            QoS::AtLeastOnce,
            false,
            payload,
        ) {
            Ok(()) => {
                tracing::info!(%stream, request = ?body, "Asked the cloud.");
                self.state(stream).pending = Some(Pending {
                    request_id: request.request_id,
                    body,
                    sent_at: Instant::now(),
                });
            }
            Err(e) => tracing::warn!(%stream, error = %e, "Cannot queue a request; will ask again."),
        }
    }

    async fn dead_letter(&self, topic: &str, payload: &[u8], error: String) {
        tracing::warn!(%topic, %error, bytes = payload.len(), "Cloud message kept in dead letters.");
        if let Err(e) = self
            .store
            .dead_letter(topic.to_owned(), payload.to_vec(), error)
            .await
        {
            tracing::error!(error = %e, "Cannot keep a dead letter.");
        }
    }

    async fn on_message(&mut self, topic: String, payload: Vec<u8>) {
        // Senders keep envelopes under MAX_PAYLOAD_BYTES (docs/protocol.md); a larger
        // one is a protocol violation even where the broker let it through.
        if payload.len() > MAX_PAYLOAD_BYTES {
            let error = format!(
                "{} bytes, more than the protocol's envelope limit of {MAX_PAYLOAD_BYTES}",
                payload.len()
            );
            return self.dead_letter(&topic, &payload, error).await;
        }
        let topic_kind = Topic::parse(&topic);
        if !matches!(topic_kind, Some(Topic::Store { .. })) {
            self.flush_group().await;
        }
        match topic_kind {
            Some(Topic::Store { stream, .. }) => {
                let Some(stream) = DownlinkStream::parse(&stream) else {
                    let error = format!("unknown downlink stream {stream:?}");
                    return self.dead_letter(&topic, &payload, error).await;
                };
                match parse::<DownlinkBatch>(&payload).and_then(|b| b.check().map(|()| b)) {
                    Ok(batch) if batch.stream != stream.as_str() => {
                        let error =
                            format!("the envelope names stream {:?}, the topic {stream}", batch.stream);
                        self.dead_letter(&topic, &payload, error).await
                    }
                    Ok(batch) => {
                        // Applied with whatever else is waiting (`flush_group`).
                        if self.note_seen(stream, &batch) {
                            self.group.push((topic, stream, batch));
                        }
                    }
                    Err(e) => self.dead_letter(&topic, &payload, e).await,
                }
            }
            Some(Topic::DeviceDown {
                kind: DeviceDownlink::Ack,
                ..
            }) => match parse::<Ack>(&payload) {
                Ok(ack) => self.on_ack(ack).await,
                Err(e) => self.dead_letter(&topic, &payload, e).await,
            },
            Some(Topic::DeviceDown {
                kind: DeviceDownlink::Reply,
                ..
            }) => match parse::<Reply>(&payload) {
                Ok(reply) => self.on_reply(topic, reply).await,
                Err(e) => self.dead_letter(&topic, &payload, e).await,
            },
            Some(Topic::DeviceDown {
                kind: DeviceDownlink::Command,
                ..
            }) => match parse::<super::protocol::Command>(&payload) {
                Ok(cmd) => match cmd.body {
                    CommandBody::Resync { streams } if !streams.is_empty() => {
                        tracing::info!(command_id = %cmd.command_id, "Resync ordered by the cloud.");
                        self.request(streams[0], RequestBody::Snapshot { streams });
                    }
                    CommandBody::Resync { .. } => {}
                },
                Err(e) => self.dead_letter(&topic, &payload, e).await,
            },
            _ => {
                let error = "a topic this agent does not use".to_owned();
                self.dead_letter(&topic, &payload, error).await
            }
        }
    }

    /// Remembers the highest seq seen; false when the stream is being reloaded
    /// from a snapshot (its messages wait; a range fetch after the load gets them).
    fn note_seen(&mut self, stream: DownlinkStream, batch: &DownlinkBatch) -> bool {
        let highest = batch.items.iter().map(|i| i.seq).max().unwrap_or(0);
        let st = self.state(stream);
        if st.seen_epoch != batch.epoch {
            st.seen_epoch = batch.epoch.clone();
            st.highest_seen = 0;
        }
        st.highest_seen = st.highest_seen.max(highest);
        !st.loading
    }

    /// Applies the waiting store-stream messages in one transaction.
    async fn flush_group(&mut self) {
        if self.group.is_empty() {
            return;
        }
        let group = std::mem::take(&mut self.group);
        let streams: Vec<DownlinkStream> = group.iter().map(|(_, s, _)| *s).collect();
        match self.store.apply_downlink_group(group).await {
            Ok(outcomes) => {
                // Judge each stream by where the whole group left it: an earlier
                // message's gap may be filled by a later one of the same group.
                let mut last: Vec<(DownlinkStream, crate::store::downlink::BatchOutcome)> = Vec::new();
                for (stream, outcome) in streams.into_iter().zip(outcomes) {
                    match last.iter_mut().find(|(s, _)| *s == stream) {
                        Some((_, merged)) => {
                            let needs_snapshot =
                                merged.needs_snapshot.take().or(outcome.needs_snapshot.clone());
                            *merged = outcome;
                            merged.needs_snapshot = needs_snapshot.or(merged.needs_snapshot.take());
                        }
                        None => last.push((stream, outcome)),
                    }
                }
                for (stream, outcome) in last {
                    self.after_apply(stream, outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot apply downlink messages; the next one repairs the gap.")
            }
        }
    }

    /// A range reply: applied at once, on its own.
    async fn on_batch(&mut self, topic: String, stream: DownlinkStream, batch: DownlinkBatch) {
        if !self.note_seen(stream, &batch) {
            return;
        }
        match self.store.apply_downlink(topic.clone(), stream, batch).await {
            Ok(outcome) => self.after_apply(stream, outcome),
            Err(e) => tracing::error!(%topic, error = %e, "Cannot apply a downlink batch."),
        }
    }

    /// Asks for what the outcome says is missing: a snapshot, or a range.
    fn after_apply(&mut self, stream: DownlinkStream, outcome: crate::store::downlink::BatchOutcome) {
        if let Some(reason) = outcome.needs_snapshot {
            if self.state(stream).pending.is_none() {
                tracing::info!(%stream, %reason, "Reloading the stream from a snapshot.");
                self.request(
                    stream,
                    RequestBody::Snapshot {
                        streams: vec![stream],
                    },
                );
            }
            return;
        }
        let last = outcome.position.as_ref().map_or(0, |p| p.last_seq);
        let epoch = outcome.position.map(|p| p.epoch).unwrap_or_default();
        // A range request is done once the stream reached its end.
        let st = self.state(stream);
        if let Some(Pending {
            body: RequestBody::Range { to_seq, .. },
            ..
        }) = &st.pending
            && last >= *to_seq
        {
            st.pending = None;
        }
        // Messages that arrived beyond the gap while its range was being fetched
        // were not applied: fetch them too once the range is in.
        let seen = self.state(stream).highest_seen;
        let gap = outcome.gap.or((seen > last).then_some((last + 1, seen)));
        if let Some((from, to)) = gap
            && self.state(stream).pending.is_none()
        {
            tracing::info!(%stream, from, to, "Downlink gap: fetching the missing range.");
            self.request(
                stream,
                RequestBody::Range {
                    stream,
                    epoch,
                    from_seq: from,
                    to_seq: to,
                },
            );
        }
    }

    async fn on_ack(&mut self, ack: Ack) {
        let stream = ack.stream;
        match self.store.acknowledge(stream, ack.acked_through).await {
            Ok(deleted) => {
                let st = self.uplink.entry(stream).or_insert(UplinkState::starting(0));
                if ack.acked_through > st.acked {
                    st.acked = ack.acked_through;
                    st.progress_at = Instant::now();
                    self.wake_pump = true;
                    self.pump_idle_at = None;
                }
                st.sent_through = st.sent_through.max(st.acked);
                tracing::debug!(%stream, through = ack.acked_through, deleted, "Cloud acknowledged.");
            }
            Err(e) => tracing::warn!(%stream, through = ack.acked_through, error = %e, "Ignoring an ack."),
        }
    }

    async fn on_reply(&mut self, topic: String, reply: Reply) {
        match reply {
            Reply::NearbyStock {
                request_id, stores, ..
            } => {
                if let Some(tx) = self.nearby.remove(&request_id) {
                    let _ = tx.send(stores);
                }
            }
            Reply::Range { batch, .. } => {
                if let Err(error) = batch.check() {
                    let payload = serde_json::to_vec(&batch).unwrap_or_default();
                    return self.dead_letter(&topic, &payload, error).await;
                }
                let Some(stream) = DownlinkStream::parse(&batch.stream) else {
                    let error = format!("a range reply for the unknown stream {:?}", batch.stream);
                    let payload = serde_json::to_vec(&batch).unwrap_or_default();
                    return self.dead_letter(&topic, &payload, error).await;
                };
                self.on_batch(topic, stream, batch).await;
            }
            Reply::Unavailable { stream, reason, .. } => {
                tracing::info!(%stream, %reason, "The cloud cannot resend the range: reloading from a snapshot.");
                self.state(stream).pending = None;
                self.request(
                    stream,
                    RequestBody::Snapshot {
                        streams: vec![stream],
                    },
                );
            }
            Reply::Snapshot {
                request_id, manifest, ..
            } => {
                let streams: Vec<DownlinkStream> = self
                    .downlink
                    .iter()
                    .filter(|(_, d)| d.pending.as_ref().is_some_and(|p| p.request_id == request_id))
                    .map(|(s, _)| *s)
                    .collect();
                if streams.is_empty() {
                    tracing::debug!(%request_id, "A snapshot reply nobody waits for (answered already).");
                    return;
                }
                self.start_snapshot(streams, manifest);
            }
        }
    }

    fn start_snapshot(&mut self, streams: Vec<DownlinkStream>, manifest: SnapshotManifest) {
        for s in &streams {
            self.state(*s).loading = true;
        }
        let http = self.http.clone();
        let store = self.store.clone();
        let expect = ImportExpectations {
            tenant_id: Some(self.opts.tenant_id.clone()),
            store_id: Some(self.opts.store_id.clone()),
        };
        let done = self.done_tx.clone();
        tracing::info!(url = %manifest.url, size = manifest.size, "Downloading a snapshot.");
        let started = Instant::now();
        tokio::spawn(async move {
            let result = fetch::download_and_import(&http, &store, &manifest, expect)
                .await
                .map(|r| (r.records, r.elapsed_ms))
                .map_err(|e| format!("{e:#}"));
            let _ = done
                .send(SnapshotDone {
                    streams,
                    manifest: Some(manifest),
                    result,
                    started,
                })
                .await;
        });
    }

    async fn on_snapshot_done(&mut self, done: SnapshotDone) {
        for s in &done.streams {
            let st = self.state(*s);
            st.loading = false;
            st.pending = None;
        }
        match done.result {
            Ok((records, import_ms)) => {
                let total_ms = done.started.elapsed().as_millis() as u64;
                tracing::info!(
                    records,
                    total_ms,
                    download_ms = total_ms.saturating_sub(import_ms),
                    import_ms,
                    streams = ?done.streams.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    "Snapshot loaded."
                );
                // Anything published after the snapshot's position must now be fetched.
                let Some(manifest) = done.manifest else { return };
                for stream in done.streams {
                    let Some(pos) = manifest.streams.get(stream.as_str()) else {
                        continue;
                    };
                    let st = self.state(stream);
                    let seen = if st.seen_epoch == pos.epoch {
                        st.highest_seen
                    } else {
                        0
                    };
                    if seen > pos.seq {
                        self.request(
                            stream,
                            RequestBody::Range {
                                stream,
                                epoch: pos.epoch.clone(),
                                from_seq: pos.seq + 1,
                                to_seq: seen,
                            },
                        );
                    }
                }
            }
            Err(e) => {
                // The pending requests are cleared: the next message (or the request
                // timeout's bootstrap) asks again.
                tracing::error!(error = %e, "Snapshot failed; the local copy is unchanged.");
            }
        }
    }

    /// One turn of the uplink pump. Returns whether it sent anything.
    async fn pump(&mut self) -> bool {
        let generation = self.store.write_generation();
        if let Some((seen, at)) = self.pump_idle_at
            && seen == generation
            && at.elapsed() < IDLE_RECHECK
        {
            return false;
        }
        // Every stream read and found with nothing to send: then idle until a write.
        let mut all_empty = true;
        let rate = self.opts.mqtt.drain_events_per_s as f64;
        let now = Instant::now();
        self.tokens =
            (self.tokens + rate * now.duration_since(self.refilled_at).as_secs_f64()).min(rate / 10.0 + 1.0);
        self.refilled_at = now;
        let window = self.opts.mqtt.window_events as i64;
        let mut sent_any = false;
        for stream in UplinkStream::ALL {
            if self.tokens < 1.0 {
                all_empty = false;
                break;
            }
            let st = *self.uplink.entry(stream).or_insert(UplinkState::starting(0));
            let from = st.sent_through.max(st.acked);
            let room = if st.sent_through == 0 {
                window
            } else {
                window - (st.sent_through - st.acked)
            };
            let limit = room.min(self.tokens as i64).min(MAX_BATCH_EVENTS as i64 * 4);
            if limit <= 0 {
                all_empty = false;
                continue;
            }
            let rows = match self
                .store
                .reads()
                .read(move |c| outbox::pending_after(c, stream, from, limit as usize))
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(%stream, error = %e, "Cannot read the outbox.");
                    all_empty = false;
                    continue;
                }
            };
            if rows.is_empty() {
                continue;
            }
            all_empty = false;
            let was_idle = st.sent_through <= st.acked;
            let mut sent_through = st.sent_through;
            for batch in pack(&self.opts.device_id, stream, rows) {
                let last = batch.events.last().map_or(0, |e| e.seq);
                let count = batch.events.len();
                let payload = serde_json::to_vec(&batch).unwrap_or_default();
                if self
                    .client
                    .try_publish(
                        self.topics.device_up(DeviceUplink::Stream(stream)),
                        QoS::AtLeastOnce,
                        false,
                        payload,
                    )
                    .is_err()
                {
                    // The client's queue is full: the rest goes next turn.
                    break;
                }
                sent_through = last;
                self.tokens -= count as f64;
                sent_any = true;
            }
            let st = self.uplink.get_mut(&stream).expect("inserted above");
            st.sent_through = sent_through;
            if was_idle {
                st.progress_at = Instant::now();
            }
        }
        self.pump_idle_at = all_empty.then(|| (generation, Instant::now()));
        sent_any
    }

    /// Resends after silence, and asks again for requests that got no reply.
    /// Sends a nearby-stock request, or drops the look-up while offline.
    fn ask_nearby(&mut self, lookup: NearbyLookup) {
        if !self.connected || self.nearby.len() >= MAX_NEARBY_WAITING {
            return;
        }
        let request = Request {
            v: VERSION,
            request_id: uuid::Uuid::now_v7().to_string(),
            body: RequestBody::NearbyStock { gtin: lookup.gtin },
        };
        let payload = serde_json::to_vec(&request).unwrap_or_default();
        if self
            .client
            .try_publish(
                self.topics.device_up(DeviceUplink::Requests),
                QoS::AtMostOnce,
                false,
                payload,
            )
            .is_ok()
        {
            self.nearby.insert(request.request_id, lookup.reply);
        }
    }

    async fn check_timeouts(&mut self) {
        // Look-ups whose screen gave up.
        self.nearby.retain(|_, reply| !reply.is_closed());
        let ack_timeout = Duration::from_millis(self.opts.mqtt.ack_timeout_ms);
        for (stream, st) in self.uplink.iter_mut() {
            if st.sent_through > st.acked && st.progress_at.elapsed() > ack_timeout {
                tracing::warn!(%stream, sent = st.sent_through, acked = st.acked, "No ack in time: resending from the oldest unacknowledged event.");
                st.sent_through = 0;
                st.progress_at = Instant::now();
                self.pump_idle_at = None;
            }
        }
        let request_timeout = Duration::from_millis(self.opts.mqtt.request_timeout_ms);
        let expired: Vec<(DownlinkStream, RequestBody)> = self
            .downlink
            .iter()
            .filter(|(_, d)| !d.loading)
            .filter_map(|(s, d)| {
                d.pending
                    .as_ref()
                    .filter(|p| p.sent_at.elapsed() > request_timeout)
                    .map(|p| (*s, p.body.clone()))
            })
            .collect();
        for (stream, body) in expired {
            tracing::warn!(%stream, "No reply in time: asking again.");
            self.request(stream, body);
        }
    }

    async fn publish_health(&mut self) {
        let report = match self.store.reads().read(crate::store::status::report).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the status for health telemetry.");
                return;
            }
        };
        let health = Health {
            v: VERSION,
            device_id: self.opts.device_id.clone(),
            at_ms: now_ms(),
            outbox_depth: report
                .outbox
                .iter()
                .map(|o| (o.stream.clone(), o.depth))
                .collect(),
            oldest_pending_ms: report.outbox.iter().filter_map(|o| o.oldest_captured_at_ms).min(),
            downlink_seq: report
                .downlink
                .iter()
                .map(|d| (d.stream.clone(), d.last_seq))
                .collect::<BTreeMap<_, _>>(),
            dead_letters: report.counts.dead_letters,
        };
        let payload = serde_json::to_vec(&health).unwrap_or_default();
        let _ = self.client.try_publish(
            self.topics.device_up(DeviceUplink::Health),
            QoS::AtMostOnce,
            false,
            payload,
        );
    }
}

fn parse<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    let value: T = serde_json::from_slice(payload).map_err(|e| format!("does not parse: {e}"))?;
    Ok(value)
}

/// Packs outbox rows into uplink batches of at most [`MAX_BATCH_EVENTS`] events
/// and [`MAX_PAYLOAD_BYTES`] bytes. An event always fits: the outbox refuses
/// payloads over `outbox::MAX_EVENT_BYTES` when they are captured.
pub fn pack(device_id: &str, stream: UplinkStream, rows: Vec<OutboxRow>) -> Vec<UplinkBatch> {
    let mut batches = Vec::new();
    let mut events = Vec::new();
    let mut bytes = 200 + device_id.len();
    for row in rows {
        let payload: serde_json::Value =
            serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::String(row.payload.clone()));
        let size = row.payload.len() + row.kind.len() + row.idempotency_key.len() + 100;
        if !events.is_empty() && (events.len() == MAX_BATCH_EVENTS || bytes + size > MAX_PAYLOAD_BYTES) {
            batches.push(UplinkBatch {
                v: VERSION,
                device_id: device_id.to_owned(),
                stream,
                events: std::mem::take(&mut events),
            });
            bytes = 200 + device_id.len();
        }
        bytes += size;
        events.push(UplinkEvent {
            seq: row.seq,
            idempotency_key: row.idempotency_key,
            captured_at_ms: row.captured_at_ms,
            kind: row.kind,
            payload,
        });
    }
    if !events.is_empty() {
        batches.push(UplinkBatch {
            v: VERSION,
            device_id: device_id.to_owned(),
            stream,
            events,
        });
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, payload_len: usize) -> OutboxRow {
        OutboxRow {
            seq,
            idempotency_key: uuid::Uuid::now_v7().to_string(),
            kind: "pos_transaction".into(),
            payload: format!("{{\"x\":\"{}\"}}", "a".repeat(payload_len)),
            captured_at_ms: 1,
        }
    }

    #[test]
    fn batches_respect_count_and_size_and_keep_order() {
        let rows: Vec<OutboxRow> = (1..=1200).map(|s| row(s, 10)).collect();
        let batches = pack("d", UplinkStream::PosTransactions, rows);
        assert_eq!(
            batches.iter().map(|b| b.events.len()).collect::<Vec<_>>(),
            [500, 500, 200]
        );
        let seqs: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.events.iter().map(|e| e.seq))
            .collect();
        assert_eq!(seqs, (1..=1200).collect::<Vec<_>>());

        let big: Vec<OutboxRow> = (1..=40).map(|s| row(s, 10_000)).collect();
        let batches = pack("d", UplinkStream::PosTransactions, big);
        assert!(batches.len() >= 4, "{} batches", batches.len());
        for b in &batches {
            assert!(serde_json::to_vec(b).unwrap().len() <= MAX_PAYLOAD_BYTES);
        }
    }
}
