//! Unit tests of the reference cloud that need no broker: the database rules
//! directly, and the message handling through a test sink instead of MQTT.

use super::db::{self, RangeCheck};
use super::mqtt::{self, PublishJob};
use super::snapshots::{self, Snapshots};
use super::*;
use crate::events::{DownlinkStream, UplinkStream};
use crate::store::snapshot::{ImportExpectations, SnapshotHeader};
use crate::store::{KeyedHasher, Store, StoreOptions};
use crate::sync::protocol::{
    Ack, DownlinkItem, MAX_PAYLOAD_BYTES, Reply, Request, RequestBody, UplinkBatch, UplinkEvent,
};
use serde_json::json;
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::BufRead;
use tokio::task::JoinSet;

const TENANT: &str = "acme";
const STORE: &str = "s0001";
const DEVICE: &str = "acme.s0001.pos01";

fn spec() -> SampleSpec {
    let mut s = SampleSpec::new(7, 40, 25);
    s.reference_time_ms = 1_790_000_000_000;
    s
}

fn hasher() -> KeyedHasher {
    sample::demo_hasher()
}

/// A cloud database with the small sample loaded, and its snapshot service.
fn cloud_db(dir: &Path) -> (rusqlite::Connection, Snapshots) {
    let db_path = dir.join("cloud.db");
    let snapshot_dir = dir.join("snapshots");
    let mut conn = db::open(&db_path).unwrap();
    let base =
        snapshots::prepare_base(&mut conn, &BaseData::sample(spec()), &snapshot_dir, TENANT, STORE).unwrap();
    let service = Snapshots::new(snapshot_dir, db_path, TENANT.into(), STORE.into(), base);
    service.set_url_base("http://127.0.0.1:9".into());
    (conn, service)
}

fn event(seq: i64, key: &str) -> UplinkEvent {
    UplinkEvent {
        seq,
        idempotency_key: key.into(),
        captured_at_ms: 1_000 + seq,
        kind: "pos_transaction".into(),
        payload: json!({"tx": seq}),
    }
}

fn batch(device: &str, events: Vec<UplinkEvent>) -> UplinkBatch {
    UplinkBatch {
        v: VERSION,
        device_id: device.into(),
        stream: UplinkStream::PosTransactions,
        events,
    }
}

#[test]
fn high_water_mark_follows_gaps_and_ignores_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db::open(&dir.path().join("cloud.db")).unwrap();
    let store = |conn: &mut rusqlite::Connection, device: &str, events| {
        db::store_uplink(conn, device, &batch(device, events), 5).unwrap()
    };

    let s = store(
        &mut conn,
        DEVICE,
        vec![event(1, "k1"), event(2, "k2"), event(4, "k4")],
    );
    assert_eq!(
        (s.stored, s.duplicates, s.acked_through),
        (3, 0, 2),
        "4 waits behind the gap at 3"
    );

    // A redelivery: nothing new, still acked at the same mark.
    let s = store(&mut conn, DEVICE, vec![event(1, "k1"), event(2, "k2")]);
    assert_eq!((s.stored, s.duplicates, s.acked_through), (0, 2, 2));

    // The gap fills: the mark jumps over everything stored behind it.
    let s = store(
        &mut conn,
        DEVICE,
        vec![event(3, "k3"), event(4, "k4"), event(5, "k5")],
    );
    assert_eq!((s.stored, s.duplicates, s.acked_through), (2, 1, 5));

    // A reused seq with another key, and seq 0, are refused and change nothing.
    let s = store(&mut conn, DEVICE, vec![event(5, "other"), event(0, "zero")]);
    assert_eq!((s.stored, s.refused, s.acked_through), (0, 2, 5));

    // Another device's stream has its own seqs and mark.
    let s = store(&mut conn, "acme.s0001.pos02", vec![event(1, "p2-1")]);
    assert_eq!(s.acked_through, 1);

    assert_eq!(db::acked_through(&conn, DEVICE, "pos_transactions").unwrap(), 5);
    assert_eq!(db::acked_through(&conn, DEVICE, "returns").unwrap(), 0);
    assert_eq!(db::received_count(&conn, DEVICE).unwrap(), 5);
    let events = db::received_events(&conn, DEVICE, "pos_transactions").unwrap();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(
        events[2],
        ReceivedEvent {
            seq: 3,
            idempotency_key: "k3".into(),
            kind: "pos_transaction".into(),
            captured_at_ms: 1_003,
            payload: json!({"tx": 3}),
        }
    );
}

/// A product entity with `filler` bytes of attributes, to fill messages.
fn big_product(i: u64, filler: usize) -> Value {
    json!({
        "gtin": sample::product_gtin(99, i),
        "sku": format!("SKU-{i}"),
        "name": format!("Product {i}"),
        "price_minor": 1999,
        "currency": "EUR",
        "attributes": {"notes": "x".repeat(filler)},
    })
}

#[test]
fn range_replies_split_under_the_size_limit_and_cover_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db::open(&dir.path().join("cloud.db")).unwrap();
    let items: Vec<(Op, Value)> = (0..60).map(|i| (Op::Upsert, big_product(i, 9_000))).collect();
    let (epoch, published) = db::append(&mut conn, DownlinkStream::Products, &items, 1).unwrap();
    assert_eq!(epoch, "e1");
    assert_eq!(published.last().unwrap().seq, 60);

    // 3..=58 of a 60-item log; a to_seq beyond the end is cut at the end.
    assert_eq!(
        db::check_range(&conn, DownlinkStream::Products, "e1", 3, 58).unwrap(),
        RangeCheck::Serve { to_seq: 58 }
    );
    assert_eq!(
        db::check_range(&conn, DownlinkStream::Products, "e1", 3, 999).unwrap(),
        RangeCheck::Serve { to_seq: 60 }
    );
    let logged = db::read_log(&conn, DownlinkStream::Products, "e1", 3, 58, 1000).unwrap();
    let replies = mqtt::range_replies("r1", DownlinkStream::Products, "e1", logged).unwrap();
    assert!(
        replies.len() >= 4,
        "56 items of ~9 kB need several messages, got {}",
        replies.len()
    );
    let mut seqs = Vec::new();
    for reply in &replies {
        let size = serde_json::to_vec(reply).unwrap().len();
        assert!(size <= MAX_PAYLOAD_BYTES, "a reply of {size} bytes");
        let Reply::Range {
            request_id, batch, ..
        } = reply
        else {
            panic!("not a range reply: {reply:?}");
        };
        assert_eq!(
            (request_id.as_str(), batch.epoch.as_str(), batch.stream.as_str()),
            ("r1", "e1", "products")
        );
        seqs.extend(batch.items.iter().map(|i| i.seq));
    }
    assert_eq!(seqs, (3..=58).collect::<Vec<_>>());
    // Full messages: the split is not wasteful (each reply but the last is over half full).
    for reply in &replies[..replies.len() - 1] {
        assert!(serde_json::to_vec(reply).unwrap().len() > MAX_PAYLOAD_BYTES / 2);
    }

    // Store batches follow the same limit, and an item that can never fit is refused.
    let batches = mqtt::store_batches(
        DownlinkStream::Products,
        "e1",
        db::read_log(&conn, DownlinkStream::Products, "e1", 1, 60, 1000).unwrap(),
    )
    .unwrap();
    assert!(
        batches
            .iter()
            .all(|b| serde_json::to_vec(b).unwrap().len() <= MAX_PAYLOAD_BYTES)
    );
    assert_eq!(batches.iter().map(|b| b.items.len()).sum::<usize>(), 60);
    let huge = DownlinkItem {
        seq: 1,
        op: Op::Upsert,
        entity: big_product(1, MAX_PAYLOAD_BYTES),
    };
    let err = mqtt::store_batches(DownlinkStream::Products, "e1", vec![huge]).unwrap_err();
    assert!(err.to_string().contains("snapshots"), "{err}");
}

#[test]
fn ranges_are_unavailable_when_trimmed_beyond_the_end_or_of_another_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db::open(&dir.path().join("cloud.db")).unwrap();
    let stock = DownlinkStream::Stock;
    let item = |n: i64| {
        (
            Op::Upsert,
            json!({"gtin": "4006381333931", "on_hand": n, "updated_at_ms": n}),
        )
    };
    db::append(&mut conn, stock, &(1..=10).map(item).collect::<Vec<_>>(), 1).unwrap();
    let unavailable = |check: RangeCheck, needle: &str| match check {
        RangeCheck::Unavailable(reason) => assert!(reason.contains(needle), "{reason:?} lacks {needle:?}"),
        other => panic!("expected unavailable ({needle}), got {other:?}"),
    };

    assert_eq!(db::trim_log(&mut conn, stock, 5).unwrap(), 5);
    unavailable(
        db::check_range(&conn, stock, "e1", 3, 8).unwrap(),
        "trimmed through seq 5",
    );
    unavailable(db::check_range(&conn, stock, "e1", 5, 8).unwrap(), "trimmed");
    assert_eq!(
        db::check_range(&conn, stock, "e1", 6, 8).unwrap(),
        RangeCheck::Serve { to_seq: 8 }
    );
    assert_eq!(db::read_log(&conn, stock, "e1", 1, 10, 100).unwrap().len(), 5);
    unavailable(db::check_range(&conn, stock, "e0", 6, 8).unwrap(), "epoch e1 now");
    unavailable(
        db::check_range(&conn, stock, "e1", 11, 12).unwrap(),
        "ends at seq 10",
    );
    unavailable(
        db::check_range(&conn, DownlinkStream::Orders, "e1", 1, 2).unwrap(),
        "nothing",
    );
    // Trimming past the end stops at the end.
    assert_eq!(db::trim_log(&mut conn, stock, 99).unwrap(), 10);

    // A new epoch: the old one is over, seqs restart, the log is empty.
    assert_eq!(db::new_epoch(&mut conn, stock).unwrap(), "e2");
    unavailable(
        db::check_range(&conn, stock, "e1", 11, 11).unwrap(),
        "epoch e2 now",
    );
    let (epoch, items) = db::append(&mut conn, stock, &[item(11)], 2).unwrap();
    assert_eq!((epoch.as_str(), items[0].seq), ("e2", 1));
    assert_eq!(
        db::check_range(&conn, stock, "e2", 1, 1).unwrap(),
        RangeCheck::Serve { to_seq: 1 }
    );
    // The entity state survived the epoch: it is the new epoch's snapshot.
    let gtin14 = "04006381333931";
    assert_eq!(
        db::entity_in_state(&conn, stock, gtin14).unwrap().unwrap()["on_hand"],
        json!(11)
    );
}

fn header_of(path: &Path) -> SnapshotHeader {
    let file = std::fs::File::open(path).unwrap();
    let first = std::io::BufReader::new(file).lines().next().unwrap().unwrap();
    serde_json::from_str(&first).unwrap()
}

#[test]
fn base_is_served_until_a_delta_then_subset_snapshots_reimport_to_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut conn, service) = cloud_db(dir.path());
    let snapshot_dir = dir.path().join("snapshots");

    // Untouched: every request within the base streams gets the base file at e1/0.
    let base = service.snapshot_for(None).unwrap();
    assert!(base.file.starts_with("base-"));
    assert_eq!(
        service.snapshot_for(Some(&[DownlinkStream::Stock])).unwrap(),
        base
    );
    let header = header_of(&snapshot_dir.join(&base.file));
    assert_eq!(
        (header.tenant_id.as_str(), header.store_id.as_str()),
        (TENANT, STORE)
    );
    assert!(header.streams.values().all(|p| p.epoch == "e1" && p.seq == 0));
    assert_eq!(header.streams.len(), DownlinkStream::ALL.len());
    let bytes = std::fs::read(snapshot_dir.join(&base.file)).unwrap();
    assert_eq!(bytes.len() as u64, base.size);
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), base.sha256);

    // Deltas: a price, a stock count, a removed product, a new setting.
    let products = db::entities(&conn, DownlinkStream::Products).unwrap();
    let mut repriced = products[0].clone();
    repriced["price_minor"] = json!(12_345);
    let removed_gtin = products[1]["gtin"].as_str().unwrap().to_string();
    db::append(
        &mut conn,
        DownlinkStream::Products,
        &[
            (Op::Upsert, repriced.clone()),
            (Op::Delete, json!({"gtin": removed_gtin})),
        ],
        2,
    )
    .unwrap();
    let mut counted = db::entities(&conn, DownlinkStream::Stock).unwrap()[0].clone();
    counted["on_hand"] = json!(777);
    db::append(
        &mut conn,
        DownlinkStream::Stock,
        &[(Op::Upsert, counted.clone())],
        3,
    )
    .unwrap();
    db::ensure_position(&conn, DownlinkStream::Config).unwrap();
    db::append(
        &mut conn,
        DownlinkStream::Config,
        &[(Op::Upsert, json!({"key": "receipt.footer", "value": "Thanks!"}))],
        4,
    )
    .unwrap();
    // Entities the agent refuses are published (tests do that) but left out of
    // snapshots: an unknown field, and a GTIN that is no GTIN.
    db::append(
        &mut conn,
        DownlinkStream::Config,
        &[(Op::Upsert, json!({"key": "x", "bogus": 1}))],
        5,
    )
    .unwrap();
    let mut bad_gtin = repriced.clone();
    bad_gtin["gtin"] = json!("123");
    db::append(&mut conn, DownlinkStream::Products, &[(Op::Upsert, bad_gtin)], 6).unwrap();

    let wanted = [
        DownlinkStream::Products,
        DownlinkStream::Stock,
        DownlinkStream::Config,
    ];
    let snap = service.snapshot_for(Some(&wanted)).unwrap();
    assert_ne!(snap.file, base.file);
    let path = snapshot_dir.join(&snap.file);
    let header = header_of(&path);
    let expected: BTreeMap<String, (String, i64)> = [("config", 2), ("products", 3), ("stock", 1)]
        .into_iter()
        .map(|(s, seq)| (s.to_string(), ("e1".to_string(), seq)))
        .collect();
    let got: BTreeMap<String, (String, i64)> = header
        .streams
        .iter()
        .map(|(s, p)| (s.clone(), (p.epoch.clone(), p.seq)))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(header.streams, snap.streams);
    // The same request at the same positions reuses the file; the base no longer serves.
    assert_eq!(service.snapshot_for(Some(&wanted)).unwrap(), snap);
    assert_ne!(
        service
            .snapshot_for(Some(&[DownlinkStream::Customers]))
            .unwrap()
            .file,
        base.file
    );

    // The agent imports it and then holds exactly the cloud's state of those streams.
    let agent_db = dir.path().join("agent.db");
    let agent = Store::open(StoreOptions::new(&agent_db, hasher())).unwrap();
    let expect = ImportExpectations {
        tenant_id: Some(TENANT.into()),
        store_id: Some(STORE.into()),
    };
    agent.import_snapshot_blocking(&path, expect).unwrap();
    agent.close();
    let check = crate::store::open_read_only(&agent_db).unwrap();
    let agent_prices: BTreeMap<String, i64> = check
        .prepare("SELECT gtin, price_minor FROM products")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let cloud_prices: BTreeMap<String, i64> = db::entities(&conn, DownlinkStream::Products)
        .unwrap()
        .iter()
        .filter(|p| super::keys::fits_schema(DownlinkStream::Products, p).is_ok())
        .map(|p| {
            (
                entity_key(DownlinkStream::Products, p).unwrap(),
                p["price_minor"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(agent_prices, cloud_prices);
    assert_eq!(cloud_prices.len(), 24, "25 sample products, one removed");
    let repriced_key = entity_key(DownlinkStream::Products, &repriced).unwrap();
    assert_eq!(agent_prices[&repriced_key], 12_345);
    let agent_stock: BTreeMap<String, i64> = check
        .prepare("SELECT gtin, on_hand FROM stock")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let cloud_stock: BTreeMap<String, i64> = db::entities(&conn, DownlinkStream::Stock)
        .unwrap()
        .iter()
        .map(|s| {
            (
                entity_key(DownlinkStream::Stock, s).unwrap(),
                s["on_hand"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(agent_stock, cloud_stock);
    assert_eq!(
        agent_stock[&entity_key(DownlinkStream::Stock, &counted).unwrap()],
        777
    );
    let footer: String = check
        .query_row(
            "SELECT value FROM cloud_config WHERE key = 'receipt.footer'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(footer, "\"Thanks!\"");
    let configs: i64 = check
        .query_row("SELECT count(*) FROM cloud_config", [], |r| r.get(0))
        .unwrap();
    assert_eq!(configs, 1, "the entity that does not fit the schema is left out");
    let positions: BTreeMap<String, (String, i64)> = check
        .prepare("SELECT stream, epoch, last_seq FROM downlink_streams")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(positions, expected);
}

#[test]
fn keys_of_base_records_match_keys_of_published_entities() {
    let dir = tempfile::tempdir().unwrap();
    let (conn, service) = cloud_db(dir.path());
    let base = service.snapshot_for(None).unwrap();
    let file = std::fs::File::open(dir.path().join("snapshots").join(&base.file)).unwrap();
    let mut seen = 0;
    let mut tags = BTreeMap::new();
    for line in std::io::BufReader::new(file).lines().skip(1) {
        let line = line.unwrap();
        let record: crate::store::snapshot::SnapshotRecord = serde_json::from_str(&line).unwrap();
        let Some((stream, key, json)) = super::keys::record_parts(&record, &line) else {
            continue;
        };
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(entity_key(stream, &value).as_deref(), Some(key.as_str()));
        assert_eq!(
            db::entity_in_state(&conn, stream, &key).unwrap(),
            Some(value.clone())
        );
        // The line the snapshot writer makes from the stored JSON is the same record.
        let tag = super::keys::record_tag(stream).unwrap();
        tags.insert(stream, tag);
        let remade: crate::store::snapshot::SnapshotRecord =
            serde_json::from_str(&format!("{{\"{tag}\":{json}}}")).unwrap();
        assert_eq!(remade, record);
        seen += 1;
    }
    assert!(seen > 100);
    assert_eq!(tags.len(), 8, "every sample stream's tag was checked: {tags:?}");
    // A record written with spaces still yields its entity's JSON.
    let spaced = r#"{ "config" : {"key": "a", "value": [1, 2]} }"#;
    let record: crate::store::snapshot::SnapshotRecord = serde_json::from_str(spaced).unwrap();
    let (stream, key, json) = super::keys::record_parts(&record, spaced).unwrap();
    assert_eq!((stream, key.as_str()), (DownlinkStream::Config, "a"));
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        json!({"key": "a", "value": [1, 2]})
    );
    assert_eq!(
        normalize_key(DownlinkStream::Stock, "4006381333931"),
        "04006381333931"
    );
    assert_eq!(
        normalize_key(DownlinkStream::Wishlists, "C00000001/4006381333931"),
        "C00000001/04006381333931"
    );
}

/// A cloud without MQTT: the real handlers, publishing into a channel.
struct Rig {
    _dir: tempfile::TempDir,
    shared: Arc<Shared>,
    sent: mpsc::Receiver<(String, Vec<u8>)>,
}

impl Rig {
    fn new(devices: Option<&[&str]>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (conn, service) = cloud_db(dir.path());
        let (tx, sent) = mpsc::channel(10_000);
        let (jobs, jobs_rx) = mpsc::channel(8);
        let shared = Arc::new(Shared {
            tenant_id: TENANT.into(),
            store_id: STORE.into(),
            devices: devices.map(|d| d.iter().map(|s| s.to_string()).collect()),
            db: db::Db::start(conn).unwrap(),
            sink: Sink::Test(tx),
            faults: Mutex::new(FaultState::default()),
            stats: Stats::default(),
            snapshots: service,
            run: watch::Sender::new(RunState::Running),
            ready: watch::Sender::new(false),
            jobs,
        });
        tokio::spawn(mqtt::publisher(shared.clone(), jobs_rx));
        Rig {
            _dir: dir,
            shared,
            sent,
        }
    }

    async fn deliver(&self, topic: &str, payload: &[u8]) {
        let mut side = JoinSet::new();
        mqtt::handle(&self.shared, topic, payload, &mut side).await;
        while side.join_next().await.is_some() {}
    }

    /// What was published so far, as (topic, JSON).
    fn take(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        while let Ok((topic, payload)) = self.sent.try_recv() {
            out.push((topic, serde_json::from_slice(&payload).unwrap()));
        }
        out
    }

    async fn publish(&self, stream: DownlinkStream, items: Vec<(Op, Value)>) -> Vec<i64> {
        let (done, result) = oneshot::channel();
        self.shared
            .jobs
            .send(PublishJob::Publish { stream, items, done })
            .await
            .unwrap();
        result.await.unwrap().unwrap()
    }
}

const UP: &str = "sa/v1/device/acme.s0001.pos01/up/pos_transactions";
const ACK: &str = "sa/v1/device/acme.s0001.pos01/down/ack";
const REPLY: &str = "sa/v1/device/acme.s0001.pos01/down/reply";

fn ack(through: i64) -> Value {
    serde_json::to_value(Ack {
        v: VERSION,
        stream: UplinkStream::PosTransactions,
        acked_through: through,
    })
    .unwrap()
}

#[tokio::test]
async fn bad_messages_are_counted_and_good_ones_still_acked() {
    let mut rig = Rig::new(Some(&[DEVICE]));
    for (topic, payload) in [
        (UP, &b"not json"[..]),
        (
            UP,
            br#"{"v":1,"device_id":"acme.s0001.pos01","stream":"pos_transactions"}"#,
        ),
        (
            UP,
            br#"{"v":2,"device_id":"acme.s0001.pos01","stream":"pos_transactions","events":[]}"#,
        ),
        // Another device's name in the batch, the wrong stream, an unknown device.
        (
            UP,
            &serde_json::to_vec(&batch("acme.s0001.pos09", vec![event(1, "a")])).unwrap()[..],
        ),
        (
            "sa/v1/device/acme.s0001.pos01/up/returns",
            &serde_json::to_vec(&batch(DEVICE, vec![event(1, "b")])).unwrap()[..],
        ),
        (
            "sa/v1/device/acme.s0001.pos09/up/pos_transactions",
            &serde_json::to_vec(&batch("acme.s0001.pos09", vec![event(1, "c")])).unwrap()[..],
        ),
        ("sa/v1/device/acme.s0001.pos01/up/requests", &b"{}"[..]),
        ("sa/v1/device/acme.s0001.pos01/presence", &b"[1,2]"[..]),
        ("sa/v1/elsewhere", &b"{}"[..]),
    ] {
        rig.deliver(topic, payload).await;
    }
    assert_eq!(rig.shared.stats.bad.load(Ordering::Relaxed), 9);
    assert!(
        rig.take().is_empty(),
        "nothing is acked or answered for a bad message"
    );

    // The cloud goes on: a good batch is stored and acked, a redelivery acked again.
    let good = serde_json::to_vec(&batch(DEVICE, vec![event(1, "k1"), event(2, "k2")])).unwrap();
    rig.deliver(UP, &good).await;
    rig.deliver(UP, &good).await;
    assert_eq!(
        rig.take(),
        vec![(ACK.to_string(), ack(2)), (ACK.to_string(), ack(2))]
    );
    assert_eq!(rig.shared.stats.duplicates.load(Ordering::Relaxed), 2);

    // Presence and health of a served device are recorded.
    let presence = Presence {
        v: VERSION,
        device_id: DEVICE.into(),
        state: "online".into(),
        agent_version: "0.1.0".into(),
        reason: None,
    };
    rig.deliver(
        "sa/v1/device/acme.s0001.pos01/presence",
        &serde_json::to_vec(&presence).unwrap(),
    )
    .await;
    let device = DEVICE.to_string();
    let recorded = rig
        .shared
        .db
        .call(move |c| db::presence(c, &device))
        .await
        .unwrap();
    assert_eq!(recorded, Some(presence));
}

#[tokio::test]
async fn held_acks_are_released_at_the_current_mark_and_delayed_acks_arrive() {
    let mut rig = Rig::new(None);
    rig.shared.fault_state().faults.hold_acks = true;
    for n in 1..=3 {
        let b = serde_json::to_vec(&batch(DEVICE, vec![event(n, &format!("k{n}"))])).unwrap();
        rig.deliver(UP, &b).await;
    }
    assert!(rig.take().is_empty());
    let held = {
        let mut state = rig.shared.fault_state();
        state.faults.hold_acks = false;
        std::mem::take(&mut state.held)
    };
    mqtt::release_acks(&rig.shared, held).await.unwrap();
    assert_eq!(rig.take(), vec![(ACK.to_string(), ack(3))]);

    rig.shared.fault_state().faults.ack_delay = Duration::from_millis(50);
    let b = serde_json::to_vec(&batch(DEVICE, vec![event(4, "k4")])).unwrap();
    rig.deliver(UP, &b).await;
    assert!(rig.take().is_empty(), "not before the delay");
    let (topic, payload) = tokio::time::timeout(Duration::from_secs(5), rig.sent.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (topic.as_str(), serde_json::from_slice::<Value>(&payload).unwrap()),
        (ACK, ack(4))
    );
}

#[tokio::test]
async fn published_changes_fault_injection_and_requests() {
    let mut rig = Rig::new(None);
    let topic = "sa/v1/store/acme/s0001/config";
    let setting = |n: i64| (Op::Upsert, json!({"key": format!("k{n}"), "value": n}));

    // Seqs start at 1 in e1; one batch for both items.
    assert_eq!(
        rig.publish(DownlinkStream::Config, vec![setting(1), setting(2)])
            .await,
        [1, 2]
    );
    let sent = rig.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, topic);
    assert_eq!(sent[0].1["epoch"], "e1");
    assert_eq!(sent[0].1["items"].as_array().unwrap().len(), 2);

    // Dropped: logged, not sent. Duplicated: sent twice.
    rig.shared.fault_state().faults.drop_next_downlink = 1;
    assert_eq!(rig.publish(DownlinkStream::Config, vec![setting(3)]).await, [3]);
    assert!(rig.take().is_empty());
    assert_eq!(rig.shared.fault_state().faults.drop_next_downlink, 0);
    rig.shared.fault_state().faults.duplicate_downlink = true;
    assert_eq!(rig.publish(DownlinkStream::Config, vec![setting(4)]).await, [4]);
    let sent = rig.take();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1]);
    rig.shared.fault_state().faults.duplicate_downlink = false;

    // The agent fills the gap with a range request.
    let request = |body| {
        serde_json::to_vec(&Request {
            v: VERSION,
            request_id: "r1".into(),
            body,
        })
        .unwrap()
    };
    let requests = "sa/v1/device/acme.s0001.pos01/up/requests";
    rig.deliver(
        requests,
        &request(RequestBody::Range {
            stream: DownlinkStream::Config,
            epoch: "e1".into(),
            from_seq: 3,
            to_seq: 3,
        }),
    )
    .await;
    let sent = rig.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, REPLY);
    let reply: Reply = serde_json::from_value(sent[0].1.clone()).unwrap();
    let Reply::Range { batch, .. } = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(batch.items.len(), 1);
    assert_eq!(batch.items[0].seq, 3);
    assert_eq!(batch.items[0].entity, json!({"key": "k3", "value": 3}));

    // Another epoch: unavailable, then a snapshot manifest for the stream.
    rig.deliver(
        requests,
        &request(RequestBody::Range {
            stream: DownlinkStream::Config,
            epoch: "e7".into(),
            from_seq: 1,
            to_seq: 2,
        }),
    )
    .await;
    let reply: Reply = serde_json::from_value(rig.take().remove(0).1).unwrap();
    assert!(
        matches!(
            reply,
            Reply::Unavailable {
                stream: DownlinkStream::Config,
                ..
            }
        ),
        "{reply:?}"
    );
    rig.deliver(
        requests,
        &request(RequestBody::Snapshot {
            streams: vec![DownlinkStream::Config, DownlinkStream::Erasure],
        }),
    )
    .await;
    let reply: Reply = serde_json::from_value(rig.take().remove(0).1).unwrap();
    let Reply::Snapshot {
        manifest, request_id, ..
    } = reply
    else {
        panic!("{reply:?}")
    };
    assert_eq!(request_id, "r1");
    assert!(manifest.url.starts_with("http://127.0.0.1:9/snapshots/snapshot-"));
    assert_eq!(manifest.streams["config"].seq, 4);
    assert_eq!(manifest.streams["erasure"].seq, 0);
    let name = manifest.url.rsplit('/').next().unwrap();
    let bytes = std::fs::read(rig.shared.snapshots.dir().join(name)).unwrap();
    assert_eq!(bytes.len() as u64, manifest.size);
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), manifest.sha256);

    // An entity too large for a message is refused before it takes a seq.
    let huge = (
        Op::Upsert,
        json!({"key": "big", "value": "x".repeat(MAX_PAYLOAD_BYTES)}),
    );
    let (done, result) = oneshot::channel();
    rig.shared
        .jobs
        .send(PublishJob::Publish {
            stream: DownlinkStream::Config,
            items: vec![huge],
            done,
        })
        .await
        .unwrap();
    assert!(result.await.unwrap().is_err());
    assert_eq!(rig.publish(DownlinkStream::Config, vec![setting(5)]).await, [5]);
}

#[test]
fn fits_schema_applies_the_agents_checks() {
    let product =
        json!({"gtin": "4006381333931", "sku": "S", "name": "N", "price_minor": 100, "currency": "EUR"});
    assert_eq!(fits_schema(DownlinkStream::Products, &product), Ok(()));
    let mut bad = product.clone();
    bad["gtin"] = json!("4006381333932");
    assert!(
        fits_schema(DownlinkStream::Products, &bad)
            .unwrap_err()
            .contains("gtin")
    );
    bad = product.clone();
    bad["currency"] = json!("EURO");
    assert!(
        fits_schema(DownlinkStream::Products, &bad)
            .unwrap_err()
            .contains("currency")
    );
    bad = product.clone();
    bad["colour"] = json!("red");
    assert!(
        fits_schema(DownlinkStream::Products, &bad)
            .unwrap_err()
            .contains("colour")
    );
    // The scratch database stays empty: the same entity checks again.
    assert_eq!(fits_schema(DownlinkStream::Products, &product), Ok(()));
    assert_eq!(
        fits_schema(
            DownlinkStream::Erasure,
            &json!({"request_id": "r", "customer_id": "C1"})
        ),
        Ok(())
    );
    assert!(fits_schema(DownlinkStream::Erasure, &json!({"customer_id": "C1"})).is_err());
    let boss = json!({"associate_id": "A", "name": "N", "role": "boss", "pin_hash": "x"});
    assert!(
        fits_schema(DownlinkStream::Associates, &boss)
            .unwrap_err()
            .contains("role")
    );
}
