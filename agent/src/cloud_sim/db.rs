//! The reference cloud's own SQLite database (not the agent's schema) and the
//! thread that owns its write connection.
//!
//! Tables:
//! * `uplink_events` — every event received, once: `UNIQUE (idempotency_key)`
//!   de-duplicates redeliveries, `PRIMARY KEY (device_id, stream, seq)` finds the
//!   contiguous high-water mark.
//! * `uplink_marks` — per (device, stream) `acked_through`: the highest seq such
//!   that it and every seq before it are stored. Only ever grows.
//! * `downlink_streams` — per store stream the current `(epoch, seq)` and
//!   `trimmed_through`, the last seq no longer in the log.
//! * `downlink_log` — `(stream, epoch, seq, op, entity)` of every item published in
//!   the current epoch after the trimmed mark: what range requests are served from.
//! * `entity_state` — the current entity per `(stream, key)` (see [`super::keys`]),
//!   base data plus every delta: what generated snapshots are written from.
//!   `error` says why the agent would refuse the entity (NULL: it would not);
//!   such an entity is published as asked but left out of snapshots.
//! * `device_presence`, `device_health` — the last of each per device.
//! * `meta` — the base snapshot's file, size, SHA-256, streams and key fingerprint,
//!   and the tenant and store the database belongs to.
//!
//! The connection runs with WAL and `synchronous=FULL`: a commit is durable when it
//! returns, and the cloud acknowledges only committed events. Every function here
//! is synchronous and takes a connection, so the unit tests drive them directly;
//! the async side reaches them through [`Db::call`], on the database thread.

use crate::events::DownlinkStream;
use crate::sync::protocol::{DownlinkItem, Health, Op, Presence, UplinkBatch};
use anyhow::{Context, anyhow};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The schema; every statement is idempotent, so opening an existing database
/// (a restarted cloud) keeps what it holds.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uplink_events (
    device_id       TEXT NOT NULL,
    stream          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    captured_at_ms  INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (device_id, stream, seq)
);
CREATE TABLE IF NOT EXISTS uplink_marks (
    device_id     TEXT NOT NULL,
    stream        TEXT NOT NULL,
    acked_through INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, stream)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS downlink_streams (
    stream          TEXT PRIMARY KEY,
    epoch_no        INTEGER NOT NULL,
    epoch           TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    trimmed_through INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS downlink_log (
    stream          TEXT NOT NULL,
    epoch           TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    op              TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    entity          TEXT NOT NULL,
    published_at_ms INTEGER NOT NULL,
    PRIMARY KEY (stream, epoch, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entity_state (
    stream TEXT NOT NULL,
    key    TEXT NOT NULL,
    entity TEXT NOT NULL,
    error  TEXT,
    PRIMARY KEY (stream, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_presence (
    device_id     TEXT PRIMARY KEY,
    presence      TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_health (
    device_id     TEXT PRIMARY KEY,
    report        TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// How long a connection waits for another one's lock (the snapshot reader never
/// takes one in WAL mode; this covers a second process opening the file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating) the database for writing and brings the schema up.
pub(super) fn open(path: &Path) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open the cloud database {}", path.display()))?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets the snapshot writer read a consistent state while uplinks commit.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode WAL not available (got {mode})"
            )));
        }
        // The cloud acks only what it stored: the commit must be durable when it returns.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)
    };
    setup().with_context(|| format!("cannot set up the cloud database {}", path.display()))?;
    Ok(conn)
}

/// Opens the database read-only (the snapshot writer's own connection).
pub(super) fn open_read(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the cloud database {} for reading", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The database thread: it owns the write connection and runs jobs one at a
/// time, so async code never blocks on SQLite and never holds the connection.
pub(super) struct Db {
    jobs: mpsc::Sender<Job>,
}

impl Db {
    /// Starts the thread with `conn`. It ends when the last [`Db`] is dropped.
    pub(super) fn start(mut conn: Connection) -> anyhow::Result<Db> {
        // Bounded: callers wait (asynchronously) when the thread falls behind.
        let (jobs, mut rx) = mpsc::channel::<Job>(256);
        std::thread::Builder::new()
            .name("cloud-sim-db".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    job(&mut conn);
                }
            })
            .context("cannot start the cloud-sim database thread")?;
        Ok(Db { jobs })
    }

    /// Runs `f` on the database thread and returns its result.
    pub(super) async fn call<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| anyhow!("the cloud-sim database thread has stopped"))?;
        rx.await
            .map_err(|_| anyhow!("the cloud-sim database thread stopped during a job (did it panic?)"))?
    }
}

/// The name of epoch number `n`.
pub(super) fn epoch_name(n: i64) -> String {
    format!("e{n}")
}

/// Where a store stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Position {
    /// The epoch's number (the name is `e{n}`).
    pub epoch_no: i64,
    /// The epoch's name.
    pub epoch: String,
    /// The last seq published in the epoch (0: none since its snapshot).
    pub seq: i64,
    /// The last seq no longer in the log.
    pub trimmed_through: i64,
}

fn position_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Position> {
    Ok(Position {
        epoch_no: r.get(0)?,
        epoch: r.get(1)?,
        seq: r.get(2)?,
        trimmed_through: r.get(3)?,
    })
}

/// The position of `stream`, if it has one.
pub(super) fn position(conn: &Connection, stream: DownlinkStream) -> rusqlite::Result<Option<Position>> {
    conn.prepare_cached(
        "SELECT epoch_no, epoch, seq, trimmed_through FROM downlink_streams WHERE stream = ?1",
    )?
    .query_row([stream.as_str()], position_row)
    .optional()
}

/// The position of `stream`, starting it at epoch `e1`, seq 0 when it has none.
pub(super) fn ensure_position(conn: &Connection, stream: DownlinkStream) -> rusqlite::Result<Position> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO downlink_streams (stream, epoch_no, epoch, seq, trimmed_through)
         VALUES (?1, 1, ?2, 0, 0)",
    )?
    .execute(params![stream.as_str(), epoch_name(1)])?;
    position(conn, stream)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Every stream's position.
pub(super) fn positions(conn: &Connection) -> rusqlite::Result<BTreeMap<DownlinkStream, Position>> {
    let mut stmt =
        conn.prepare_cached("SELECT epoch_no, epoch, seq, trimmed_through, stream FROM downlink_streams")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(4)?, position_row(r)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (name, pos) = row?;
        // A name this build does not know cannot be requested; skip it.
        if let Some(stream) = DownlinkStream::parse(&name) {
            out.insert(stream, pos);
        }
    }
    Ok(out)
}

/// A value of the `meta` table.
pub(super) fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

/// Sets a value of the `meta` table.
pub(super) fn meta_set(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
        .execute([key, value])?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Uplink

/// What storing one uplink batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct UplinkStored {
    /// Events stored now.
    pub stored: u64,
    /// Events already stored (same idempotency key): ignored, still acked.
    pub duplicates: u64,
    /// Events refused: a seq below 1, or a seq this device's stream already used
    /// with another idempotency key (the agent broke "seqs are never reused").
    pub refused: u64,
    /// The stream's high-water mark after the commit.
    pub acked_through: i64,
}

/// Stores the new events of `batch` from `device` in one transaction,
/// de-duplicated by idempotency key, and advances the stream's high-water mark.
/// When this returns `Ok`, everything through `acked_through` is durable.
pub(super) fn store_uplink(
    conn: &mut Connection,
    device: &str,
    batch: &UplinkBatch,
    now_ms: i64,
) -> rusqlite::Result<UplinkStored> {
    let stream = batch.stream.as_str();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = UplinkStored::default();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO uplink_events
                (device_id, stream, seq, idempotency_key, captured_at_ms, kind, payload, received_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT DO NOTHING",
        )?;
        let mut known_key = tx.prepare_cached("SELECT 1 FROM uplink_events WHERE idempotency_key = ?1")?;
        for e in &batch.events {
            if e.seq < 1 {
                tracing::warn!(
                    device,
                    stream,
                    seq = e.seq,
                    "Uplink event refused: seqs start at 1."
                );
                out.refused += 1;
                continue;
            }
            let n = insert.execute(params![
                device,
                stream,
                e.seq,
                e.idempotency_key,
                e.captured_at_ms,
                e.kind,
                e.payload.to_string(),
                now_ms
            ])?;
            if n == 1 {
                out.stored += 1;
            } else if known_key.exists([&e.idempotency_key])? {
                out.duplicates += 1;
            } else {
                tracing::warn!(
                    device,
                    stream,
                    seq = e.seq,
                    idempotency_key = %e.idempotency_key,
                    "Uplink event refused: this seq was already stored with another idempotency key."
                );
                out.refused += 1;
            }
        }
    }
    out.acked_through = advance_mark(&tx, device, stream, now_ms)?;
    tx.commit()?;
    Ok(out)
}

/// Moves the high-water mark of `(device, stream)` over every stored seq that
/// follows it without a gap, stores it and returns it. Starts from the stored
/// mark, so it only walks what arrived beyond it.
pub(super) fn advance_mark(
    conn: &Connection,
    device: &str,
    stream: &str,
    now_ms: i64,
) -> rusqlite::Result<i64> {
    let start = acked_through(conn, device, stream)?;
    let mut mark = start;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT seq FROM uplink_events WHERE device_id = ?1 AND stream = ?2 AND seq > ?3 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![device, stream, start])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            if seq != mark + 1 {
                break;
            }
            mark = seq;
        }
    }
    conn.prepare_cached(
        "INSERT INTO uplink_marks (device_id, stream, acked_through, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (device_id, stream) DO UPDATE SET acked_through = excluded.acked_through,
             updated_at_ms = excluded.updated_at_ms",
    )?
    .execute(params![device, stream, mark, now_ms])?;
    Ok(mark)
}

/// The high-water mark of `(device, stream)`; 0 before anything arrived.
pub(super) fn acked_through(conn: &Connection, device: &str, stream: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT acked_through FROM uplink_marks WHERE device_id = ?1 AND stream = ?2")?
        .query_row([device, stream], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Events stored from `device`, all streams.
pub(super) fn received_count(conn: &Connection, device: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT count(*) FROM uplink_events WHERE device_id = ?1")?
        .query_row([device], |r| r.get(0))
}

/// One uplink event as the cloud stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedEvent {
    /// Its seq in the device's stream.
    pub seq: i64,
    /// The idempotency key the agent gave it.
    pub idempotency_key: String,
    /// The event type within the stream.
    pub kind: String,
    /// When the agent captured it (device clock, Unix ms).
    pub captured_at_ms: i64,
    /// The event.
    pub payload: Value,
}

/// The events stored from `device` on `stream`, in seq order.
pub(super) fn received_events(
    conn: &Connection,
    device: &str,
    stream: &str,
) -> rusqlite::Result<Vec<ReceivedEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, idempotency_key, kind, captured_at_ms, payload FROM uplink_events
         WHERE device_id = ?1 AND stream = ?2 ORDER BY seq",
    )?;
    let rows = stmt.query_map([device, stream], |r| {
        Ok(ReceivedEvent {
            seq: r.get(0)?,
            idempotency_key: r.get(1)?,
            kind: r.get(2)?,
            captured_at_ms: r.get(3)?,
            payload: json_column(r, 4)?,
        })
    })?;
    rows.collect()
}

/// Reads a TEXT column this module wrote with JSON.
fn json_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Value> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

// ---------------------------------------------------------------------------
// Downlink

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Upsert => "upsert",
        Op::Delete => "delete",
    }
}

/// Appends `items` to `stream`'s log with the next seqs and applies them to the
/// entity state, in one transaction. Returns the epoch and the items as published.
pub(super) fn append(
    conn: &mut Connection,
    stream: DownlinkStream,
    items: &[(Op, Value)],
    now_ms: i64,
) -> rusqlite::Result<(String, Vec<DownlinkItem>)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let pos = ensure_position(&tx, stream)?;
    let mut seq = pos.seq;
    let mut out = Vec::with_capacity(items.len());
    {
        let mut log = tx.prepare_cached(
            "INSERT INTO downlink_log (stream, epoch, seq, op, entity, published_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (op, entity) in items {
            seq += 1;
            log.execute(params![
                stream.as_str(),
                pos.epoch,
                seq,
                op_name(*op),
                entity.to_string(),
                now_ms
            ])?;
            apply_to_state(&tx, stream, *op, entity)?;
            out.push(DownlinkItem {
                seq,
                op: *op,
                entity: entity.clone(),
            });
        }
    }
    tx.prepare_cached("UPDATE downlink_streams SET seq = ?2 WHERE stream = ?1")?
        .execute(params![stream.as_str(), seq])?;
    tx.commit()?;
    Ok((pos.epoch, out))
}

/// Applies one item to the entity state as the agent would: upserts replace,
/// deletes remove, wishlist items merge last-writer-wins by `(op_at_ms, op_id)`.
/// Erasure requests and entities without their key fields change nothing here
/// (they are still published: a test may want to send a malformed entity).
fn apply_to_state(conn: &Connection, stream: DownlinkStream, op: Op, entity: &Value) -> rusqlite::Result<()> {
    if stream == DownlinkStream::Erasure {
        return Ok(());
    }
    let Some(key) = super::keys::entity_key(stream, entity) else {
        tracing::warn!(%stream, %entity, "A published entity has no key fields; the entity state ignores it.");
        return Ok(());
    };
    match op {
        Op::Delete => {
            conn.prepare_cached("DELETE FROM entity_state WHERE stream = ?1 AND key = ?2")?
                .execute([stream.as_str(), &key])?;
        }
        Op::Upsert => {
            if stream == DownlinkStream::Wishlists {
                let current = entity_in_state(conn, stream, &key)?;
                if current.is_some_and(|c| wishlist_order(&c) > wishlist_order(entity)) {
                    // An older operation arriving late loses, as in the agent's merge.
                    return Ok(());
                }
            }
            let error = super::keys::fits_schema(stream, entity).err();
            if let Some(error) = &error {
                tracing::info!(%stream, key, error, "A published entity the agent will refuse; snapshots leave it out.");
            }
            conn.prepare_cached(
                "INSERT OR REPLACE INTO entity_state (stream, key, entity, error) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![stream.as_str(), key, entity.to_string(), error])?;
        }
    }
    Ok(())
}

/// The merge order of a wishlist item register: `(op_at_ms, op_id)`.
fn wishlist_order(entity: &Value) -> (i64, String) {
    (
        entity.get("op_at_ms").and_then(Value::as_i64).unwrap_or(i64::MIN),
        entity
            .get("op_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    )
}

/// Inserts one entity of the base data (the caller holds the transaction). The
/// base file's records parsed as the agent's types; the agent checks the rest
/// when it imports the base file itself.
pub(super) fn insert_state(
    conn: &Connection,
    stream: DownlinkStream,
    key: &str,
    json: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO entity_state (stream, key, entity, error) VALUES (?1, ?2, ?3, NULL)",
    )?
    .execute([stream.as_str(), key, json])?;
    Ok(())
}

/// Starts a new epoch of `stream`: seq back to 0 (the next item is 1), the old
/// epoch's log gone, nothing trimmed. The entity state stays: it is the new
/// epoch's snapshot. Returns the new epoch's name.
pub(super) fn new_epoch(conn: &mut Connection, stream: DownlinkStream) -> rusqlite::Result<String> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let pos = ensure_position(&tx, stream)?;
    let epoch = epoch_name(pos.epoch_no + 1);
    tx.execute(
        "UPDATE downlink_streams SET epoch_no = ?2, epoch = ?3, seq = 0, trimmed_through = 0 WHERE stream = ?1",
        params![stream.as_str(), pos.epoch_no + 1, epoch],
    )?;
    tx.execute("DELETE FROM downlink_log WHERE stream = ?1", [stream.as_str()])?;
    tx.commit()?;
    Ok(epoch)
}

/// Drops `stream`'s log through `through_seq` (at most the current seq): range
/// requests from there on are answered "unavailable". Returns the trimmed mark.
pub(super) fn trim_log(
    conn: &mut Connection,
    stream: DownlinkStream,
    through_seq: i64,
) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let pos = ensure_position(&tx, stream)?;
    let mark = pos.trimmed_through.max(through_seq.min(pos.seq));
    tx.execute(
        "DELETE FROM downlink_log WHERE stream = ?1 AND seq <= ?2",
        params![stream.as_str(), mark],
    )?;
    tx.execute(
        "UPDATE downlink_streams SET trimmed_through = ?2 WHERE stream = ?1",
        params![stream.as_str(), mark],
    )?;
    tx.commit()?;
    Ok(mark)
}

/// Whether a range request can be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RangeCheck {
    /// From the log, up to `to_seq` (the request's end, or the stream's last seq).
    Serve {
        /// Last seq to send.
        to_seq: i64,
    },
    /// Not from the log; the reason goes into the reply.
    Unavailable(String),
}

/// Decides whether `from_seq..=to_seq` of `stream` in `epoch` is in the log.
pub(super) fn check_range(
    conn: &Connection,
    stream: DownlinkStream,
    epoch: &str,
    from_seq: i64,
    to_seq: i64,
) -> rusqlite::Result<RangeCheck> {
    let unavailable = |reason: String| Ok(RangeCheck::Unavailable(reason));
    let Some(pos) = position(conn, stream)? else {
        return unavailable(format!("the cloud has published nothing on {stream}"));
    };
    if epoch != pos.epoch {
        return unavailable(format!(
            "{stream} is in epoch {} now; epoch {epoch} is over, reload it from a snapshot",
            pos.epoch
        ));
    }
    if from_seq > to_seq {
        return unavailable(format!("the range {from_seq}..={to_seq} is empty"));
    }
    if from_seq <= pos.trimmed_through {
        return unavailable(format!(
            "the log of {stream} in epoch {} is trimmed through seq {}; seq {from_seq} is gone",
            pos.epoch, pos.trimmed_through
        ));
    }
    if from_seq > pos.seq {
        return unavailable(format!(
            "{stream} ends at seq {} in epoch {}; there is no seq {from_seq}",
            pos.seq, pos.epoch
        ));
    }
    Ok(RangeCheck::Serve {
        to_seq: to_seq.min(pos.seq),
    })
}

/// Up to `limit` logged items of `stream` in `epoch` from `from_seq` through
/// `to_seq`, in seq order.
pub(super) fn read_log(
    conn: &Connection,
    stream: DownlinkStream,
    epoch: &str,
    from_seq: i64,
    to_seq: i64,
    limit: usize,
) -> rusqlite::Result<Vec<DownlinkItem>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, op, entity FROM downlink_log
         WHERE stream = ?1 AND epoch = ?2 AND seq BETWEEN ?3 AND ?4 ORDER BY seq LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![
            stream.as_str(),
            epoch,
            from_seq,
            to_seq,
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |r| {
            let op: String = r.get(1)?;
            Ok(DownlinkItem {
                seq: r.get(0)?,
                op: if op == "delete" { Op::Delete } else { Op::Upsert },
                entity: json_column(r, 2)?,
            })
        },
    )?;
    rows.collect()
}

/// The current entity of `stream` with `key` (already normalized).
pub(super) fn entity_in_state(
    conn: &Connection,
    stream: DownlinkStream,
    key: &str,
) -> rusqlite::Result<Option<Value>> {
    conn.prepare_cached("SELECT entity FROM entity_state WHERE stream = ?1 AND key = ?2")?
        .query_row([stream.as_str(), key], |r| json_column(r, 0))
        .optional()
}

/// Every current entity of `stream`, in key order.
pub(super) fn entities(conn: &Connection, stream: DownlinkStream) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached("SELECT entity FROM entity_state WHERE stream = ?1 ORDER BY key")?;
    let rows = stmt.query_map([stream.as_str()], |r| json_column(r, 0))?;
    rows.collect()
}

/// The entity at position `pick` modulo the count of `stream`'s entities (the
/// demo ticker's choice); `None` when the stream has none.
pub(super) fn pick_entity(
    conn: &Connection,
    stream: DownlinkStream,
    pick: u64,
) -> rusqlite::Result<Option<Value>> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM entity_state WHERE stream = ?1")?
        .query_row([stream.as_str()], |r| r.get(0))?;
    let Ok(count) = u64::try_from(count) else {
        return Ok(None);
    };
    if count == 0 {
        return Ok(None);
    }
    let offset = i64::try_from(pick % count).unwrap_or(0);
    conn.prepare_cached("SELECT entity FROM entity_state WHERE stream = ?1 ORDER BY key LIMIT 1 OFFSET ?2")?
        .query_row(params![stream.as_str(), offset], |r| json_column(r, 0))
        .optional()
}

// ---------------------------------------------------------------------------
// Devices

/// Remembers the last presence message of `device`.
pub(super) fn record_presence(
    conn: &Connection,
    device: &str,
    p: &Presence,
    now_ms: i64,
) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO device_presence (device_id, presence, updated_at_ms) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![device, serde_json::to_string(p)?, now_ms])?;
    Ok(())
}

/// The last presence message of `device`.
pub(super) fn presence(conn: &Connection, device: &str) -> anyhow::Result<Option<Presence>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT presence FROM device_presence WHERE device_id = ?1")?
        .query_row([device], |r| r.get(0))
        .optional()?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

/// Remembers the last health report of `device`.
pub(super) fn record_health(conn: &Connection, device: &str, h: &Health, now_ms: i64) -> anyhow::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO device_health (device_id, report, updated_at_ms) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![device, serde_json::to_string(h)?, now_ms])?;
    Ok(())
}

/// The last health report of `device`.
pub(super) fn health(conn: &Connection, device: &str) -> anyhow::Result<Option<Health>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT report FROM device_health WHERE device_id = ?1")?
        .query_row([device], |r| r.get(0))
        .optional()?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}
