//! The transactional outbox.
//!
//! [`enqueue`] takes a `&Transaction`, not a connection: an outbox row can only be
//! written inside a transaction that the caller commits together with the state
//! change it reports. It is private to the store module; the public way in is a
//! `record_*` method of [`super::Store`].

use super::StoreError;
use crate::events::{Captured, UplinkStream};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

/// The largest event payload the outbox takes. An uplink message carries at least
/// one event and must stay under the protocol's envelope limit; an event too big to
/// ever be sent would block its stream forever, so it is refused when captured.
pub const MAX_EVENT_BYTES: usize = 100 * 1024;

/// Appends `captured` to `stream` and returns its sequence number.
///
/// Sequence numbers come from a per-stream counter, not from `max(seq)`: rows
/// that the cloud acknowledged are deleted, and a reused number would look like a
/// duplicate to the cloud.
pub(super) fn enqueue<T: Serialize>(
    tx: &Transaction<'_>,
    stream: UplinkStream,
    kind: &str,
    captured: &Captured<T>,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let payload = serde_json::to_string(&captured.event)
        .map_err(|e| StoreError::Internal(format!("cannot encode {kind} event: {e}")))?;
    if payload.len() > MAX_EVENT_BYTES {
        return Err(StoreError::invalid(
            kind,
            format!(
                "the event is {} bytes, more than the {MAX_EVENT_BYTES} one event may have on its way to the cloud",
                payload.len()
            ),
        ));
    }
    let seq: i64 = tx
        .prepare_cached(
            "INSERT INTO outbox_streams (stream, last_seq) VALUES (?1, 1)
             ON CONFLICT (stream) DO UPDATE SET last_seq = last_seq + 1
             RETURNING last_seq",
        )?
        .query_row([stream.as_str()], |r| r.get(0))?;
    tx.prepare_cached(
        "INSERT INTO outbox (stream, seq, idempotency_key, kind, payload, captured_at_ms, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        stream.as_str(),
        seq,
        captured.idempotency_key.to_string(),
        kind,
        payload,
        captured.captured_at_ms,
        now_ms
    ])?;
    Ok(seq)
}

/// True when an event with this idempotency key is still waiting in the outbox.
pub(super) fn contains_key(tx: &Transaction<'_>, key: &uuid::Uuid) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM outbox WHERE idempotency_key = ?1")?
        .query_row([key.to_string()], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Removes the rows of `stream` through `through_seq` (the cloud's cumulative
/// application-level ack) and remembers the ack. An ack beyond the last seq ever
/// written is a protocol error: nothing is deleted.
pub(super) fn acknowledge(
    conn: &mut Connection,
    stream: UplinkStream,
    through_seq: i64,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let last_seq: i64 = tx
        .query_row(
            "SELECT last_seq FROM outbox_streams WHERE stream = ?1",
            [stream.as_str()],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    if through_seq > last_seq {
        return Err(StoreError::invalid(
            format!("ack for stream {stream}"),
            format!("acknowledges seq {through_seq}, but only {last_seq} were ever sent"),
        ));
    }
    let deleted = tx.execute(
        "DELETE FROM outbox WHERE stream = ?1 AND seq <= ?2",
        params![stream.as_str(), through_seq],
    )?;
    tx.execute(
        "UPDATE outbox_streams SET acked_seq = max(acked_seq, ?2), acked_at_ms = ?3 WHERE stream = ?1",
        params![stream.as_str(), through_seq, now_ms],
    )?;
    tx.commit()?;
    Ok(deleted)
}

/// One waiting event, as the uplink pump reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The stream's sequence number.
    pub seq: i64,
    /// The key the cloud de-duplicates by.
    pub idempotency_key: String,
    /// The event type within the stream.
    pub kind: String,
    /// The event as JSON.
    pub payload: String,
    /// When the event was captured.
    pub captured_at_ms: i64,
}

/// The oldest `limit` rows of `stream`, in seq order.
pub fn pending(conn: &Connection, stream: UplinkStream, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
    pending_after(conn, stream, 0, limit)
}

/// The oldest `limit` rows of `stream` with a seq above `after_seq`, in seq order:
/// the uplink pump's next batch after what it has already sent.
pub fn pending_after(
    conn: &Connection,
    stream: UplinkStream,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, idempotency_key, kind, payload, captured_at_ms FROM outbox
         WHERE stream = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![stream.as_str(), after_seq, limit as i64], |r| {
        Ok(OutboxRow {
            seq: r.get(0)?,
            idempotency_key: r.get(1)?,
            kind: r.get(2)?,
            payload: r.get(3)?,
            captured_at_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The cloud's last acknowledgement per stream, as recorded (the pump's start).
pub fn acked_seqs(conn: &Connection) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT stream, acked_seq FROM outbox_streams")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
