//! The cloud's MQTT side: the task that owns the event loop, the processor that
//! handles what devices send, the publisher that sends store-stream changes in
//! seq order, and the demo ticker.
//!
//! Why three tasks: the event loop must be polled all the time — it is what
//! moves the client's outgoing queue — so it never waits on anything but the
//! network. It hands incoming messages to the processor through a bounded
//! queue without waiting (the broker's in-flight window bounds what arrives
//! unacknowledged, since the processor sends the PUBACK only once a message was
//! handled). The processor and the publisher may wait for the outgoing queue,
//! which the event loop keeps draining, so nothing waits in a circle.

use super::db::{self, RangeCheck};
use super::{RunState, Shared, to_json};
use crate::events::{DownlinkStream, UplinkStream, now_ms};
use crate::sync::protocol::{
    Ack, DeviceDownlink, DeviceUplink, DownlinkBatch, DownlinkItem, Health, MAX_PAYLOAD_BYTES, NearbyStore,
    Op, Presence, Reply, Request, RequestBody, SnapshotManifest, TOPIC_ROOT, Topic, UplinkBatch, VERSION,
};
use anyhow::{Context, anyhow, bail};
use rumqttc::{Event, EventLoop, Outgoing, Packet, QoS, SubscribeFilter, SubscribeReasonCode};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// Reconnect back-off bounds.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long the MQTT task goes on polling after shutdown was asked, so the
/// clean DISCONNECT (queued behind what was already on its way) goes out.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);
/// Log items read from the database per step of a range reply.
const RANGE_CHUNK: usize = 1000;
/// Snapshot requests answered at the same time; more wait their turn.
const MAX_SNAPSHOT_TASKS: usize = 4;
/// The longest epoch name a batch is sized for before its epoch is known
/// (`e` and an i64): a size check made with it holds for any real epoch.
const LONGEST_EPOCH: &str = "e-9223372036854775808";

/// Owns the MQTT event loop: (re)connects, subscribes on every connection,
/// hands incoming messages to the processor, and follows [`RunState`].
pub(super) async fn mqtt_loop(
    mut eventloop: EventLoop,
    shared: Arc<Shared>,
    inbound: mpsc::Sender<rumqttc::Publish>,
    broker: String,
) {
    let mut run = shared.run.subscribe();
    let subscribe = rumqttc::Subscribe::new_many([
        SubscribeFilter::new(format!("{TOPIC_ROOT}/device/+/up/+"), QoS::AtLeastOnce),
        SubscribeFilter::new(format!("{TOPIC_ROOT}/device/+/presence"), QoS::AtLeastOnce),
    ]);
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    loop {
        let state = *run.borrow_and_update();
        match state {
            RunState::Shutdown => break,
            RunState::Away => {
                shared.ready.send_replace(false);
                if run.changed().await.is_err() {
                    break;
                }
                continue;
            }
            RunState::Running => {}
        }
        let event = tokio::select! {
            event = eventloop.poll() => event,
            () = shutdown_grace(&mut run) => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(%broker, session_present = ack.session_present, "The cloud is connected to the broker.");
                // Ahead of anything queued: the broker may have lost the session
                // (restarted without persistence), and subscribing again is harmless.
                eventloop
                    .pending
                    .push_front(rumqttc::Request::Subscribe(subscribe.clone()));
                backoff = MIN_BACKOFF;
                failing = false;
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    tracing::error!(%broker, "The broker refused the cloud's subscriptions; does its ACL know the user \"cloud\"?");
                } else {
                    shared.ready.send_replace(true);
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => forward(&shared, &inbound, p),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                if *run.borrow() != RunState::Running {
                    // Our own DISCONNECT went out: drop the connection. Messages not yet
                    // acknowledged by the broker wait in `pending` for the next one.
                    eventloop.clean();
                    shared.ready.send_replace(false);
                }
            }
            Ok(_) => {}
            Err(e) => {
                shared.ready.send_replace(false);
                if !failing {
                    tracing::warn!(%broker, error = %e, "The cloud's MQTT connection failed; retrying.");
                    failing = true;
                } else {
                    tracing::debug!(%broker, error = %e, "The cloud's MQTT connection failed again.");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = run.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    shared.ready.send_replace(false);
}

/// Completes [`DISCONNECT_GRACE`] after shutdown was asked.
async fn shutdown_grace(run: &mut watch::Receiver<RunState>) {
    if run.wait_for(|s| *s == RunState::Shutdown).await.is_ok() {
        tokio::time::sleep(DISCONNECT_GRACE).await;
    } else {
        // The sender is gone: nobody will ever ask; stop now.
    }
}

/// Hands a message to the processor without waiting.
fn forward(shared: &Shared, inbound: &mpsc::Sender<rumqttc::Publish>, p: rumqttc::Publish) {
    match inbound.try_send(p) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(p)) => {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if p.qos == QoS::AtMostOnce {
                tracing::debug!(topic = %p.topic, "The cloud's inbound queue is full; a QoS 0 message is dropped.");
            } else {
                tracing::error!(
                    topic = %p.topic,
                    "The cloud's inbound queue is full; the message stays unacknowledged and the broker redelivers \
                     it after the next reconnect."
                );
            }
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// Handles incoming messages one at a time, each PUBACKed after it was handled.
pub(super) async fn processor(shared: Arc<Shared>, mut inbound: mpsc::Receiver<rumqttc::Publish>) {
    let mut side = JoinSet::new();
    loop {
        tokio::select! {
            p = inbound.recv() => {
                let Some(p) = p else { break };
                handle(&shared, &p.topic, &p.payload, &mut side).await;
                if p.qos != QoS::AtMostOnce {
                    shared.sink.settle(&p).await;
                }
            }
            Some(_) = side.join_next(), if !side.is_empty() => {}
        }
    }
    side.abort_all();
}

/// Counts and logs a message the cloud refuses.
fn bad(shared: &Shared, topic: &str, error: impl std::fmt::Display) {
    shared.stats.bad.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(topic, %error, "The cloud refused a message.");
}

/// Handles one message. Never fails: what is wrong is logged and counted.
/// Snapshot requests run in `side` (writing a snapshot can take seconds).
pub(super) async fn handle(shared: &Arc<Shared>, topic: &str, payload: &[u8], side: &mut JoinSet<()>) {
    match Topic::parse(topic) {
        Some(Topic::DeviceUp { device_id, kind }) => {
            if !shared.serves(&device_id) {
                return bad(
                    shared,
                    topic,
                    format!("device {device_id:?} is not served by this cloud"),
                );
            }
            match kind {
                DeviceUplink::Stream(stream) => {
                    handle_uplink(shared, topic, &device_id, stream, payload).await
                }
                DeviceUplink::Requests => handle_request(shared, topic, &device_id, payload, side).await,
                DeviceUplink::Health => handle_health(shared, topic, &device_id, payload).await,
            }
        }
        // Retained presence of every device on the broker arrives with each
        // subscription; another store's devices are not this cloud's business.
        Some(Topic::Presence { device_id }) if !shared.serves(&device_id) => {
            tracing::debug!(topic, "Presence of a device this cloud does not serve.");
        }
        Some(Topic::Presence { device_id }) => handle_presence(shared, topic, &device_id, payload).await,
        _ => bad(shared, topic, "not a topic the cloud serves"),
    }
}

async fn handle_uplink(
    shared: &Arc<Shared>,
    topic: &str,
    device: &str,
    stream: UplinkStream,
    payload: &[u8],
) {
    let batch: UplinkBatch = match serde_json::from_slice(payload) {
        Ok(b) => b,
        Err(e) => return bad(shared, topic, format!("not an uplink batch: {e}")),
    };
    if batch.v != VERSION {
        return bad(
            shared,
            topic,
            format!("protocol version {} (this cloud speaks {VERSION})", batch.v),
        );
    }
    if batch.device_id != device {
        return bad(
            shared,
            topic,
            format!("the batch names device {:?}, not the topic's", batch.device_id),
        );
    }
    if batch.stream != stream {
        return bad(
            shared,
            topic,
            format!("the batch names stream {}, not the topic's", batch.stream),
        );
    }
    let owned = device.to_string();
    let stored = shared
        .db
        .call(move |c| Ok(db::store_uplink(c, &owned, &batch, now_ms())?))
        .await;
    match stored {
        Ok(s) => {
            shared.stats.duplicates.fetch_add(s.duplicates, Ordering::Relaxed);
            tracing::debug!(
                device,
                %stream,
                stored = s.stored,
                duplicates = s.duplicates,
                refused = s.refused,
                acked_through = s.acked_through,
                "Uplink batch stored."
            );
            send_ack(shared, device, stream, s.acked_through).await;
        }
        Err(e) => tracing::error!(
            device,
            %stream,
            error = %format!("{e:#}"),
            "Cannot store an uplink batch; it is not acknowledged (the agent sends it again)."
        ),
    }
}

/// Publishes `Ack {stream, acked_through}` to `device`, or holds it, or sends it
/// after the configured delay.
pub(super) async fn send_ack(shared: &Arc<Shared>, device: &str, stream: UplinkStream, acked_through: i64) {
    let delay = {
        let mut state = shared.fault_state();
        if state.faults.hold_acks {
            state.held.insert((device.to_string(), stream));
            return;
        }
        state.faults.ack_delay
    };
    let topic = shared.topics(device).device_down(DeviceDownlink::Ack);
    let payload = to_json(&Ack {
        v: VERSION,
        stream,
        acked_through,
    });
    if delay.is_zero() {
        if let Err(e) = shared.sink.publish(topic, payload).await {
            tracing::warn!(device, %stream, error = %format!("{e:#}"), "Cannot send an ack.");
        }
    } else {
        let sink = shared.sink.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(e) = sink.publish(topic, payload).await {
                tracing::warn!(error = %format!("{e:#}"), "Cannot send a delayed ack.");
            }
        });
    }
}

/// Acks the current mark of every held (device, stream).
pub(super) async fn release_acks(
    shared: &Arc<Shared>,
    held: BTreeSet<(String, UplinkStream)>,
) -> anyhow::Result<()> {
    for (device, stream) in held {
        let owned = device.clone();
        let mark = shared
            .db
            .call(move |c| Ok(db::acked_through(c, &owned, stream.as_str())?))
            .await
            .with_context(|| format!("cannot read the mark of {device} {stream} to release its ack"))?;
        send_ack(shared, &device, stream, mark).await;
    }
    Ok(())
}

async fn handle_request(
    shared: &Arc<Shared>,
    topic: &str,
    device: &str,
    payload: &[u8],
    side: &mut JoinSet<()>,
) {
    let request: Request = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => return bad(shared, topic, format!("not a request: {e}")),
    };
    if request.v != VERSION {
        return bad(
            shared,
            topic,
            format!("protocol version {} (this cloud speaks {VERSION})", request.v),
        );
    }
    let reply_topic = shared.topics(device).device_down(DeviceDownlink::Reply);
    match request.body {
        RequestBody::Range {
            stream,
            epoch,
            from_seq,
            to_seq,
        } => {
            let result = answer_range(
                shared,
                &reply_topic,
                &request.request_id,
                stream,
                &epoch,
                from_seq,
                to_seq,
            )
            .await;
            if let Err(e) = result {
                tracing::error!(device, %stream, error = %format!("{e:#}"), "Cannot answer a range request.");
            }
        }
        RequestBody::NearbyStock { gtin } => {
            answer_nearby(shared, reply_topic, request.request_id, gtin).await;
        }
        RequestBody::Snapshot { streams } => {
            while side.len() >= MAX_SNAPSHOT_TASKS {
                side.join_next().await;
            }
            let shared = shared.clone();
            let device = device.to_string();
            side.spawn(async move {
                let requested = (!streams.is_empty()).then_some(streams);
                match manifest(&shared, requested).await {
                    Ok(manifest) => {
                        let reply = Reply::Snapshot {
                            v: VERSION,
                            request_id: request.request_id,
                            manifest,
                        };
                        if let Err(e) = shared.sink.publish(reply_topic, to_json(&reply)).await {
                            tracing::warn!(device, error = %format!("{e:#}"), "Cannot send a snapshot reply.");
                        }
                    }
                    Err(e) => tracing::error!(
                        device,
                        error = %format!("{e:#}"),
                        "Cannot make the snapshot a device asked for; it will ask again."
                    ),
                }
            });
        }
    }
}

/// The reference cloud's stores near this one: a real cloud answers from its
/// stores' stock; this one has only its own store, so it makes three neighbours
/// up, deterministically from the GTIN and this store's count (documented in
/// docs/protocol.md as simulated).
async fn answer_nearby(shared: &Arc<Shared>, reply_topic: String, request_id: String, gtin: String) {
    let key = super::keys::normalize_key(DownlinkStream::Stock, &gtin);
    let here = shared
        .db
        .call(move |c| Ok(db::entity_in_state(c, DownlinkStream::Stock, &key)?))
        .await
        .ok()
        .flatten()
        .and_then(|s| s["on_hand"].as_i64())
        .unwrap_or(0);
    let seed = gtin
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let stores = (1..=3u64)
        .map(|i| NearbyStore {
            store_id: format!("nearby-{i}"),
            name: format!("Reference store {i}"),
            available: ((seed / (i * 7) + here as u64 * i) % 25) as i64,
            distance_m: Some(900 * i as u32 + (seed % 500) as u32),
        })
        .collect();
    let reply = Reply::NearbyStock {
        v: VERSION,
        request_id,
        gtin,
        stores,
    };
    if let Err(e) = shared.sink.publish(reply_topic, to_json(&reply)).await {
        tracing::warn!(error = %format!("{e:#}"), "Cannot send a nearby-stock reply.");
    }
}

/// Answers a range request from the log, chunk by chunk, or with "unavailable".
async fn answer_range(
    shared: &Arc<Shared>,
    reply_topic: &str,
    request_id: &str,
    stream: DownlinkStream,
    epoch: &str,
    from_seq: i64,
    to_seq: i64,
) -> anyhow::Result<()> {
    let unavailable = |reason: String| Reply::Unavailable {
        v: VERSION,
        request_id: request_id.to_string(),
        stream,
        reason,
    };
    let owned = epoch.to_string();
    let check = shared
        .db
        .call(move |c| Ok(db::check_range(c, stream, &owned, from_seq, to_seq)?))
        .await?;
    let to_seq = match check {
        RangeCheck::Unavailable(reason) => {
            return shared
                .sink
                .publish(reply_topic.to_string(), to_json(&unavailable(reason)))
                .await;
        }
        RangeCheck::Serve { to_seq } => to_seq,
    };
    let mut next = from_seq;
    while next <= to_seq {
        let owned = epoch.to_string();
        let items = shared
            .db
            .call(move |c| Ok(db::read_log(c, stream, &owned, next, to_seq, RANGE_CHUNK)?))
            .await?;
        let first = items.first().map(|i| i.seq);
        let last = items.last().map_or(next, |i| i.seq);
        if first != Some(next) {
            // Trimmed or a new epoch between the check and this read.
            let reason = format!("the log of {stream} changed while the range was read; seq {next} is gone");
            return shared
                .sink
                .publish(reply_topic.to_string(), to_json(&unavailable(reason)))
                .await;
        }
        // The log holds consecutive seqs, so a chunk that starts right holds them all.
        for reply in range_replies(request_id, stream, epoch, items)? {
            shared
                .sink
                .publish(reply_topic.to_string(), to_json(&reply))
                .await?;
        }
        next = last + 1;
    }
    Ok(())
}

/// The [`Reply::Range`]s carrying `items`, each within [`MAX_PAYLOAD_BYTES`].
pub(super) fn range_replies(
    request_id: &str,
    stream: DownlinkStream,
    epoch: &str,
    items: Vec<DownlinkItem>,
) -> anyhow::Result<Vec<Reply>> {
    let reply = |items: Vec<DownlinkItem>| Reply::Range {
        v: VERSION,
        request_id: request_id.to_string(),
        batch: DownlinkBatch {
            v: VERSION,
            stream: stream.as_str().into(),
            epoch: epoch.to_string(),
            items,
        },
    };
    let empty = to_json(&reply(Vec::new())).len();
    Ok(pack(items, empty, MAX_PAYLOAD_BYTES)?
        .into_iter()
        .map(reply)
        .collect())
}

/// The store-stream batches carrying `items`, each within [`MAX_PAYLOAD_BYTES`].
pub(super) fn store_batches(
    stream: DownlinkStream,
    epoch: &str,
    items: Vec<DownlinkItem>,
) -> anyhow::Result<Vec<DownlinkBatch>> {
    let batch = |items: Vec<DownlinkItem>| DownlinkBatch {
        v: VERSION,
        stream: stream.as_str().into(),
        epoch: epoch.to_string(),
        items,
    };
    let empty = to_json(&batch(Vec::new())).len();
    Ok(pack(items, empty, MAX_PAYLOAD_BYTES)?
        .into_iter()
        .map(batch)
        .collect())
}

/// Splits `items` into consecutive runs such that an envelope whose JSON is
/// `empty_len` bytes with no items stays within `limit` with each run: a run
/// adds each item's JSON and a comma between two. Fails when one item alone
/// does not fit.
pub(super) fn pack(
    items: Vec<DownlinkItem>,
    empty_len: usize,
    limit: usize,
) -> anyhow::Result<Vec<Vec<DownlinkItem>>> {
    let mut runs = Vec::new();
    let mut run: Vec<DownlinkItem> = Vec::new();
    let mut len = empty_len;
    for item in items {
        let size = serde_json::to_vec(&item)?.len();
        if empty_len + size > limit {
            bail!(
                "item seq {} is {size} bytes as JSON; with its envelope that exceeds the {limit}-byte message \
                 limit (bulk data travels as snapshots)",
                item.seq
            );
        }
        let added = size + usize::from(!run.is_empty());
        if len + added > limit {
            runs.push(std::mem::take(&mut run));
            len = empty_len;
            run.push(item);
            len += size;
        } else {
            run.push(item);
            len += added;
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    Ok(runs)
}

async fn handle_presence(shared: &Arc<Shared>, topic: &str, device: &str, payload: &[u8]) {
    if payload.is_empty() {
        // Someone cleared the retained message; nothing to record.
        return;
    }
    let presence: Presence = match serde_json::from_slice(payload) {
        Ok(p) => p,
        Err(e) => return bad(shared, topic, format!("not a presence message: {e}")),
    };
    if presence.device_id != device {
        return bad(
            shared,
            topic,
            format!(
                "the presence names device {:?}, not the topic's",
                presence.device_id
            ),
        );
    }
    tracing::info!(device, state = %presence.state, "Device presence.");
    let owned = device.to_string();
    if let Err(e) = shared
        .db
        .call(move |c| db::record_presence(c, &owned, &presence, now_ms()))
        .await
    {
        tracing::error!(device, error = %format!("{e:#}"), "Cannot record a device's presence.");
    }
}

async fn handle_health(shared: &Arc<Shared>, topic: &str, device: &str, payload: &[u8]) {
    let health: Health = match serde_json::from_slice(payload) {
        Ok(h) => h,
        Err(e) => return bad(shared, topic, format!("not a health report: {e}")),
    };
    if health.device_id != device {
        return bad(
            shared,
            topic,
            format!(
                "the health report names device {:?}, not the topic's",
                health.device_id
            ),
        );
    }
    let owned = device.to_string();
    if let Err(e) = shared
        .db
        .call(move |c| db::record_health(c, &owned, &health, now_ms()))
        .await
    {
        tracing::error!(device, error = %format!("{e:#}"), "Cannot record a device's health report.");
    }
}

/// The manifest of a snapshot of `requested` (every stream with a position when
/// `None`), whose URL is on the cloud's HTTP server.
pub(super) async fn manifest(
    shared: &Arc<Shared>,
    requested: Option<Vec<DownlinkStream>>,
) -> anyhow::Result<SnapshotManifest> {
    if let Some(streams) = requested.clone() {
        // A stream nobody published on yet starts at e1/0 now, so the agent can
        // follow its first change without another snapshot.
        shared
            .db
            .call(move |c| {
                for s in streams {
                    db::ensure_position(c, s)?;
                }
                Ok(())
            })
            .await?;
    }
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || shared.snapshots.manifest_blocking(requested.as_deref()))
        .await
        .map_err(|e| anyhow!("the snapshot writer failed: {e}"))?
}

/// A change for the publisher task.
pub(super) enum PublishJob {
    /// Log, apply and publish items; answers their seqs.
    Publish {
        stream: DownlinkStream,
        items: Vec<(Op, Value)>,
        done: oneshot::Sender<anyhow::Result<Vec<i64>>>,
    },
    /// Start a new epoch; answers its name.
    NewEpoch {
        stream: DownlinkStream,
        done: oneshot::Sender<anyhow::Result<String>>,
    },
}

/// Runs store-stream changes one after the other, so messages leave in seq order.
pub(super) async fn publisher(shared: Arc<Shared>, mut jobs: mpsc::Receiver<PublishJob>) {
    while let Some(job) = jobs.recv().await {
        match job {
            PublishJob::Publish { stream, items, done } => {
                let _ = done.send(publish_items(&shared, stream, items).await);
            }
            PublishJob::NewEpoch { stream, done } => {
                let result = shared.db.call(move |c| Ok(db::new_epoch(c, stream)?)).await;
                if let Ok(epoch) = &result {
                    tracing::info!(%stream, epoch, "New epoch.");
                }
                let _ = done.send(result);
            }
        }
    }
}

/// Logs, applies and publishes `items` on `stream`; returns their seqs.
pub(super) async fn publish_items(
    shared: &Arc<Shared>,
    stream: DownlinkStream,
    items: Vec<(Op, Value)>,
) -> anyhow::Result<Vec<i64>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    // Refuse what cannot travel before it takes a seq: a logged item that can
    // never be sent would be a gap no range request can fill. The largest
    // envelope of one item: the longest epoch and seq, the entity's JSON.
    let empty = to_json(&DownlinkBatch {
        v: VERSION,
        stream: stream.as_str().into(),
        epoch: LONGEST_EPOCH.into(),
        items: Vec::new(),
    })
    .len();
    let shell = to_json(&DownlinkItem {
        seq: i64::MAX,
        op: Op::Upsert,
        entity: Value::Null,
    })
    .len()
        - "null".len();
    for (i, (_, entity)) in items.iter().enumerate() {
        let size = empty + shell + serde_json::to_vec(entity)?.len();
        if size > MAX_PAYLOAD_BYTES {
            let key = super::keys::entity_key(stream, entity).unwrap_or_else(|| format!("item {i}"));
            bail!(
                "cannot publish the {stream} entity {key}: as a message it takes {size} bytes, over the \
                 {MAX_PAYLOAD_BYTES}-byte limit (bulk data travels as snapshots); nothing was published"
            );
        }
    }
    let (epoch, published) = shared
        .db
        .call(move |c| Ok(db::append(c, stream, &items, now_ms())?))
        .await
        .with_context(|| format!("cannot log changes of {stream}"))?;
    let seqs: Vec<i64> = published.iter().map(|i| i.seq).collect();
    let topic = shared.store_topic(stream);
    for batch in store_batches(stream, &epoch, published)? {
        let (drop, twice) = {
            let mut state = shared.fault_state();
            if state.faults.drop_next_downlink > 0 {
                state.faults.drop_next_downlink -= 1;
                (true, false)
            } else {
                (false, state.faults.duplicate_downlink)
            }
        };
        let (first, last) = (
            batch.items.first().map_or(0, |i| i.seq),
            batch.items.last().map_or(0, |i| i.seq),
        );
        if drop {
            tracing::info!(%stream, first, last, "Fault injection: a store-stream message is not published.");
            continue;
        }
        let payload = to_json(&batch);
        if twice {
            shared.sink.publish(topic.clone(), payload.clone()).await?;
        }
        shared.sink.publish(topic.clone(), payload).await?;
        tracing::debug!(%stream, epoch, first, last, "Published.");
    }
    Ok(seqs)
}

/// Publishes a small realistic change every `every`: mostly stock counts,
/// sometimes a price.
pub(super) async fn ticker(shared: Arc<Shared>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The first tick is immediate; the first change comes one period after start.
    interval.tick().await;
    let mut n = 0u64;
    loop {
        interval.tick().await;
        n += 1;
        if let Err(e) = tick(&shared, n).await {
            tracing::warn!(error = %format!("{e:#}"), "The demo ticker could not publish a change.");
        }
    }
}

/// SplitMix64 of `n`: the ticker's choices, reproducible and spread out.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn tick(shared: &Arc<Shared>, n: u64) -> anyhow::Result<()> {
    let r = mix(n);
    let stream = if n % 3 == 0 {
        DownlinkStream::Products
    } else {
        DownlinkStream::Stock
    };
    let Some(mut entity) = shared
        .db
        .call(move |c| Ok(db::pick_entity(c, stream, r)?))
        .await?
    else {
        return Ok(());
    };
    let Some(fields) = entity.as_object_mut() else {
        return Ok(());
    };
    match stream {
        DownlinkStream::Stock => {
            const DELTAS: [i64; 7] = [-3, -2, -1, 1, 2, 4, 6];
            let on_hand = fields.get("on_hand").and_then(Value::as_i64).unwrap_or(0);
            let reserved = fields.get("reserved_bopis").and_then(Value::as_i64).unwrap_or(0);
            let delta = DELTAS[((r >> 8) % DELTAS.len() as u64) as usize];
            // A sale never takes units set aside for a pickup.
            fields.insert("on_hand".into(), Value::from((on_hand + delta).max(reserved)));
            fields.insert("updated_at_ms".into(), Value::from(now_ms()));
        }
        _ => {
            let price = fields.get("price_minor").and_then(Value::as_i64).unwrap_or(999);
            let percent = 5 + ((r >> 16) % 11) as i64;
            let moved = if (r >> 32) & 1 == 1 {
                price * (100 + percent) / 100
            } else {
                price * (100 - percent) / 100
            };
            // Shelf prices end in 99.
            fields.insert(
                "price_minor".into(),
                Value::from((moved / 100 * 100 + 99).max(99)),
            );
        }
    }
    let (done, result) = oneshot::channel();
    shared
        .jobs
        .send(PublishJob::Publish {
            stream,
            items: vec![(Op::Upsert, entity)],
            done,
        })
        .await
        .map_err(|_| anyhow!("the publisher has stopped"))?;
    let seqs = result.await.map_err(|_| anyhow!("the publisher has stopped"))??;
    tracing::info!(%stream, seq = seqs.first().copied().unwrap_or(0), "Demo change published.");
    Ok(())
}
