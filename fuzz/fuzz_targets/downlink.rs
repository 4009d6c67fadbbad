//! Fuzzes what the agent reads from the cloud (`store_agent::sync::protocol`): the
//! payload as JSON into `DownlinkBatch`, `Ack`, `Reply`, `Command`,
//! `SnapshotManifest` and `ErasureRequest`, the batch checks (`DownlinkBatch::check`,
//! `check_entity_shape` on every item's entity), and `Topic::parse` on the input as
//! lossy UTF-8. The same logic as the proptest `sync::protocol::tests::property`,
//! coverage-guided.
//!
//! Asserted besides "no panic":
//! * a batch that passes `check()` is written again (`serde_json::to_vec`), reads
//!   back equal and passes `check()` again, each entity with the same
//!   `check_entity_shape` verdict: what the agent stores is what it was sent;
//! * every other message that reads also survives a round trip unchanged;
//! * a topic that parses is written back exactly as it came (store, presence,
//!   device down/up topics).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use store_agent::sync::protocol::{
    Ack, Command, DownlinkBatch, ErasureRequest, Reply, SnapshotManifest, TOPIC_ROOT, Topic,
    check_entity_shape,
};

/// Reads `T`; when it reads, asserts that writing it and reading it again gives
/// the same value.
fn round_trip<T>(payload: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(payload).ok()?;
    let again = serde_json::to_vec(&value).expect("a message that read serialises");
    let back: T = serde_json::from_slice(&again)
        .unwrap_or_else(|e| panic!("{} does not read back: {e}", String::from_utf8_lossy(&again)));
    assert_eq!(back, value, "round trip changed the message");
    Some(value)
}

fn check_batch(payload: &[u8]) {
    let Ok(batch) = serde_json::from_slice::<DownlinkBatch>(payload) else {
        return;
    };
    let verdict = batch.check();
    let shapes: Vec<_> = batch
        .items
        .iter()
        .map(|i| check_entity_shape(&i.entity))
        .collect();
    if verdict.is_err() {
        return;
    }
    let again = serde_json::to_vec(&batch).expect("an accepted batch serialises");
    let back: DownlinkBatch = serde_json::from_slice(&again).unwrap_or_else(|e| {
        panic!(
            "accepted batch does not read back: {e}: {}",
            String::from_utf8_lossy(&again)
        )
    });
    assert_eq!(back, batch, "round trip changed an accepted batch");
    assert_eq!(back.check(), Ok(()));
    let shapes_again: Vec<_> = back.items.iter().map(|i| check_entity_shape(&i.entity)).collect();
    assert_eq!(shapes_again, shapes);
}

fn check_topic(topic: &str) {
    let written = match Topic::parse(topic) {
        None => return,
        Some(Topic::Store {
            tenant_id,
            store_id,
            stream,
        }) => format!("{TOPIC_ROOT}/store/{tenant_id}/{store_id}/{stream}"),
        Some(Topic::Presence { device_id }) => format!("{TOPIC_ROOT}/device/{device_id}/presence"),
        Some(Topic::DeviceDown { device_id, kind }) => {
            format!("{TOPIC_ROOT}/device/{device_id}/down/{}", kind.as_str())
        }
        Some(Topic::DeviceUp { device_id, kind }) => {
            format!("{TOPIC_ROOT}/device/{device_id}/up/{}", kind.as_str())
        }
    };
    assert_eq!(written, topic);
}

fuzz_target!(|data: &[u8]| {
    check_batch(data);
    let _ = round_trip::<Ack>(data);
    let _ = round_trip::<Reply>(data);
    let _ = round_trip::<Command>(data);
    let _ = round_trip::<SnapshotManifest>(data);
    let _ = round_trip::<ErasureRequest>(data);
    check_topic(&String::from_utf8_lossy(data));
});
