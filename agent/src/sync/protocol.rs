//! The wire protocol between an agent and the retailer's cloud, version 1.
//!
//! This module is the protocol in code; docs/protocol.md is the same contract in
//! prose for a cloud team. Both change together, and a change that an agent of the
//! previous version cannot read gets a new version in the topic root.
//!
//! * Topics: [`Topics`] (what one device uses) and [`Topic::parse`] (what the
//!   cloud receives).
//! * Store-wide downlink streams carry [`DownlinkBatch`]es: `(stream, epoch,
//!   seq)` per item, an [`Op`] and the entity.
//! * Device uplink streams carry [`UplinkBatch`]es: `(stream, seq)`, idempotency
//!   key, capture time and payload per event.
//! * The cloud answers with a cumulative [`Ack`] per uplink stream, and with a
//!   [`Reply`] to a [`Request`] (range fetch, snapshot manifest).
//! * A retained [`Presence`] message, which is also the Last Will.

pub use crate::events::{DownlinkStream, UplinkStream};
pub use crate::store::entities::ConfigEntry;
use crate::store::snapshot::StreamPosition;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The protocol version in every envelope (`"v"`) and in the topic root.
pub const VERSION: u32 = 1;

/// Every topic of this version starts with this.
pub const TOPIC_ROOT: &str = "sa/v1";

/// The largest MQTT message either side may publish, payload and topic included.
/// AWS IoT Core's limit is 128 KiB; bulk data travels as snapshots over HTTPS.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// The largest envelope a sender packs into one message, leaving room for the
/// topic and the MQTT header within [`MAX_MESSAGE_BYTES`].
pub const MAX_PAYLOAD_BYTES: usize = MAX_MESSAGE_BYTES - 4 * 1024;

/// Who a device is: the device id is its MQTT client id and the CN of its client
/// certificate, unique across the tenant's broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The retailer.
    pub tenant_id: String,
    /// The store, unique within the tenant.
    pub store_id: String,
    /// The device: client id = certificate CN.
    pub device_id: String,
}

/// What the cloud publishes to one device only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceDownlink {
    /// Cumulative acks of uplink streams ([`Ack`]).
    Ack,
    /// Answers to [`Request`]s ([`Reply`]).
    Reply,
    /// Orders from fleet operations ([`Command`]).
    Command,
}

impl DeviceDownlink {
    /// Every kind.
    pub const ALL: [DeviceDownlink; 3] = [
        DeviceDownlink::Ack,
        DeviceDownlink::Reply,
        DeviceDownlink::Command,
    ];

    /// The last topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceDownlink::Ack => "ack",
            DeviceDownlink::Reply => "reply",
            DeviceDownlink::Command => "command",
        }
    }

    fn parse(name: &str) -> Option<DeviceDownlink> {
        DeviceDownlink::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// What a device publishes besides its event streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceUplink {
    /// An event stream from the outbox ([`UplinkBatch`]).
    Stream(UplinkStream),
    /// Requests to the cloud ([`Request`]).
    Requests,
    /// Periodic health telemetry ([`Health`]); QoS 0, not from the outbox.
    Health,
}

impl DeviceUplink {
    /// The last topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceUplink::Stream(s) => s.as_str(),
            DeviceUplink::Requests => "requests",
            DeviceUplink::Health => "health",
        }
    }

    fn parse(name: &str) -> Option<DeviceUplink> {
        match name {
            "requests" => Some(DeviceUplink::Requests),
            "health" => Some(DeviceUplink::Health),
            _ => UplinkStream::ALL
                .into_iter()
                .find(|s| s.as_str() == name)
                .map(DeviceUplink::Stream),
        }
    }
}

/// A topic of this protocol, as the cloud (or a test) reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// `sa/v1/store/{tenant}/{store}/{stream}`.
    Store {
        /// Tenant.
        tenant_id: String,
        /// Store.
        store_id: String,
        /// The stream's name as found (may be unknown to this version).
        stream: String,
    },
    /// `sa/v1/device/{device}/down/{kind}`.
    DeviceDown {
        /// Device.
        device_id: String,
        /// Kind.
        kind: DeviceDownlink,
    },
    /// `sa/v1/device/{device}/up/{kind}`.
    DeviceUp {
        /// Device.
        device_id: String,
        /// Kind.
        kind: DeviceUplink,
    },
    /// `sa/v1/device/{device}/presence`, retained.
    Presence {
        /// Device.
        device_id: String,
    },
}

impl Topic {
    /// Reads a topic name; `None` when it is not one of this protocol's.
    pub fn parse(topic: &str) -> Option<Topic> {
        let rest = topic.strip_prefix(TOPIC_ROOT)?.strip_prefix('/')?;
        let levels: Vec<&str> = rest.split('/').collect();
        match levels.as_slice() {
            ["store", tenant, store, stream] => Some(Topic::Store {
                tenant_id: (*tenant).into(),
                store_id: (*store).into(),
                stream: (*stream).into(),
            }),
            ["device", device, "down", kind] => Some(Topic::DeviceDown {
                device_id: (*device).into(),
                kind: DeviceDownlink::parse(kind)?,
            }),
            ["device", device, "up", kind] => Some(Topic::DeviceUp {
                device_id: (*device).into(),
                kind: DeviceUplink::parse(kind)?,
            }),
            ["device", device, "presence"] => Some(Topic::Presence {
                device_id: (*device).into(),
            }),
            _ => None,
        }
    }
}

/// The topics one device uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    store_prefix: String,
    device_prefix: String,
}

impl Topics {
    /// The topics of `identity`.
    pub fn new(identity: &Identity) -> Topics {
        Topics::for_parts(&identity.tenant_id, &identity.store_id, &identity.device_id)
    }

    /// The topics of a device, from its parts (the cloud's side).
    pub fn for_parts(tenant_id: &str, store_id: &str, device_id: &str) -> Topics {
        Topics {
            store_prefix: format!("{TOPIC_ROOT}/store/{tenant_id}/{store_id}"),
            device_prefix: format!("{TOPIC_ROOT}/device/{device_id}"),
        }
    }

    /// Where the cloud publishes a store stream.
    pub fn store_stream(&self, stream: DownlinkStream) -> String {
        format!("{}/{}", self.store_prefix, stream.as_str())
    }

    /// The filter a device subscribes to for all its store's streams.
    pub fn store_filter(&self) -> String {
        format!("{}/+", self.store_prefix)
    }

    /// Where the cloud publishes to this device.
    pub fn device_down(&self, kind: DeviceDownlink) -> String {
        format!("{}/down/{}", self.device_prefix, kind.as_str())
    }

    /// The filter a device subscribes to for what the cloud sends it alone.
    pub fn device_down_filter(&self) -> String {
        format!("{}/down/+", self.device_prefix)
    }

    /// Where this device publishes.
    pub fn device_up(&self, kind: DeviceUplink) -> String {
        format!("{}/up/{}", self.device_prefix, kind.as_str())
    }

    /// The retained presence topic, also the Last Will.
    pub fn presence(&self) -> String {
        format!("{}/presence", self.device_prefix)
    }
}

/// What a downlink item does to its entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Insert or replace (merge, for wishlists) the entity.
    Upsert,
    /// Remove the entity; `entity` holds only its key fields.
    Delete,
}

/// One change of a downlink stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownlinkItem {
    /// Position in the stream: consecutive, from 1 in each epoch.
    pub seq: i64,
    /// What to do.
    pub op: Op,
    /// The entity (upsert) or its key fields (delete). Kept as JSON here so that an
    /// entity that does not fit its schema costs only that item, not the batch.
    pub entity: Value,
}

/// A store-stream message, and the body of a range reply: consecutive items of
/// one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownlinkBatch {
    /// [`VERSION`].
    pub v: u32,
    /// The stream's name.
    pub stream: String,
    /// The cloud's epoch of the stream. A new epoch means the cloud rebuilt the
    /// stream and seqs start again: the agent reloads it from a snapshot.
    pub epoch: String,
    /// The changes, in seq order.
    pub items: Vec<DownlinkItem>,
}

/// The highest seq a downlink item may carry: 2^53 − 1, the largest integer
/// every JSON implementation reads exactly. A larger one is a sender's bug.
pub const MAX_SEQ: i64 = (1 << 53) - 1;

/// The longest epoch name, in bytes.
pub const MAX_EPOCH_BYTES: usize = 128;

/// The longest string anywhere in a downlink entity, in bytes (names, ids,
/// attribute values). The screens show short texts; a longer one is bad data.
pub const MAX_TEXT_BYTES: usize = 4096;

/// How deeply a downlink entity may nest objects and arrays (an order's lines'
/// attributes are three levels down).
pub const MAX_ENTITY_DEPTH: usize = 8;

impl DownlinkBatch {
    /// The envelope rules serde cannot say (docs/protocol.md, section 6): the
    /// version, the epoch's length and seqs from 1 to [`MAX_SEQ`]. A batch that
    /// breaks one is kept in dead letters whole.
    pub fn check(&self) -> Result<(), String> {
        if self.v != VERSION {
            return Err(format!(
                "protocol version {}, this agent speaks {VERSION}",
                self.v
            ));
        }
        if self.epoch.is_empty() || self.epoch.len() > MAX_EPOCH_BYTES {
            return Err(format!(
                "epoch of {} bytes, must be 1 to {MAX_EPOCH_BYTES}",
                self.epoch.len()
            ));
        }
        for (i, item) in self.items.iter().enumerate() {
            if !(1..=MAX_SEQ).contains(&item.seq) {
                return Err(format!("items[{i}]: seq {} outside 1..={MAX_SEQ}", item.seq));
            }
        }
        Ok(())
    }
}

/// The shape rule for one entity: strings within [`MAX_TEXT_BYTES`], nesting
/// within [`MAX_ENTITY_DEPTH`]. Checked per item when it is applied, so a bad
/// entity costs only its own item (dead-lettered, its seq still counts).
pub fn check_entity_shape(entity: &Value) -> Result<(), String> {
    check_shape(entity, 1).map_err(|e| format!("entity{e}"))
}

/// Walks a JSON value; the error starts with the path to the offending part.
fn check_shape(value: &Value, depth: usize) -> Result<(), String> {
    let too_deep = || format!(": nested more than {MAX_ENTITY_DEPTH} levels deep");
    match value {
        Value::String(s) if s.len() > MAX_TEXT_BYTES => Err(format!(
            ": a string of {} bytes, more than the limit of {MAX_TEXT_BYTES}",
            s.len()
        )),
        Value::Array(items) => {
            if depth > MAX_ENTITY_DEPTH {
                return Err(too_deep());
            }
            for (i, v) in items.iter().enumerate() {
                check_shape(v, depth + 1).map_err(|e| format!("[{i}]{e}"))?;
            }
            Ok(())
        }
        Value::Object(map) => {
            if depth > MAX_ENTITY_DEPTH {
                return Err(too_deep());
            }
            for (k, v) in map {
                if k.len() > MAX_TEXT_BYTES {
                    return Err(format!(
                        ": a key of {} bytes, more than the limit of {MAX_TEXT_BYTES}",
                        k.len()
                    ));
                }
                check_shape(v, depth + 1).map_err(|e| format!(".{k}{e}"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// One event from the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkEvent {
    /// Position in the device's stream; consecutive, never reused.
    pub seq: i64,
    /// UUIDv7 given at capture; the cloud de-duplicates by it.
    pub idempotency_key: String,
    /// When the agent captured the event (Unix ms, device clock).
    pub captured_at_ms: i64,
    /// The event type within the stream (`pos_transaction`, `return`, …).
    pub kind: String,
    /// The event.
    pub payload: Value,
}

/// A device uplink message: consecutive events of one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkBatch {
    /// [`VERSION`].
    pub v: u32,
    /// The sending device (the cloud checks it against the topic).
    pub device_id: String,
    /// The stream.
    pub stream: UplinkStream,
    /// The events, in seq order.
    pub events: Vec<UplinkEvent>,
}

/// The cloud's application-level acknowledgement: every event of `stream` with a
/// seq up to `acked_through` is stored durably in the cloud. Cumulative, so a lost
/// ack is repaired by the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// [`VERSION`].
    pub v: u32,
    /// The uplink stream.
    pub stream: UplinkStream,
    /// Highest seq such that it and all before it are stored.
    pub acked_through: i64,
}

/// A device's request to the cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// [`VERSION`].
    pub v: u32,
    /// Echoed in the reply.
    pub request_id: String,
    /// What is asked.
    pub body: RequestBody,
}

/// What a [`Request`] asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RequestBody {
    /// Resend items `from_seq..=to_seq` of a stream in `epoch`.
    Range {
        /// The stream.
        stream: DownlinkStream,
        /// The epoch the agent is in.
        epoch: String,
        /// First seq wanted.
        from_seq: i64,
        /// Last seq wanted.
        to_seq: i64,
    },
    /// A snapshot manifest covering these streams.
    Snapshot {
        /// The streams to reload.
        streams: Vec<DownlinkStream>,
    },
    /// This product's stock in the stores near this one, for the console's
    /// product panel (only while online; never cached).
    NearbyStock {
        /// The GTIN on 14 digits.
        gtin: String,
    },
}

/// One store near the asking one, in a [`Reply::NearbyStock`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearbyStore {
    /// The store's id.
    pub store_id: String,
    /// Its name, as a customer knows it.
    pub name: String,
    /// Units available to sell there (on hand minus reservations).
    pub available: i64,
    /// How far it is, in metres, when the cloud knows.
    #[serde(default)]
    pub distance_m: Option<u32>,
}

/// The cloud's answer to a [`Request`], on the device's `reply` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// Part of a range: consecutive items. A long range comes as several replies.
    Range {
        /// [`VERSION`].
        v: u32,
        /// The request answered.
        request_id: String,
        /// The items.
        batch: DownlinkBatch,
    },
    /// The range cannot be served (trimmed, or another epoch): ask for a snapshot.
    Unavailable {
        /// [`VERSION`].
        v: u32,
        /// The request answered.
        request_id: String,
        /// The stream.
        stream: DownlinkStream,
        /// Why, for the log.
        reason: String,
    },
    /// Where to download a snapshot.
    Snapshot {
        /// [`VERSION`].
        v: u32,
        /// The request answered.
        request_id: String,
        /// The snapshot.
        manifest: SnapshotManifest,
    },
    /// The product's stock in nearby stores, nearest first (at most 20).
    NearbyStock {
        /// [`VERSION`].
        v: u32,
        /// The request answered.
        request_id: String,
        /// The GTIN asked for.
        gtin: String,
        /// The stores.
        stores: Vec<NearbyStore>,
    },
}

/// Where a snapshot file is and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotManifest {
    /// HTTPS (plain HTTP only on loopback) URL of the snapshot file (the format of
    /// [`crate::store::snapshot`]).
    pub url: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// Per stream, the `(epoch, seq)` the file is consistent at; deltas after it
    /// apply on top. Equal to the file header's `streams`.
    pub streams: BTreeMap<String, StreamPosition>,
}

/// An order from fleet operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// [`VERSION`].
    pub v: u32,
    /// For the log.
    pub command_id: String,
    /// What to do.
    pub body: CommandBody,
}

/// What a [`Command`] asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommandBody {
    /// Reload these streams from a snapshot.
    Resync {
        /// The streams.
        streams: Vec<DownlinkStream>,
    },
}

/// A request to forget a customer, on the `erasure` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// The cloud's id of the request, echoed in the agent's `erasures` event.
    pub request_id: String,
    /// The customer to forget.
    pub customer_id: String,
}

/// Whether a device is connected: retained on the presence topic, and the Last
/// Will (`state: "offline"`) the broker publishes when the device vanishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presence {
    /// [`VERSION`].
    pub v: u32,
    /// The device.
    pub device_id: String,
    /// `"online"` or `"offline"`.
    pub state: String,
    /// The agent's version.
    pub agent_version: String,
    /// Why a device is offline: `"stopped"` (a clean stop, published by the agent)
    /// or `"connection_lost"` (the Last Will, published by the broker). Absent
    /// when online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Periodic health telemetry (QoS 0; losing one is harmless).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// [`VERSION`].
    pub v: u32,
    /// The device.
    pub device_id: String,
    /// When it was measured.
    pub at_ms: i64,
    /// Events waiting per uplink stream.
    pub outbox_depth: BTreeMap<String, i64>,
    /// Capture time of the oldest waiting event, over all streams.
    pub oldest_pending_ms: Option<i64>,
    /// Last applied seq per downlink stream.
    pub downlink_seq: BTreeMap<String, i64>,
    /// Dead letters kept here.
    pub dead_letters: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics::new(&Identity {
            tenant_id: "acme".into(),
            store_id: "s0001".into(),
            device_id: "acme.s0001.pos01".into(),
        })
    }

    #[test]
    fn every_topic_parses_back() {
        let t = topics();
        for s in DownlinkStream::ALL {
            assert_eq!(
                Topic::parse(&t.store_stream(s)),
                Some(Topic::Store {
                    tenant_id: "acme".into(),
                    store_id: "s0001".into(),
                    stream: s.as_str().into()
                })
            );
        }
        for k in DeviceDownlink::ALL {
            assert_eq!(
                Topic::parse(&t.device_down(k)),
                Some(Topic::DeviceDown {
                    device_id: "acme.s0001.pos01".into(),
                    kind: k
                })
            );
        }
        let ups = UplinkStream::ALL
            .into_iter()
            .map(DeviceUplink::Stream)
            .chain([DeviceUplink::Requests, DeviceUplink::Health]);
        for k in ups {
            assert_eq!(
                Topic::parse(&t.device_up(k)),
                Some(Topic::DeviceUp {
                    device_id: "acme.s0001.pos01".into(),
                    kind: k
                })
            );
        }
        assert_eq!(
            Topic::parse(&t.presence()),
            Some(Topic::Presence {
                device_id: "acme.s0001.pos01".into()
            })
        );
        assert_eq!(t.store_filter(), "sa/v1/store/acme/s0001/+");
        assert_eq!(t.device_down_filter(), "sa/v1/device/acme.s0001.pos01/down/+");
    }

    fn batch(v: u32, epoch: &str, seqs: &[i64]) -> DownlinkBatch {
        DownlinkBatch {
            v,
            stream: "products".into(),
            epoch: epoch.into(),
            items: seqs
                .iter()
                .map(|&seq| DownlinkItem {
                    seq,
                    op: Op::Delete,
                    entity: serde_json::json!({"gtin": "4006381333931"}),
                })
                .collect(),
        }
    }

    #[test]
    fn downlink_envelope_rules_beyond_the_types() {
        assert_eq!(batch(VERSION, "e1", &[1, 2, MAX_SEQ]).check(), Ok(()));
        assert_eq!(batch(VERSION, "e1", &[]).check(), Ok(()));
        let cases = [
            (batch(2, "e1", &[1]), "protocol version 2"),
            (batch(VERSION, "", &[1]), "epoch of 0 bytes"),
            (
                batch(VERSION, &"e".repeat(MAX_EPOCH_BYTES + 1), &[1]),
                "epoch of 129 bytes",
            ),
            (batch(VERSION, "e1", &[1, 0]), "items[1]: seq 0 outside"),
            (batch(VERSION, "e1", &[-7]), "items[0]: seq -7 outside"),
            (
                batch(VERSION, "e1", &[MAX_SEQ + 1]),
                "items[0]: seq 9007199254740992 outside",
            ),
        ];
        for (b, want) in cases {
            let err = b.check().unwrap_err();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
    }

    #[test]
    fn entity_shapes_are_bounded_and_the_error_names_the_path() {
        use serde_json::json;
        assert_eq!(
            check_entity_shape(&json!({"name": "x".repeat(MAX_TEXT_BYTES), "a": [[1]]})),
            Ok(())
        );
        let long =
            check_entity_shape(&json!({"lines": [{"sku": "1"}, {"sku": "y".repeat(MAX_TEXT_BYTES + 1)}]}));
        assert_eq!(
            long,
            Err(format!(
                "entity.lines[1].sku: a string of {} bytes, more than the limit of {MAX_TEXT_BYTES}",
                MAX_TEXT_BYTES + 1
            ))
        );
        let key = check_entity_shape(&json!({"k".repeat(MAX_TEXT_BYTES + 1): 1})).unwrap_err();
        assert!(key.starts_with("entity: a key of 4097 bytes"), "{key}");
        // Depth: MAX_ENTITY_DEPTH levels pass, one more does not.
        let mut deep = json!(1);
        for _ in 0..MAX_ENTITY_DEPTH {
            deep = json!([deep]);
        }
        assert_eq!(check_entity_shape(&deep), Ok(()));
        let deeper = json!({ "a": deep });
        let err = check_entity_shape(&deeper).unwrap_err();
        assert!(err.ends_with("nested more than 8 levels deep"), "{err}");
        assert!(err.starts_with("entity.a[0][0]"), "{err}");
    }

    #[test]
    fn foreign_topics_do_not_parse() {
        for bad in [
            "sa/v2/store/a/b/products",
            "sa/v1/device/x/up/nonsense",
            "sa/v1/device/x/down/ack/extra",
            "sa/v1store/a/b/c",
            "",
        ] {
            assert_eq!(Topic::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn nearby_stock_request_and_reply_are_the_documented_json() {
        let text = include_str!("../../../docs/protocol.md");
        let start = text.find("### Stock in nearby stores").unwrap();
        let examples: Vec<&str> = text[start..]
            .split("```json\n")
            .skip(1)
            .take(2)
            .map(|b| b.split("\n```").next().unwrap())
            .collect();
        let req: Request = serde_json::from_str(examples[0]).unwrap();
        assert_eq!(
            req.body,
            RequestBody::NearbyStock {
                gtin: "04006381333931".into()
            }
        );
        let reply: Reply = serde_json::from_str(examples[1]).unwrap();
        let Reply::NearbyStock {
            request_id, stores, ..
        } = reply
        else {
            panic!("not a nearby_stock reply")
        };
        assert_eq!(request_id, req.request_id);
        assert_eq!(stores.len(), 2);
        assert_eq!(stores[0].distance_m, Some(1200));
        assert_eq!(stores[1].distance_m, None);
        // Unknown fields are refused like everywhere in the protocol.
        assert!(
            serde_json::from_str::<NearbyStore>(r#"{"store_id":"a","name":"b","available":1,"x":2}"#)
                .is_err()
        );
    }

    #[test]
    fn presence_examples_are_the_documented_json() {
        let text = include_str!("../../../docs/protocol.md");
        let start = text.find("### Presence").unwrap();
        let block = text[start..].split("```json\n").nth(1).unwrap();
        let block = block.split("\n```").next().unwrap();
        let parsed: Vec<Presence> = block.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            (parsed[0].state.as_str(), parsed[0].reason.as_deref()),
            ("online", None)
        );
        assert_eq!(
            (parsed[1].state.as_str(), parsed[1].reason.as_deref()),
            ("offline", Some("stopped"))
        );
    }

    #[test]
    fn envelopes_have_the_documented_shape() {
        let req = Request {
            v: 1,
            request_id: "r1".into(),
            body: RequestBody::Range {
                stream: DownlinkStream::Products,
                epoch: "e".into(),
                from_seq: 4,
                to_seq: 9,
            },
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"v":1,"request_id":"r1","body":{"type":"range","stream":"products","epoch":"e","from_seq":4,"to_seq":9}})
        );
        let ack: Ack =
            serde_json::from_str(r#"{"v":1,"stream":"pos_transactions","acked_through":7}"#).unwrap();
        assert_eq!(ack.stream, UplinkStream::PosTransactions);
        let reply: Reply = serde_json::from_value(serde_json::json!({
            "type":"unavailable","v":1,"request_id":"r1","stream":"stock","reason":"trimmed"
        }))
        .unwrap();
        assert!(matches!(
            reply,
            Reply::Unavailable {
                stream: DownlinkStream::Stock,
                ..
            }
        ));
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value, nested a few levels, with the envelope's own field
        /// names among the keys so that near-misses are common.
        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,40}".prop_map(Value::String),
            ];
            leaf.prop_recursive(6, 64, 8, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    proptest::collection::btree_map(
                        prop_oneof![
                            Just("v".to_string()),
                            Just("stream".to_string()),
                            Just("epoch".to_string()),
                            Just("items".to_string()),
                            Just("seq".to_string()),
                            Just("op".to_string()),
                            Just("entity".to_string()),
                            "[a-z_]{1,8}",
                        ],
                        inner,
                        0..6
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Everything the engine does with a payload before the store sees it
        /// (engine.rs, `on_message`), for every downlink message type. Returns
        /// the batch when it would be applied.
        fn receive(payload: &[u8]) -> Option<DownlinkBatch> {
            let _ = serde_json::from_slice::<Ack>(payload);
            let _ = serde_json::from_slice::<Reply>(payload);
            let _ = serde_json::from_slice::<Command>(payload);
            let _ = serde_json::from_slice::<SnapshotManifest>(payload);
            let _ = serde_json::from_slice::<ErasureRequest>(payload);
            let batch = serde_json::from_slice::<DownlinkBatch>(payload).ok()?;
            batch.check().ok()?;
            for item in &batch.items {
                let _ = check_entity_shape(&item.entity);
            }
            Some(batch)
        }

        /// A batch that was accepted is accepted again, equal, after a round trip:
        /// what the agent stores is what it was sent.
        fn stable(batch: DownlinkBatch) {
            let again = serde_json::to_vec(&batch).unwrap();
            assert_eq!(receive(&again), Some(batch));
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                if let Some(b) = receive(&bytes) {
                    stable(b);
                }
            }

            #[test]
            fn arbitrary_json_never_panics(value in json()) {
                if let Some(b) = receive(&serde_json::to_vec(&value).unwrap()) {
                    stable(b);
                }
            }

            #[test]
            fn a_valid_envelope_with_any_field_replaced_is_judged_consistently(
                field in prop_oneof![Just("v"), Just("stream"), Just("epoch"), Just("items")],
                seq in any::<i64>(),
                value in json(),
            ) {
                let mut env = serde_json::json!({
                    "v": VERSION,
                    "stream": "stock",
                    "epoch": "e1",
                    "items": [{"seq": seq, "op": "upsert", "entity": {"gtin": "1"}}],
                });
                let good_seq = (1..=MAX_SEQ).contains(&seq);
                prop_assert_eq!(receive(&serde_json::to_vec(&env).unwrap()).is_some(), good_seq);
                env[field] = value;
                if let Some(b) = receive(&serde_json::to_vec(&env).unwrap()) {
                    prop_assert_eq!(b.v, VERSION);
                    prop_assert!(!b.epoch.is_empty() && b.epoch.len() <= MAX_EPOCH_BYTES);
                    prop_assert!(b.items.iter().all(|i| (1..=MAX_SEQ).contains(&i.seq)));
                    stable(b);
                }
            }

            #[test]
            fn arbitrary_topics_never_panic(topic in "(sa/v1/|[a-z/+#]){0,12}.{0,30}") {
                // Reading a topic loses nothing: it is written back as it came.
                match Topic::parse(&topic) {
                    Some(Topic::Store { tenant_id, store_id, stream }) => {
                        prop_assert_eq!(format!("{TOPIC_ROOT}/store/{tenant_id}/{store_id}/{stream}"), topic);
                    }
                    Some(Topic::Presence { device_id }) => {
                        prop_assert_eq!(format!("{TOPIC_ROOT}/device/{device_id}/presence"), topic);
                    }
                    _ => {}
                }
            }
        }
    }
}
