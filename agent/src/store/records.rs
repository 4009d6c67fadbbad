//! What the store records for the cloud: POS transactions, BOPIS order events,
//! BORIS returns and wishlist edits.
//!
//! Each `record_*` function follows one shape, [`record_event`]: open a
//! `BEGIN IMMEDIATE` transaction, apply the state change, append the outbox row
//! with the event's idempotency key, commit. If anything fails in between, the
//! transaction rolls back and neither the change nor the outbox row exists.

use super::{StoreError, outbox};
use crate::domain::bopis::{self, OrderEvent, OrderStatus, PickupContext};
use crate::domain::money::Currency;
use crate::domain::returns::{
    Decision, ManagerOverride, RequestedLine, ReturnPolicy, ReturnRequest, ReturnableLine, ReturnableOrder,
};
use crate::domain::wishlist::{self, ItemState, WishlistAction, WishlistOp};
use crate::events::{Captured, UplinkStream, now_ms};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

/// What recording an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Recorded {
    /// Written, with its outbox row at `seq` of `stream`.
    New {
        /// The uplink stream.
        stream: UplinkStream,
        /// Its sequence number there.
        seq: i64,
    },
    /// Already recorded earlier; nothing was written.
    Duplicate,
}

/// What a state change did inside its event's transaction.
enum Applied<R, P> {
    /// The state changed: `payload` is what the cloud is told, `result` what the
    /// caller gets back.
    Changed { result: R, payload: P },
    /// The event was recorded before: nothing to write.
    AlreadyRecorded,
}

/// The one shape of every `record_*` function: in one `BEGIN IMMEDIATE`
/// transaction, run `apply` (the state change) and append its payload to the
/// outbox under the event's idempotency key, then commit. An event whose key is
/// still in the outbox, or that `apply` recognises as recorded, is a redelivery:
/// nothing is written and the result is `None`.
fn record_event<T, R, P: Serialize>(
    conn: &mut Connection,
    stream: UplinkStream,
    kind: &str,
    captured: &Captured<T>,
    apply: impl FnOnce(&Transaction<'_>) -> Result<Applied<R, P>, StoreError>,
) -> Result<Option<(R, Recorded)>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if outbox::contains_key(&tx, &captured.idempotency_key)? {
        return Ok(None);
    }
    match apply(&tx)? {
        Applied::Changed { result, payload } => {
            let event = Captured {
                idempotency_key: captured.idempotency_key,
                captured_at_ms: captured.captured_at_ms,
                event: payload,
            };
            let seq = outbox::enqueue(&tx, stream, kind, &event, now_ms())?;
            tx.commit()?;
            Ok(Some((result, Recorded::New { stream, seq })))
        }
        // Dropping the transaction rolls back; nothing was written anyway.
        Applied::AlreadyRecorded => Ok(None),
    }
}

/// `record_event` for events whose caller needs only the outbox position.
fn recorded(outcome: Option<((), Recorded)>) -> Recorded {
    outcome.map_or(Recorded::Duplicate, |(_, r)| r)
}

/// A completed POS transaction, as the POS feed delivers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosTransaction {
    /// The retail store (business unit) of the POS.
    pub store_id: String,
    /// The POS workstation (register) id.
    pub workstation: String,
    /// The POS's own sequence number within the business day.
    pub sequence_number: i64,
    /// The business day, `YYYY-MM-DD`.
    pub business_day: String,
    /// `sale`, `return`, `void`, `control`, … as the POS says.
    pub kind: String,
    /// The cashier.
    pub operator_id: Option<String>,
    /// The identified customer, if a loyalty card was presented.
    pub customer_id: Option<String>,
    /// ISO 4217 code of all amounts.
    pub currency: String,
    /// Grand total in minor units (negative for a refund).
    pub total_minor: i64,
    /// Tax included in the total.
    pub tax_minor: i64,
    /// When the POS closed the transaction.
    pub occurred_at_ms: Option<i64>,
    /// The lines.
    pub lines: Vec<PosLine>,
}

/// One line of a POS transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosLine {
    /// `sale`, `return`, `tender`, `tax`, `loyalty`, `discount`, …
    pub kind: String,
    /// The item, for item lines (any GTIN form; stored as given).
    pub gtin: Option<String>,
    /// Text from the POS.
    pub description: Option<String>,
    /// Quantity in thousandths (weighed goods).
    pub quantity_milli: i64,
    /// Amount in minor units.
    pub amount_minor: i64,
}

pub(super) fn record_pos_transaction(
    conn: &mut Connection,
    captured: &Captured<PosTransaction>,
) -> Result<Recorded, StoreError> {
    let t = &captured.event;
    Currency::new(&t.currency).map_err(|e| StoreError::invalid("pos_transaction.currency", e.to_string()))?;
    time::Date::parse(
        &t.business_day,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|e| {
        StoreError::invalid(
            "pos_transaction.business_day",
            format!("{:?} is not a YYYY-MM-DD date: {e}", t.business_day),
        )
    })?;
    for (field, value) in [
        ("store_id", &t.store_id),
        ("workstation", &t.workstation),
        ("kind", &t.kind),
    ] {
        if value.trim().is_empty() {
            return Err(StoreError::invalid(
                format!("pos_transaction.{field}"),
                "must not be empty",
            ));
        }
    }
    let tx_id = captured.idempotency_key.to_string();
    let outcome = record_event(
        conn,
        UplinkStream::PosTransactions,
        "pos_transaction",
        captured,
        |tx| {
            let known: Option<String> = tx
                .prepare_cached(
                    "SELECT tx_id FROM pos_transactions WHERE tx_id = ?1
                 OR (store_id = ?2 AND workstation = ?3 AND business_day = ?4 AND sequence_number = ?5)",
                )?
                .query_row(
                    params![
                        tx_id,
                        t.store_id,
                        t.workstation,
                        t.business_day,
                        t.sequence_number
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_some() {
                return Ok(Applied::AlreadyRecorded);
            }
            tx.prepare_cached(
            "INSERT INTO pos_transactions (tx_id, store_id, workstation, sequence_number, business_day, kind,
                operator_id, customer_id, currency, total_minor, tax_minor, occurred_at_ms, recorded_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            tx_id,
            t.store_id,
            t.workstation,
            t.sequence_number,
            t.business_day,
            t.kind,
            t.operator_id,
            t.customer_id,
            t.currency,
            t.total_minor,
            t.tax_minor,
            t.occurred_at_ms,
            captured.captured_at_ms
        ])?;
            let mut line = tx.prepare_cached(
            "INSERT INTO pos_lines (tx_id, line_no, kind, gtin, description, quantity_milli, amount_minor)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
            for (i, l) in t.lines.iter().enumerate() {
                line.execute(params![
                    tx_id,
                    i as i64 + 1,
                    l.kind,
                    l.gtin,
                    l.description,
                    l.quantity_milli,
                    l.amount_minor
                ])?;
            }
            Ok(Applied::Changed {
                result: (),
                payload: t,
            })
        },
    )?;
    Ok(recorded(outcome))
}

/// A BOPIS order event from the console or the kiosk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderUpdate {
    /// The order.
    pub order_id: String,
    /// What happened.
    pub event: OrderEvent,
    /// The associate who did it (none for a kiosk check-in or an automatic expiry).
    pub associate_id: Option<String>,
}

/// What an order event changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderEventOutcome {
    /// State before.
    pub from: OrderStatus,
    /// State after.
    pub to: OrderStatus,
    /// The outbox position of the event.
    pub recorded: Recorded,
}

/// The event as the cloud receives it: the update plus the transition it caused.
#[derive(Serialize)]
struct OrderEventPayload<'a> {
    order_id: &'a str,
    #[serde(flatten)]
    event: &'a OrderEvent,
    from: OrderStatus,
    to: OrderStatus,
    associate_id: Option<&'a str>,
}

pub(super) fn record_order_event(
    conn: &mut Connection,
    captured: &Captured<OrderUpdate>,
) -> Result<OrderEventOutcome, StoreError> {
    let u = &captured.event;
    let at = captured.captured_at_ms;
    let outcome = record_event(conn, UplinkStream::OrderEvents, u.event.name(), captured, |tx| {
        let from = order_status(tx, &u.order_id)?;
        let deadline: Option<i64> = tx
            .prepare_cached("SELECT pickup_deadline_ms FROM orders WHERE order_id = ?1")?
            .query_row([&u.order_id], |r| r.get(0))?;
        let lines: Vec<(u32, i64, String)> = tx
            .prepare_cached(
                "SELECT line_no, qty_ordered, gtin FROM order_lines WHERE order_id = ?1 ORDER BY line_no",
            )?
            .query_map([&u.order_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let line_numbers: Vec<u32> = lines.iter().map(|l| l.0).collect();
        let to = bopis::transition(
            from,
            &u.event,
            &PickupContext {
                now_ms: at,
                pickup_deadline_ms: deadline,
                line_numbers: &line_numbers,
            },
        )?;
        tx.prepare_cached("UPDATE orders SET status = ?2, updated_at_ms = ?3 WHERE order_id = ?1")?
            .execute(params![u.order_id, to.as_str(), at])?;
        if let OrderEvent::HandOver { refused_lines } = &u.event {
            // Handed-over units leave the shelf count and the reservation; refused
            // units go back to the shelf (only the reservation is released).
            tx.prepare_cached("UPDATE orders SET fulfilled_at_ms = ?2 WHERE order_id = ?1")?
                .execute(params![u.order_id, at])?;
            for (line_no, qty, gtin) in &lines {
                let refused = refused_lines.contains(line_no);
                if refused {
                    tx.prepare_cached(
                        "UPDATE order_lines SET qty_refused = qty_ordered WHERE order_id = ?1 AND line_no = ?2",
                    )?
                    .execute(params![u.order_id, line_no])?;
                }
                let handed = if refused { 0 } else { *qty };
                tx.prepare_cached(
                    "UPDATE stock SET on_hand = on_hand - ?2, reserved_bopis = max(reserved_bopis - ?3, 0),
                     updated_at_ms = ?4 WHERE gtin = ?1",
                )?
                .execute(params![gtin, handed, qty, at])?;
            }
        }
        if matches!(to, OrderStatus::Expired | OrderStatus::Cancelled) {
            for (_, qty, gtin) in &lines {
                tx.prepare_cached(
                    "UPDATE stock SET reserved_bopis = max(reserved_bopis - ?2, 0), updated_at_ms = ?3
                     WHERE gtin = ?1",
                )?
                .execute(params![gtin, qty, at])?;
            }
        }
        Ok(Applied::Changed {
            result: (from, to),
            payload: OrderEventPayload {
                order_id: &u.order_id,
                event: &u.event,
                from,
                to,
                associate_id: u.associate_id.as_deref(),
            },
        })
    })?;
    match outcome {
        Some(((from, to), recorded)) => Ok(OrderEventOutcome { from, to, recorded }),
        // A redelivery: report where the order stands now.
        None => {
            let now = order_status(conn, &u.order_id)?;
            Ok(OrderEventOutcome {
                from: now,
                to: now,
                recorded: Recorded::Duplicate,
            })
        }
    }
}

/// The pickup state of a BOPIS order; an error for a missing or delivered order.
fn order_status(conn: &Connection, order_id: &str) -> Result<OrderStatus, StoreError> {
    let (status, kind): (String, String) = conn
        .prepare_cached("SELECT status, kind FROM orders WHERE order_id = ?1")?
        .query_row([order_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: "order",
            id: order_id.to_string(),
        })?;
    if kind != "bopis" {
        return Err(StoreError::invalid(
            "order_event.order_id",
            format!("order {order_id} is a delivered order, not a store pickup"),
        ));
    }
    status
        .parse()
        .map_err(|e| StoreError::Internal(format!("order {order_id} has an unknown status: {e}")))
}

/// Where returned goods go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Back on the shelf: the stock count goes up.
    Restock,
    /// Not sellable: recorded, stock unchanged.
    Damaged,
}

impl Disposition {
    fn as_str(self) -> &'static str {
        match self {
            Disposition::Restock => "restock",
            Disposition::Damaged => "damaged",
        }
    }
}

/// A BORIS return as the associate enters it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReturnRecord {
    /// The online order the goods came from.
    pub order_id: String,
    /// Which lines and how many units.
    pub lines: Vec<RequestedLine>,
    /// Why the customer returns them (from the reason list).
    pub reason: String,
    /// Condition noted by the associate.
    pub condition: String,
    /// Restock or damaged.
    pub disposition: Disposition,
    /// How the cloud should refund: original tender, gift card, …
    pub refund_method: String,
    /// Who took the return.
    pub associate_id: Option<String>,
    /// A manager's override of an overridable refusal.
    pub manager_override: Option<ManagerOverride>,
}

/// A recorded return.
#[derive(Debug, Clone, Serialize)]
pub struct ReturnOutcome {
    /// The policy decision (allowed, possibly with overridden reasons); `None`
    /// for a redelivered return that was recorded before.
    pub decision: Option<Decision>,
    /// The outbox position.
    pub recorded: Recorded,
}

#[derive(Serialize)]
struct ReturnPayload<'a> {
    return_id: String,
    #[serde(flatten)]
    record: &'a ReturnRecord,
    refund_minor: i64,
    currency: String,
    overridden: Vec<String>,
}

/// An online order as the return policy sees it: when it was received, its
/// currency, and its lines with what is left to return (refused units were never
/// received). Read by the return check of the screens and inside `record_return`'s
/// transaction, so both judge the same facts.
pub fn returnable_order(
    conn: &Connection,
    order_id: &str,
) -> Result<(Option<i64>, String, Vec<ReturnableLine>), StoreError> {
    let (fulfilled_at_ms, currency): (Option<i64>, String) = conn
        .prepare_cached("SELECT fulfilled_at_ms, currency FROM orders WHERE order_id = ?1")?
        .query_row([order_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: "order",
            id: order_id.to_string(),
        })?;
    let lines: Vec<ReturnableLine> = conn
        .prepare_cached(
            "SELECT line_no, gtin, qty_ordered - qty_refused, qty_returned, final_sale, unit_price_minor
             FROM order_lines WHERE order_id = ?1 ORDER BY line_no",
        )?
        .query_map([order_id], |row| {
            Ok(ReturnableLine {
                line_no: row.get(0)?,
                gtin: row.get(1)?,
                ordered_qty: row.get(2)?,
                returned_qty: row.get(3)?,
                final_sale: row.get(4)?,
                unit_price_minor: row.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok((fulfilled_at_ms, currency, lines))
}

pub(super) fn record_return(
    conn: &mut Connection,
    policy: &ReturnPolicy,
    captured: &Captured<ReturnRecord>,
) -> Result<ReturnOutcome, StoreError> {
    let r = &captured.event;
    for (field, value) in [
        ("return.reason", &r.reason),
        ("return.condition", &r.condition),
        ("return.refund_method", &r.refund_method),
    ] {
        if value.trim().is_empty() {
            return Err(StoreError::invalid(field, "must not be empty"));
        }
    }
    let return_id = captured.idempotency_key.to_string();
    let outcome = record_event(conn, UplinkStream::Returns, "return", captured, |tx| {
        let already = tx
            .prepare_cached("SELECT 1 FROM returns WHERE return_id = ?1")?
            .query_row([&return_id], |_| Ok(()))
            .optional()?
            .is_some();
        if already {
            // Checked and written the first time it arrived.
            return Ok(Applied::AlreadyRecorded);
        }
        let (fulfilled_at_ms, currency, lines) = returnable_order(tx, &r.order_id)?;
        let decision = policy.check(
            &ReturnableOrder {
                fulfilled_at_ms,
                lines: &lines,
            },
            &ReturnRequest {
                lines: &r.lines,
                now_ms: captured.captured_at_ms,
                manager_override: r.manager_override.as_ref(),
            },
        );
        if !decision.allowed {
            return Err(StoreError::ReturnRefused(Box::new(decision)));
        }
        let (by, why) = match (&r.manager_override, decision.overridden.is_empty()) {
            (Some(o), false) => (Some(o.associate_id.as_str()), Some(o.reason.as_str())),
            _ => (None, None),
        };
        tx.prepare_cached(
            "INSERT INTO returns (return_id, order_id, reason, condition, disposition, refund_method,
                refund_minor, currency, status, associate_id, override_by, override_reason, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'recorded', ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            return_id,
            r.order_id,
            r.reason,
            r.condition,
            r.disposition.as_str(),
            r.refund_method,
            decision.refund_minor,
            currency,
            r.associate_id,
            by,
            why,
            captured.captured_at_ms
        ])?;
        for l in &r.lines {
            tx.prepare_cached("INSERT INTO return_lines (return_id, line_no, qty) VALUES (?1, ?2, ?3)")?
                .execute(params![return_id, l.line_no, l.qty])?;
            tx.prepare_cached(
                "UPDATE order_lines SET qty_returned = qty_returned + ?3 WHERE order_id = ?1 AND line_no = ?2",
            )?
            .execute(params![r.order_id, l.line_no, l.qty])?;
            let gtin = lines.iter().find(|x| x.line_no == l.line_no).map(|x| &x.gtin);
            if let (Disposition::Restock, Some(gtin)) = (r.disposition, gtin) {
                tx.prepare_cached(
                    "UPDATE stock SET on_hand = on_hand + ?2, updated_at_ms = ?3 WHERE gtin = ?1",
                )?
                .execute(params![gtin, l.qty, captured.captured_at_ms])?;
            }
        }
        let payload = ReturnPayload {
            return_id: return_id.clone(),
            record: r,
            refund_minor: decision.refund_minor,
            currency,
            overridden: decision.overridden.iter().map(|x| x.to_string()).collect(),
        };
        Ok(Applied::Changed {
            result: decision,
            payload,
        })
    })?;
    Ok(match outcome {
        Some((decision, recorded)) => ReturnOutcome {
            decision: Some(decision),
            recorded,
        },
        None => ReturnOutcome {
            decision: None,
            recorded: Recorded::Duplicate,
        },
    })
}

/// A wishlist edit made in the store (console or kiosk).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WishlistEdit {
    /// Whose wishlist.
    pub customer_id: String,
    /// The item, any GTIN form.
    pub gtin: String,
    /// Add or remove.
    pub action: WishlistAction,
    /// `store-console` or `store-kiosk`.
    pub channel: String,
}

pub(super) fn record_wishlist_edit(
    conn: &mut Connection,
    captured: &Captured<WishlistEdit>,
) -> Result<Recorded, StoreError> {
    let e = &captured.event;
    let gtin = super::entities::gtin14("wishlist_edit.gtin", &e.gtin)?;
    let op = WishlistOp {
        customer_id: e.customer_id.clone(),
        gtin: gtin.clone(),
        action: e.action,
        at_ms: captured.captured_at_ms,
        op_id: captured.idempotency_key.to_string(),
        channel: e.channel.clone(),
    };
    let outcome = record_event(conn, UplinkStream::WishlistOps, "wishlist_op", captured, |tx| {
        apply_wishlist_op(tx, &op)?;
        // Every op captured here goes to the cloud, even one that loses locally
        // to a newer cloud edit: the cloud applies the same rule and converges.
        Ok(Applied::Changed {
            result: (),
            payload: &op,
        })
    })?;
    Ok(recorded(outcome))
}

/// Applies a wishlist op (from the store or, later, the cloud) with the merge rule
/// of `domain::wishlist`. Returns whether the stored state changed.
pub(crate) fn apply_wishlist_op(tx: &Transaction<'_>, op: &WishlistOp) -> Result<bool, StoreError> {
    let current: Option<ItemState> = tx
        .prepare_cached(
            "SELECT present, op_at_ms, op_id, added_at_ms, channel FROM wishlist_items
             WHERE customer_id = ?1 AND gtin = ?2",
        )?
        .query_row(params![op.customer_id, op.gtin], |r| {
            Ok(ItemState {
                present: r.get(0)?,
                at_ms: r.get(1)?,
                op_id: r.get(2)?,
                added_at_ms: r.get(3)?,
                channel: r.get(4)?,
            })
        })
        .optional()?;
    let Some(next) = wishlist::apply(current.as_ref(), op) else {
        return Ok(false);
    };
    tx.prepare_cached(super::entities::sql::WISHLIST_ITEM)?
        .execute(params![
            op.customer_id,
            op.gtin,
            next.present,
            next.added_at_ms,
            next.channel,
            next.at_ms,
            next.op_id
        ])?;
    Ok(true)
}

/// A receipt captured from a printer stream by the journal tap (text already
/// PAN-masked by `firmware_interfaces::escpos`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalReceipt {
    /// The printer (tap) device.
    pub device_id: String,
    /// The receipt's lines, joined with `\n`.
    pub text: String,
}

pub(super) fn record_journal_receipt(
    conn: &mut Connection,
    captured: &Captured<JournalReceipt>,
) -> Result<Recorded, StoreError> {
    let r = &captured.event;
    if r.device_id.trim().is_empty() {
        return Err(StoreError::invalid("journal.device_id", "must not be empty"));
    }
    let journal_id = captured.idempotency_key.to_string();
    let outcome = record_event(conn, UplinkStream::Journal, "receipt", captured, |tx| {
        let inserted = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO journal_records (journal_id, device_id, text, captured_at_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![journal_id, r.device_id, r.text, captured.captured_at_ms])?;
        if inserted == 0 {
            return Ok(Applied::AlreadyRecorded);
        }
        Ok(Applied::Changed {
            result: (),
            payload: r,
        })
    })?;
    Ok(recorded(outcome))
}

/// A scan or engagement event for the cloud's analytics (stream `scan_events`):
/// ids and kinds only, never a card number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanEvent {
    /// The scanner or reader.
    pub device_id: String,
    /// `product`, `order_code`, `receipt_code`, `unknown`, `invalid`,
    /// `customer_identified`, `unknown_card`, `payment_card_rejected`.
    pub kind: String,
    /// The product, for product scans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtin14: Option<String>,
    /// The customer, when a loyalty card identified one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

pub(super) fn record_scan_event(
    conn: &mut Connection,
    captured: &Captured<ScanEvent>,
) -> Result<Recorded, StoreError> {
    if captured.event.device_id.trim().is_empty() {
        return Err(StoreError::invalid("scan_event.device_id", "must not be empty"));
    }
    // Nothing to change locally: the event is only for the cloud.
    let outcome = record_event(conn, UplinkStream::ScanEvents, "scan", captured, |_| {
        Ok(Applied::Changed {
            result: (),
            payload: &captured.event,
        })
    })?;
    Ok(recorded(outcome))
}

/// The state of a device, as the status screens show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatusRecord {
    /// The device id from the configuration.
    pub device_id: String,
    /// `serial`, `tcp`, `wedge`, `journal`, …
    pub kind: String,
    /// `connected`, `disconnected` or `error`.
    pub state: String,
    /// Why it is not connected.
    pub reason: Option<String>,
    /// When the state last changed.
    pub updated_at_ms: i64,
}

pub(super) fn set_device_status(conn: &mut Connection, s: &DeviceStatusRecord) -> Result<(), StoreError> {
    if !matches!(s.state.as_str(), "connected" | "disconnected" | "error") {
        return Err(StoreError::invalid(
            "device_status.state",
            format!("expected connected, disconnected or error, found {:?}", s.state),
        ));
    }
    conn.prepare_cached(
        "INSERT OR REPLACE INTO device_status (device_id, kind, state, reason, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![s.device_id, s.kind, s.state, s.reason, s.updated_at_ms])?;
    Ok(())
}

/// A cash sale of a pen on POS-1, for tests.
#[cfg(test)]
pub(crate) fn example_sale(seq: i64) -> PosTransaction {
    PosTransaction {
        store_id: "store-001".into(),
        workstation: "POS-1".into(),
        sequence_number: seq,
        business_day: "2026-11-23".into(),
        kind: "sale".into(),
        operator_id: Some("A001".into()),
        customer_id: None,
        currency: "EUR".into(),
        total_minor: 1999,
        tax_minor: 319,
        occurred_at_ms: Some(1_790_000_000_000),
        lines: vec![
            PosLine {
                kind: "sale".into(),
                gtin: Some("4006381333931".into()),
                description: Some("Pen".into()),
                quantity_milli: 1000,
                amount_minor: 1999,
            },
            PosLine {
                kind: "tender".into(),
                gtin: None,
                description: Some("cash".into()),
                quantity_milli: 1000,
                amount_minor: 1999,
            },
        ],
    }
}
