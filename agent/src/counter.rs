//! The counter's work behind the screens: BOPIS arrival and hand-over, BORIS
//! return checks and returns, and their slips on the receipt printer.
//!
//! Every event here is recorded through the store (state change and outbox row in
//! one transaction) before the screen is told "done"; the slip is printed after
//! the commit and never holds it up.
//!
//! The offline limit: while the store is offline the cloud cannot confirm an
//! order's return history (another store may have taken a return of the same line
//! since the last sync), so a return refunding more than
//! `returns.offline_limit_minor` needs a manager's approval. It is checked here, on
//! top of the return policy (which the store checks again inside the transaction).

use crate::domain::bopis::OrderEvent;
use crate::domain::money::{Currency, Money};
use crate::domain::returns::{
    Decision, ManagerOverride, Reason, RequestedLine, ReturnPolicy, ReturnRequest, ReturnableLine,
    ReturnableOrder,
};
use crate::events::{Captured, now_ms};
use crate::printers::Printer;
use crate::store::records::{Disposition, OrderUpdate, ReturnRecord, returnable_order};
use crate::store::{Store, StoreError, queries};
use firmware_interfaces::escpos::printer::{pickup_slip, return_receipt};
use kiosk_ui::DataError;
use kiosk_ui::model::{
    HandOverDone, HandOverRequest, OrderView, ReturnCheck, ReturnDone, ReturnEntry, ReturnReason, masked_name,
};
use std::sync::Arc;

/// What the counter needs besides the store.
#[derive(Debug, Clone, Default)]
pub struct CounterOptions {
    /// The receipt printer (none configured: nothing prints).
    pub printer: Printer,
    /// Offline, refunds above this (minor units) need a manager.
    pub offline_limit_minor: i64,
}

/// The counter's operations over the store.
pub struct Counter {
    store: Arc<Store>,
    options: CounterOptions,
}

fn store_error(e: StoreError) -> DataError {
    crate::screens::data_error(e)
}

impl Counter {
    /// The counter over `store`.
    pub fn new(store: Arc<Store>, options: CounterOptions) -> Counter {
        Counter { store, options }
    }

    /// Whether slips can be printed.
    pub fn has_printer(&self) -> bool {
        self.options.printer.configured()
    }

    async fn order(&self, order_id: &str) -> Result<OrderView, DataError> {
        let id = order_id.to_string();
        self.store
            .reads()
            .read(move |c| queries::order_view(c, &id))
            .await
            .map_err(store_error)?
            .ok_or_else(|| DataError::NotFound(format!("no order {order_id} in this store's data")))
    }

    async fn order_event(
        &self,
        order_id: &str,
        associate_id: &str,
        event: OrderEvent,
    ) -> Result<(), DataError> {
        self.store
            .record_order_event(Captured::now(OrderUpdate {
                order_id: order_id.to_string(),
                event,
                associate_id: Some(associate_id.to_string()),
            }))
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    /// The customer is at the counter for their pickup.
    pub async fn mark_arrived(&self, order_id: &str, associate_id: &str) -> Result<OrderView, DataError> {
        self.order_event(order_id, associate_id, OrderEvent::CustomerArrived)
            .await?;
        tracing::info!(order_id = %order_id, associate_id = %associate_id, "Customer marked as arrived at the counter.");
        self.order(order_id).await
    }

    /// Hands the order over (refused lines stay in the store), then prints the
    /// slip when asked.
    pub async fn hand_over(
        &self,
        order_id: &str,
        associate_id: &str,
        request: HandOverRequest,
    ) -> Result<HandOverDone, DataError> {
        let refused = request.refused_lines.clone();
        self.order_event(
            order_id,
            associate_id,
            OrderEvent::HandOver {
                refused_lines: request.refused_lines,
            },
        )
        .await?;
        let order = self.order(order_id).await?;
        let printed = request.print_slip && self.print_pickup_slip(&order, &refused).await;
        Ok(HandOverDone { order, printed })
    }

    async fn print_pickup_slip(&self, order: &OrderView, refused: &[u32]) -> bool {
        if !self.options.printer.configured() {
            return false;
        }
        let id = order.order_id.clone();
        let profile = self
            .store
            .reads()
            .read(move |c| queries::order_customer_profile(c, &id))
            .await
            .ok()
            .flatten();
        let name = profile.as_ref().map(masked_name).unwrap_or_default();
        let lines: Vec<(u32, &str)> = order
            .lines
            .iter()
            .filter(|l| !refused.contains(&l.line_no))
            .map(|l| (l.qty_ordered, l.name.as_str()))
            .collect();
        // The QR carries the order id (the receipt-code look-up), never the pickup
        // code: the store keeps only its hash.
        match pickup_slip(&order.order_id, &name, &lines, &order.order_id) {
            Ok(bytes) => self.options.printer.print(bytes),
            Err(e) => {
                tracing::warn!(order_id = %order.order_id, error = %e, "The pickup slip could not be encoded.");
                false
            }
        }
    }

    /// The return policy's and the offline limit's verdict on `entry`.
    pub async fn check_return(&self, entry: &ReturnEntry) -> Result<ReturnCheck, DataError> {
        let order_id = entry.order_id.clone();
        let (order, online) = self
            .store
            .reads()
            .read(move |c| Ok((returnable_order(c, &order_id)?, queries::status_bar(c)?.online)))
            .await
            .map_err(store_error)?;
        let (fulfilled_at_ms, currency, lines) = order;
        Ok(verdict(
            &self.store.options().return_policy,
            entry,
            fulfilled_at_ms,
            &currency,
            &lines,
            online,
            self.options.offline_limit_minor,
            now_ms(),
        ))
    }

    /// Records the return when the check allows it, then prints the receipt.
    pub async fn record_return(
        &self,
        entry: ReturnEntry,
    ) -> Result<Result<ReturnDone, ReturnCheck>, DataError> {
        let check = self.check_return(&entry).await?;
        if !check.allowed {
            return Ok(Err(check));
        }
        let disposition = match entry.disposition.as_str() {
            "restock" => Disposition::Restock,
            "damaged" => Disposition::Damaged,
            other => {
                return Err(DataError::Invalid(format!(
                    "disposition must be restock or damaged, not {other:?}"
                )));
            }
        };
        let captured = Captured::now(ReturnRecord {
            order_id: entry.order_id.clone(),
            lines: requested(&entry),
            reason: entry.reason.clone(),
            condition: entry.condition.clone(),
            disposition,
            refund_method: entry.refund_method.clone(),
            associate_id: Some(entry.associate_id.clone()),
            manager_override: entry.approval.as_ref().map(|a| ManagerOverride {
                associate_id: a.manager_id.clone(),
                reason: a.reason.clone(),
            }),
        });
        let return_id = captured.idempotency_key.to_string();
        let outcome = match self.store.record_return(captured).await {
            Ok(o) => o,
            // The order changed between the check and the commit (a sync, another
            // counter): the store's own check is the one that counts.
            Err(StoreError::ReturnRefused(decision)) => {
                return Ok(Err(from_decision(&decision, &check.currency, Vec::new())));
            }
            Err(e) => return Err(store_error(e)),
        };
        // What the approval lifted: the policy's reasons as the store judged them
        // at the commit, and the offline limit.
        let mut overridden: Vec<String> = outcome
            .decision
            .as_ref()
            .map(|d| d.overridden.iter().map(Reason::to_string).collect())
            .unwrap_or_default();
        overridden.extend(
            check
                .overridden
                .iter()
                .filter(|r| r.code == "offline_limit")
                .map(|r| r.text.clone()),
        );
        let done = ReturnDone {
            return_id,
            refund_minor: check.refund_minor,
            currency: check.currency.clone(),
            overridden,
            printed: false,
        };
        let printed = entry.print_receipt && self.print_return_receipt(&entry, &done).await;
        Ok(Ok(ReturnDone { printed, ..done }))
    }

    async fn print_return_receipt(&self, entry: &ReturnEntry, done: &ReturnDone) -> bool {
        if !self.options.printer.configured() {
            return false;
        }
        let Ok(order) = self.order(&entry.order_id).await else {
            return false;
        };
        let lines: Vec<(u32, &str)> = entry
            .lines
            .iter()
            .filter_map(|r| {
                let line = order.lines.iter().find(|l| l.line_no == r.line_no)?;
                Some((r.qty, line.name.as_str()))
            })
            .collect();
        let refund = Currency::new(&done.currency)
            .map(|c| Money::new(done.refund_minor, c).to_string())
            .unwrap_or_else(|_| format!("{} {}", done.refund_minor, done.currency));
        let mut reasons: Vec<&str> = vec![entry.reason.as_str()];
        reasons.extend(done.overridden.iter().map(String::as_str));
        match return_receipt(&done.return_id, &entry.order_id, &lines, &refund, &reasons) {
            Ok(bytes) => self.options.printer.print(bytes),
            Err(e) => {
                tracing::warn!(return_id = %done.return_id, error = %e, "The return receipt could not be encoded.");
                false
            }
        }
    }
}

fn requested(entry: &ReturnEntry) -> Vec<RequestedLine> {
    entry
        .lines
        .iter()
        .map(|l| RequestedLine {
            line_no: l.line_no,
            qty: l.qty,
        })
        .collect()
}

/// The code of a policy reason (its serde tag), e.g. `outside_window`.
fn reason_code(reason: &Reason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_string))
        .unwrap_or_else(|| "policy".into())
}

fn reason_view(reason: &Reason) -> ReturnReason {
    ReturnReason {
        code: reason_code(reason),
        text: reason.to_string(),
        overridable: reason.overridable(),
    }
}

fn from_decision(decision: &Decision, currency: &str, extra_blocking: Vec<ReturnReason>) -> ReturnCheck {
    let mut blocking: Vec<ReturnReason> = decision.blocking.iter().map(reason_view).collect();
    blocking.extend(extra_blocking);
    ReturnCheck {
        allowed: blocking.is_empty(),
        manager_can_approve: !blocking.is_empty() && blocking.iter().all(|r| r.overridable),
        blocking,
        overridden: decision.overridden.iter().map(reason_view).collect(),
        refund_minor: decision.refund_minor,
        currency: currency.to_string(),
        offline_limit_exceeded: false,
    }
}

/// The verdict on a return: the policy's decision, plus the offline limit.
#[allow(clippy::too_many_arguments)]
fn verdict(
    policy: &ReturnPolicy,
    entry: &ReturnEntry,
    fulfilled_at_ms: Option<i64>,
    currency: &str,
    lines: &[ReturnableLine],
    online: bool,
    offline_limit_minor: i64,
    now_ms: i64,
) -> ReturnCheck {
    let requested = requested(entry);
    let manager_override = entry.approval.as_ref().map(|a| ManagerOverride {
        associate_id: a.manager_id.clone(),
        reason: a.reason.clone(),
    });
    let decision = policy.check(
        &ReturnableOrder {
            fulfilled_at_ms,
            lines,
        },
        &ReturnRequest {
            lines: &requested,
            now_ms,
            manager_override: manager_override.as_ref(),
        },
    );
    // What the refund would be, also while something else blocks it, so the
    // offline limit is judged on the real amount.
    let gross: i64 = requested
        .iter()
        .filter_map(|r| {
            let l = lines.iter().find(|l| l.line_no == r.line_no)?;
            l.unit_price_minor.checked_mul(i64::from(r.qty))
        })
        .fold(0i64, |a, b| a.saturating_add(b));
    let exceeded = !online && gross > offline_limit_minor;
    let limit_reason = ReturnReason {
        code: "offline_limit".into(),
        text: format!(
            "The store is offline and the refund is above the offline limit of {}; a manager must approve.",
            Currency::new(currency)
                .map(|c| Money::new(offline_limit_minor, c).to_string())
                .unwrap_or_else(|_| offline_limit_minor.to_string())
        ),
        overridable: true,
    };
    let mut check = if exceeded && entry.approval.is_none() {
        from_decision(&decision, currency, vec![limit_reason])
    } else {
        let mut c = from_decision(&decision, currency, Vec::new());
        if exceeded {
            c.overridden.push(limit_reason);
        }
        c
    };
    check.offline_limit_exceeded = exceeded;
    if !check.allowed {
        check.refund_minor = 0;
    } else {
        check.refund_minor = decision.refund_minor;
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiosk_ui::model::{ManagerApproval, ReturnLine};

    const DAY: i64 = 86_400_000;

    fn lines() -> Vec<ReturnableLine> {
        vec![
            ReturnableLine {
                line_no: 1,
                gtin: "04006381333931".into(),
                ordered_qty: 2,
                returned_qty: 0,
                final_sale: false,
                unit_price_minor: 6_000,
            },
            ReturnableLine {
                line_no: 2,
                gtin: "09520123456788".into(),
                ordered_qty: 1,
                returned_qty: 0,
                final_sale: true,
                unit_price_minor: 1_000,
            },
        ]
    }

    fn entry(lines: &[(u32, u32)], approval: bool) -> ReturnEntry {
        ReturnEntry {
            order_id: "WEB-1".into(),
            lines: lines
                .iter()
                .map(|&(line_no, qty)| ReturnLine { line_no, qty })
                .collect(),
            reason: "wrong_size".into(),
            condition: "unopened".into(),
            disposition: "restock".into(),
            refund_method: "original_tender".into(),
            associate_id: "A1".into(),
            approval: approval.then(|| ManagerApproval {
                manager_id: "M1".into(),
                reason: "loyal customer".into(),
            }),
            print_receipt: false,
        }
    }

    fn run(e: &ReturnEntry, days_ago: i64, online: bool) -> ReturnCheck {
        let now = 1_000 * DAY;
        verdict(
            &ReturnPolicy::default(),
            e,
            Some(now - days_ago * DAY),
            "EUR",
            &lines(),
            online,
            10_000,
            now,
        )
    }

    #[test]
    fn an_ordinary_return_is_allowed_with_its_refund() {
        let c = run(&entry(&[(1, 1)], false), 3, true);
        assert!(c.allowed, "{c:?}");
        assert_eq!(c.refund_minor, 6_000);
        assert!(c.blocking.is_empty() && !c.offline_limit_exceeded);
    }

    #[test]
    fn a_late_return_is_refused_until_a_manager_approves() {
        let c = run(&entry(&[(1, 1)], false), 45, true);
        assert!(!c.allowed);
        assert_eq!(c.blocking[0].code, "outside_window");
        assert!(c.blocking[0].text.contains("45 days"), "{}", c.blocking[0].text);
        assert!(c.manager_can_approve);
        assert_eq!(c.refund_minor, 0);
        let c = run(&entry(&[(1, 1)], true), 45, true);
        assert!(c.allowed, "{c:?}");
        assert_eq!(c.overridden[0].code, "outside_window");
        assert_eq!(c.refund_minor, 6_000);
    }

    #[test]
    fn too_many_units_cannot_be_approved() {
        let c = run(&entry(&[(1, 3)], true), 3, true);
        assert!(!c.allowed);
        assert_eq!(c.blocking[0].code, "exceeds_remaining");
        assert!(!c.manager_can_approve);
    }

    #[test]
    fn offline_a_refund_above_the_limit_needs_a_manager() {
        // 2 × 60.00 = 120.00 > 100.00 offline.
        let c = run(&entry(&[(1, 2)], false), 3, false);
        assert!(!c.allowed && c.offline_limit_exceeded);
        assert_eq!(c.blocking[0].code, "offline_limit");
        assert!(c.manager_can_approve);
        // Under the limit offline, or the same online: no manager.
        assert!(run(&entry(&[(1, 1)], false), 3, false).allowed);
        assert!(run(&entry(&[(1, 2)], false), 3, true).allowed);
        // Approved: recorded, the lifted limit kept with the return.
        let c = run(&entry(&[(1, 2)], true), 3, false);
        assert!(c.allowed, "{c:?}");
        assert_eq!(c.overridden[0].code, "offline_limit");
        assert_eq!(c.refund_minor, 12_000);
    }

    #[test]
    fn final_sale_lines_are_named() {
        let c = run(&entry(&[(2, 1)], false), 3, true);
        assert_eq!(c.blocking[0].code, "final_sale");
        assert!(c.blocking[0].text.contains("Line 2"));
    }
}
