//! Applying the cloud's downlink streams to the local store.
//!
//! Invariants:
//! * A batch is applied in one `BEGIN IMMEDIATE` transaction together with the
//!   stream's new position in `downlink_streams`: after a crash the position
//!   says exactly what is in the tables.
//! * Items at or below the stream's position are ignored (redeliveries), so
//!   applying a batch twice changes nothing.
//! * An item beyond position + 1 is a gap: nothing from there on is applied, and
//!   the caller asks the cloud for the missing range.
//! * An item whose entity does not fit its schema goes to `dead_letters` with the
//!   topic and the error; its seq still counts as applied, so one bad entity never
//!   blocks its stream.
//! * No position for the stream, or another epoch: nothing is applied; the stream
//!   must be reloaded from a snapshot.

use super::StoreError;
use super::entities::{
    AssociateRecord, CartRecord, ConfigEntry, CustomerRecord, Entity, LoyaltyCardRecord, OrderRecord,
    ProductRecord, StockRecord, WishlistItemRecord,
};
use super::outbox;
use crate::domain::wishlist::{WishlistAction, WishlistOp};
use crate::events::{Captured, DownlinkStream, UplinkStream};
use crate::sync::protocol::{DownlinkBatch, DownlinkItem, ErasureRequest, Op};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Where a stream stands locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The cloud's epoch.
    pub epoch: String,
    /// The last applied seq.
    pub last_seq: i64,
}

/// What applying one batch did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// Items applied (dead-lettered ones included: their seq is consumed).
    pub applied: usize,
    /// Items at or below the position: redeliveries, ignored.
    pub ignored: usize,
    /// Items whose entity did not fit and went to the dead letters.
    pub dead_lettered: usize,
    /// The position after the batch (`None`: the stream has none).
    pub position: Option<Position>,
    /// A gap: the seqs `from..=to` are missing before this batch can go on.
    pub gap: Option<(i64, i64)>,
    /// The stream must be reloaded from a snapshot, and why.
    pub needs_snapshot: Option<String>,
}

/// The position of `stream`, if it has one.
pub fn position(conn: &Connection, stream: DownlinkStream) -> Result<Option<Position>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT epoch, last_seq FROM downlink_streams WHERE stream = ?1")?
        .query_row([stream.as_str()], |r| {
            Ok(Position {
                epoch: r.get(0)?,
                last_seq: r.get(1)?,
            })
        })
        .optional()?)
}

/// The most dead letters kept: beyond it the oldest go.
pub const MAX_DEAD_LETTERS: i64 = 100_000;
/// The most payload bytes kept over all dead letters: beyond it the oldest go.
pub const MAX_DEAD_LETTER_BYTES: i64 = 256 * 1024 * 1024;
/// The most bytes of one payload kept; the error says how much was cut.
pub const MAX_DEAD_LETTER_PAYLOAD: usize = 64 * 1024;
/// Every this many letters the bounds are enforced (a sum over the table).
const PRUNE_EVERY: i64 = 64;

/// Keeps input that could not be used, for a person to look at: at most
/// [`MAX_DEAD_LETTER_PAYLOAD`] bytes of it, and the table bounded by
/// [`MAX_DEAD_LETTERS`] and [`MAX_DEAD_LETTER_BYTES`] (the oldest letters go
/// first), so a sender that keeps sending garbage cannot fill the disk.
pub(super) fn dead_letter(
    tx: &Connection,
    source: &str,
    payload: &[u8],
    error: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let (payload, error) = if payload.len() > MAX_DEAD_LETTER_PAYLOAD {
        let note = format!(
            "{error} (kept: the first {MAX_DEAD_LETTER_PAYLOAD} of {} bytes)",
            payload.len()
        );
        (&payload[..MAX_DEAD_LETTER_PAYLOAD], std::borrow::Cow::Owned(note))
    } else {
        (payload, std::borrow::Cow::Borrowed(error))
    };
    tx.prepare_cached(
        "INSERT INTO dead_letters (source, payload, error, received_at_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![source, payload, error.as_ref(), now_ms])?;
    let id = tx.last_insert_rowid();
    if id % PRUNE_EVERY == 0 {
        prune_dead_letters(tx, id, MAX_DEAD_LETTERS, MAX_DEAD_LETTER_BYTES)?;
    }
    Ok(())
}

/// Removes the oldest dead letters so that at most `max_rows` remain with at
/// most `max_bytes` of payload; `newest` is the id just written. Returns how many
/// went, and says so in the log.
pub(super) fn prune_dead_letters(
    tx: &Connection,
    newest: i64,
    max_rows: i64,
    max_bytes: i64,
) -> Result<usize, StoreError> {
    let mut removed = tx
        .prepare_cached("DELETE FROM dead_letters WHERE id <= ?1")?
        .execute([newest - max_rows])?;
    // The newest letter whose running total (newest first) passes the bound, and
    // everything older, go.
    removed += tx
        .prepare_cached(
            "DELETE FROM dead_letters WHERE id <= (
                 SELECT id FROM (
                     SELECT id, sum(length(payload)) OVER (ORDER BY id DESC) AS total FROM dead_letters
                 ) WHERE total > ?1 ORDER BY id DESC LIMIT 1)",
        )?
        .execute([max_bytes])?;
    if removed > 0 {
        tracing::warn!(
            removed,
            max_rows,
            max_bytes,
            "Dead letters over their bound: the oldest were removed."
        );
    }
    Ok(removed)
}

/// One received downlink message: its topic, stream and envelope.
pub type Received = (String, DownlinkStream, DownlinkBatch);

/// One kept piece of input, as `store-agent dead-letters` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// Row id.
    pub id: i64,
    /// Where it came from (an MQTT topic, a file).
    pub source: String,
    /// Why it was refused.
    pub error: String,
    /// When it arrived (Unix ms).
    pub received_at_ms: i64,
    /// The input as text (invalid UTF-8 replaced), cut to 4 KiB.
    pub payload: String,
    /// The size kept, in bytes: at most [`MAX_DEAD_LETTER_PAYLOAD`]; when the input
    /// was larger, the error ends with its full size.
    pub payload_bytes: usize,
}

/// The newest `limit` dead letters.
pub fn dead_letters(conn: &Connection, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, source, error, received_at_ms, payload FROM dead_letters ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        let payload: Vec<u8> = r.get(4)?;
        let shown = &payload[..payload.len().min(4096)];
        Ok(DeadLetter {
            id: r.get(0)?,
            source: r.get(1)?,
            error: r.get(2)?,
            received_at_ms: r.get(3)?,
            payload: String::from_utf8_lossy(shown).into_owned(),
            payload_bytes: payload.len(),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Applies received batches, in order, in one transaction (group commit: one
/// durable commit for every message that was waiting). See the module invariants;
/// each batch gets its own outcome.
pub(super) fn apply_batches(
    conn: &mut Connection,
    batches: &[Received],
    now_ms: i64,
) -> Result<Vec<BatchOutcome>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes = batches
        .iter()
        .map(|(topic, stream, batch)| apply_in(&tx, topic, *stream, batch, now_ms))
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit()?;
    // An erasure is done only when the old page versions holding the person are
    // gone too: secure_delete zeroes what the delete freed, and the checkpoint
    // writes those pages over the database file and empties the WAL.
    let erased = batches
        .iter()
        .zip(&outcomes)
        .any(|((_, stream, _), out)| *stream == DownlinkStream::Erasure && out.applied > 0);
    if erased {
        super::writer::fold_wal(conn, "erasure");
    }
    Ok(outcomes)
}

fn apply_in(
    tx: &Transaction<'_>,
    topic: &str,
    stream: DownlinkStream,
    batch: &DownlinkBatch,
    now_ms: i64,
) -> Result<BatchOutcome, StoreError> {
    let mut outcome = BatchOutcome::default();
    let Some(mut pos) = position(tx, stream)? else {
        outcome.needs_snapshot = Some(format!("stream {stream} has no local position yet"));
        return Ok(outcome);
    };
    if pos.epoch != batch.epoch {
        outcome.needs_snapshot = Some(format!(
            "stream {stream} moved from epoch {:?} to {:?}",
            pos.epoch, batch.epoch
        ));
        outcome.position = Some(pos);
        return Ok(outcome);
    }
    let mut items: Vec<&DownlinkItem> = batch.items.iter().collect();
    items.sort_by_key(|i| i.seq);
    let highest = items.last().map_or(pos.last_seq, |i| i.seq);
    for item in items {
        if item.seq <= pos.last_seq {
            outcome.ignored += 1;
            continue;
        }
        if item.seq > pos.last_seq + 1 {
            outcome.gap = Some((pos.last_seq + 1, highest));
            break;
        }
        // A savepoint per item: a bad entity rolls back only its own writes.
        tx.execute_batch("SAVEPOINT downlink_item")?;
        match apply_item(tx, stream, item, now_ms) {
            Ok(()) => tx.execute_batch("RELEASE downlink_item")?,
            Err(e @ (StoreError::Invalid { .. } | StoreError::NotFound { .. })) => {
                tx.execute_batch("ROLLBACK TO downlink_item; RELEASE downlink_item")?;
                let error = format!("{topic}, seq {}: {e}", item.seq);
                tracing::warn!(%topic, seq = item.seq, error = %e, "Downlink item does not fit; kept in dead letters.");
                let body = serde_json::to_vec(item).unwrap_or_default();
                dead_letter(tx, topic, &body, &error, now_ms)?;
                outcome.dead_lettered += 1;
            }
            Err(e) => return Err(e),
        }
        pos.last_seq = item.seq;
        outcome.applied += 1;
    }
    if outcome.applied > 0 {
        tx.prepare_cached("UPDATE downlink_streams SET last_seq = ?2, updated_at_ms = ?3 WHERE stream = ?1")?
            .execute(params![stream.as_str(), pos.last_seq, now_ms])?;
    }
    outcome.position = Some(pos);
    Ok(outcome)
}

fn entity<T: DeserializeOwned>(stream: DownlinkStream, value: &serde_json::Value) -> Result<T, StoreError> {
    crate::sync::protocol::check_entity_shape(value)
        .map_err(|e| StoreError::invalid(format!("{stream} entity"), e))?;
    T::deserialize(value).map_err(|e| StoreError::invalid(format!("{stream} entity"), e.to_string()))
}

/// Key fields of a delete.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Key {
    #[serde(default)]
    gtin: Option<String>,
    #[serde(default)]
    customer_id: Option<String>,
    #[serde(default)]
    card_hash: Option<String>,
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    associate_id: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

fn key_field(stream: DownlinkStream, name: &str, value: Option<String>) -> Result<String, StoreError> {
    value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        StoreError::invalid(
            format!("{stream} delete"),
            format!("needs the key field {name:?}"),
        )
    })
}

fn apply_item(
    tx: &Transaction<'_>,
    stream: DownlinkStream,
    item: &DownlinkItem,
    now_ms: i64,
) -> Result<(), StoreError> {
    match item.op {
        Op::Upsert => upsert(tx, stream, &item.entity, now_ms),
        Op::Delete => delete(tx, stream, &item.entity),
    }
}

fn upsert(
    tx: &Transaction<'_>,
    stream: DownlinkStream,
    value: &serde_json::Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    match stream {
        DownlinkStream::Products => entity::<ProductRecord>(stream, value)?.write(tx, now_ms),
        DownlinkStream::Stock => entity::<StockRecord>(stream, value)?.write(tx, now_ms),
        DownlinkStream::Customers => entity::<CustomerRecord>(stream, value)?.write(tx, now_ms),
        DownlinkStream::LoyaltyCards => entity::<LoyaltyCardRecord>(stream, value)?.write(tx, now_ms),
        DownlinkStream::Wishlists => {
            let w: WishlistItemRecord = entity(stream, value)?;
            let op = WishlistOp {
                gtin: super::entities::gtin14("wishlist_item.gtin", &w.gtin)?,
                customer_id: w.customer_id,
                action: if w.present {
                    WishlistAction::Add
                } else {
                    WishlistAction::Remove
                },
                at_ms: w.op_at_ms,
                op_id: w.op_id,
                channel: w.channel,
            };
            super::records::apply_wishlist_op(tx, &op).map(|_| ())
        }
        DownlinkStream::Carts => entity::<CartRecord>(stream, value)?.write(tx, now_ms),
        DownlinkStream::Orders => entity::<OrderRecord>(stream, value)?.write(tx, now_ms),
        DownlinkStream::Associates => entity::<AssociateRecord>(stream, value)?.write(tx, now_ms),
        DownlinkStream::Config => entity::<ConfigEntry>(stream, value)?.write(tx, now_ms),
        DownlinkStream::Erasure => erase(tx, &entity::<ErasureRequest>(stream, value)?, now_ms),
    }
}

fn delete(tx: &Transaction<'_>, stream: DownlinkStream, value: &serde_json::Value) -> Result<(), StoreError> {
    let k: Key = entity(stream, value)?;
    let (sql, key): (&str, String) = match stream {
        DownlinkStream::Products => (
            "DELETE FROM products WHERE gtin = ?1",
            super::entities::gtin14("product.gtin", &key_field(stream, "gtin", k.gtin)?)?,
        ),
        DownlinkStream::Stock => (
            "DELETE FROM stock WHERE gtin = ?1",
            super::entities::gtin14("stock.gtin", &key_field(stream, "gtin", k.gtin)?)?,
        ),
        DownlinkStream::Customers => (
            "DELETE FROM customers WHERE customer_id = ?1",
            key_field(stream, "customer_id", k.customer_id)?,
        ),
        DownlinkStream::LoyaltyCards => {
            let hex_text = key_field(stream, "card_hash", k.card_hash)?;
            let hash = hex::decode(&hex_text)
                .ok()
                .filter(|h| h.len() == 32)
                .ok_or_else(|| {
                    StoreError::invalid("loyalty_cards delete", "card_hash must be 64 hex digits")
                })?;
            tx.prepare_cached("DELETE FROM loyalty_cards WHERE card_hash = ?1")?
                .execute([hash])?;
            return Ok(());
        }
        DownlinkStream::Carts => (
            "DELETE FROM carts WHERE customer_id = ?1",
            key_field(stream, "customer_id", k.customer_id)?,
        ),
        DownlinkStream::Orders => (
            "DELETE FROM orders WHERE order_id = ?1",
            key_field(stream, "order_id", k.order_id)?,
        ),
        DownlinkStream::Associates => (
            "DELETE FROM associates WHERE associate_id = ?1",
            key_field(stream, "associate_id", k.associate_id)?,
        ),
        DownlinkStream::Config => (
            "DELETE FROM cloud_config WHERE key = ?1",
            key_field(stream, "key", k.key)?,
        ),
        DownlinkStream::Wishlists | DownlinkStream::Erasure => {
            return Err(StoreError::invalid(
                format!("{stream} delete"),
                "this stream has no delete (wishlists: send the item with present = false)",
            ));
        }
    };
    tx.prepare_cached(sql)?.execute([key])?;
    Ok(())
}

/// Removes every local trace of a customer and records the confirmation for the
/// cloud in the same transaction.
fn erase(tx: &Transaction<'_>, req: &ErasureRequest, now_ms: i64) -> Result<(), StoreError> {
    if req.customer_id.trim().is_empty() || req.request_id.trim().is_empty() {
        return Err(StoreError::invalid(
            "erasure",
            "request_id and customer_id must not be empty",
        ));
    }
    let id = &req.customer_id;
    let mut removed = 0usize;
    for sql in [
        "DELETE FROM loyalty_cards WHERE customer_id = ?1",
        "DELETE FROM wishlist_items WHERE customer_id = ?1",
        "DELETE FROM carts WHERE customer_id = ?1",
        "DELETE FROM orders WHERE customer_id = ?1",
        "DELETE FROM customers WHERE customer_id = ?1",
        // Sales recorded here stay (they are the store's books), without the link.
        "UPDATE pos_transactions SET customer_id = NULL WHERE customer_id = ?1",
    ] {
        removed += tx.prepare_cached(sql)?.execute([id])?;
    }
    let done = Captured::now(serde_json::json!({
        "request_id": req.request_id,
        "customer_id": req.customer_id,
        "rows_removed": removed,
    }));
    outbox::enqueue(tx, UplinkStream::Erasures, "erasure_done", &done, now_ms)?;
    tracing::info!(request_id = %req.request_id, rows = removed, "Customer erased on the cloud's request.");
    Ok(())
}
