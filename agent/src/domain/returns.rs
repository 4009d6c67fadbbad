//! The return policy for BORIS (buy online, return in store).
//!
//! A customer brings back something bought online. Before the associate takes it, the
//! agent checks the request against the policy — the return window, what is left to
//! return on each line, final-sale items — and computes the refund. The check must work
//! offline, so it is pure: the caller passes the order as the store knows it, the
//! request and the current time.
//!
//! Invariants:
//! - [`ReturnPolicy::check`] always returns a [`Decision`] listing every problem it
//!   found, not just the first, so the associate can fix everything in one go.
//! - `Decision::allowed` is true exactly when `Decision::blocking` is empty, and the
//!   refund is 0 whenever the return is not allowed.
//! - Only the window and final-sale rules can be overridden, only by a manager, and only
//!   with a written reason; an overridden rule is kept in `Decision::overridden` so the
//!   override is reported, never silently dropped.
//! - Money is integer minor units with checked arithmetic; an overflow blocks the return.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Milliseconds in a day; the window counts whole 24-hour days since fulfilment.
const DAY_MS: i64 = 86_400_000;

/// The store's return rules that vary by retailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReturnPolicy {
    /// How many whole days after delivery or pickup a return is accepted; a return
    /// exactly `window_days` days after is still inside. Defaults to 30.
    pub window_days: u32,
}

/// The common 30-day window.
impl Default for ReturnPolicy {
    fn default() -> Self {
        ReturnPolicy { window_days: 30 }
    }
}

/// An online order as the return check needs to see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReturnableOrder<'a> {
    /// When the customer received the order (delivery or pickup), Unix milliseconds;
    /// `None` while it has not been received, which blocks any return.
    pub fulfilled_at_ms: Option<i64>,
    /// The order's lines with what has already been returned.
    pub lines: &'a [ReturnableLine],
}

/// One line of an online order, with its return history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnableLine {
    /// The line number on the order, as the cloud numbers it.
    pub line_no: u32,
    /// The product's GTIN, so the associate can scan the item against the line.
    pub gtin: String,
    /// How many units were bought on this line.
    pub ordered_qty: u32,
    /// How many units have already been returned (in any store or by post).
    pub returned_qty: u32,
    /// Whether the item was sold as final sale (not returnable without an override).
    pub final_sale: bool,
    /// The price paid per unit, in minor units of the order's currency.
    pub unit_price_minor: i64,
}

/// One line the customer wants to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedLine {
    /// The order line being returned.
    pub line_no: u32,
    /// How many units of it are being returned.
    pub qty: u32,
}

/// A manager's authorisation to accept a return the policy would block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerOverride {
    /// Who authorised it; the caller is responsible for authenticating this associate.
    pub associate_id: String,
    /// Why, in the manager's words; required, because overrides are audited.
    pub reason: String,
}

/// What the customer asks to return, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReturnRequest<'a> {
    /// The lines and quantities to return; each line at most once.
    pub lines: &'a [RequestedLine],
    /// The current time in Unix milliseconds, from the caller's clock.
    pub now_ms: i64,
    /// A manager override, if one was given for this return.
    pub manager_override: Option<&'a ManagerOverride>,
}

/// A problem the return policy found with a request.
///
/// Serialized with a `code` tag (e.g. `{"code":"final_sale","line_no":2}`) so the
/// screens and the cloud can branch on it; [`fmt::Display`] gives the sentence to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// The request has no lines.
    EmptyRequest,
    /// The order has not been delivered or picked up yet.
    NotReceived,
    /// The return comes after the return window.
    OutsideWindow {
        /// Whole days since delivery or pickup.
        days_since: i64,
        /// The policy's window in days.
        window_days: u32,
    },
    /// The line was sold as final sale.
    FinalSale {
        /// The final-sale line.
        line_no: u32,
    },
    /// More units requested than are left to return on the line.
    ExceedsRemaining {
        /// The line asked for.
        line_no: u32,
        /// Units requested now.
        requested: u32,
        /// Units still returnable: ordered minus already returned.
        remaining: u32,
        /// Units already returned earlier.
        already_returned: u32,
        /// Units bought on the line.
        ordered: u32,
    },
    /// The line number is not on the order.
    UnknownLine {
        /// The line number that is not on the order.
        line_no: u32,
    },
    /// The request returns zero units of a line.
    ZeroQuantity {
        /// The line with quantity zero.
        line_no: u32,
    },
    /// The same line appears more than once in the request.
    DuplicateLine {
        /// The repeated line.
        line_no: u32,
    },
    /// A manager override was given without a reason, so it overrides nothing.
    OverrideWithoutReason,
    /// The refund total does not fit in 64-bit minor units.
    AmountOverflow,
}

impl Reason {
    /// Whether a manager override may accept the return despite this reason. Only the
    /// window and final-sale rules are business judgement; the others are facts about
    /// the order or mistakes in the request.
    pub fn overridable(&self) -> bool {
        matches!(self, Reason::OutsideWindow { .. } | Reason::FinalSale { .. })
    }
}

fn days(n: i64) -> &'static str {
    if n == 1 { "day" } else { "days" }
}

/// A sentence for the associate, e.g. "Line 2 is a final-sale item and cannot be
/// returned."
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::EmptyRequest => f.write_str("No lines were chosen; choose at least one line to return."),
            Reason::NotReceived => f.write_str(
                "The order has not been delivered or picked up yet, so nothing on it can be returned.",
            ),
            Reason::OutsideWindow {
                days_since,
                window_days,
            } => write!(
                f,
                "Returned {days_since} {} after delivery; the return window is {window_days} {}.",
                days(*days_since),
                days(i64::from(*window_days)),
            ),
            Reason::FinalSale { line_no } => {
                write!(f, "Line {line_no} is a final-sale item and cannot be returned.")
            }
            Reason::ExceedsRemaining {
                line_no,
                requested,
                remaining,
                already_returned,
                ordered,
            } => write!(
                f,
                "Line {line_no}: {requested} requested but only {remaining} left to return \
                 ({already_returned} of {ordered} already returned)."
            ),
            Reason::UnknownLine { line_no } => write!(f, "Line {line_no} is not on this order."),
            Reason::ZeroQuantity { line_no } => {
                write!(f, "Line {line_no}: the quantity to return must be at least 1.")
            }
            Reason::DuplicateLine { line_no } => write!(
                f,
                "Line {line_no} is listed more than once; list it once with the total quantity."
            ),
            Reason::OverrideWithoutReason => {
                f.write_str("A manager override needs a reason; without one nothing was overridden.")
            }
            Reason::AmountOverflow => {
                f.write_str("The refund is too large to calculate; check the unit prices on the order.")
            }
        }
    }
}

/// The outcome of a return-policy check: whether to accept, why not, and the refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// True exactly when `blocking` is empty.
    pub allowed: bool,
    /// Problems that stop the return, in the order found.
    pub blocking: Vec<Reason>,
    /// Problems a manager override accepted; recorded with the return for audit.
    pub overridden: Vec<Reason>,
    /// The refund in minor units of the order's currency: quantity × unit price summed
    /// over the requested lines, or 0 when the return is not allowed.
    pub refund_minor: i64,
}

impl Decision {
    /// Every reason as a sentence for the screen: the blocking ones first, then the
    /// overridden ones marked as such.
    pub fn reasons_text(&self) -> Vec<String> {
        let blocking = self.blocking.iter().map(Reason::to_string);
        let overridden = self
            .overridden
            .iter()
            .map(|reason| format!("Overridden by a manager: {reason}"));
        blocking.chain(overridden).collect()
    }
}

impl ReturnPolicy {
    /// Checks a return request against this policy and the order's history.
    ///
    /// Every problem is reported (see [`Reason`]). For each requested line, in order:
    /// a line already listed is a [`Reason::DuplicateLine`] (reported once per line and
    /// otherwise ignored); a line not on the order is [`Reason::UnknownLine`]; otherwise
    /// a zero quantity, a final-sale line and a quantity above what is left are each
    /// reported. The window is counted in whole days, `floor((now − fulfilled) / 1 day)`,
    /// and is passed when that exceeds `window_days`; a fulfilment time in the future
    /// (clock skew between store and cloud) counts as inside the window.
    pub fn check(&self, order: &ReturnableOrder, request: &ReturnRequest) -> Decision {
        let mut blocking = Vec::new();

        if request.lines.is_empty() {
            blocking.push(Reason::EmptyRequest);
        }
        match order.fulfilled_at_ms {
            None => blocking.push(Reason::NotReceived),
            Some(fulfilled_at_ms) => {
                let days_since = request.now_ms.saturating_sub(fulfilled_at_ms).div_euclid(DAY_MS);
                if days_since > i64::from(self.window_days) {
                    blocking.push(Reason::OutsideWindow {
                        days_since,
                        window_days: self.window_days,
                    });
                }
            }
        }

        let mut seen = HashSet::with_capacity(request.lines.len());
        let mut reported_duplicates = HashSet::new();
        let mut refund: Option<i64> = Some(0);
        for requested in request.lines {
            let line_no = requested.line_no;
            if !seen.insert(line_no) {
                if reported_duplicates.insert(line_no) {
                    blocking.push(Reason::DuplicateLine { line_no });
                }
                continue;
            }
            let Some(line) = order.lines.iter().find(|line| line.line_no == line_no) else {
                blocking.push(Reason::UnknownLine { line_no });
                continue;
            };
            if requested.qty == 0 {
                blocking.push(Reason::ZeroQuantity { line_no });
            }
            if line.final_sale {
                blocking.push(Reason::FinalSale { line_no });
            }
            let remaining = line.ordered_qty.saturating_sub(line.returned_qty);
            if requested.qty > remaining {
                blocking.push(Reason::ExceedsRemaining {
                    line_no,
                    requested: requested.qty,
                    remaining,
                    already_returned: line.returned_qty,
                    ordered: line.ordered_qty,
                });
            }
            refund = refund.and_then(|total| {
                line.unit_price_minor
                    .checked_mul(i64::from(requested.qty))
                    .and_then(|line_total| total.checked_add(line_total))
            });
        }
        if refund.is_none() {
            blocking.push(Reason::AmountOverflow);
        }

        let mut overridden = Vec::new();
        if let Some(manager_override) = request.manager_override {
            if manager_override.reason.trim().is_empty() {
                blocking.push(Reason::OverrideWithoutReason);
            } else {
                let (accepted, still_blocking) = blocking.into_iter().partition(Reason::overridable);
                overridden = accepted;
                blocking = still_blocking;
            }
        }

        let allowed = blocking.is_empty();
        Decision {
            allowed,
            blocking,
            overridden,
            refund_minor: if allowed { refund.unwrap_or(0) } else { 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULFILLED: i64 = 1_714_586_400_000;

    fn line(line_no: u32, ordered: u32, returned: u32, final_sale: bool, price: i64) -> ReturnableLine {
        ReturnableLine {
            line_no,
            gtin: format!("0400000000{line_no:03}"),
            ordered_qty: ordered,
            returned_qty: returned,
            final_sale,
            unit_price_minor: price,
        }
    }

    fn order_lines() -> Vec<ReturnableLine> {
        vec![
            line(1, 3, 0, false, 1999),
            line(2, 1, 0, true, 4500),
            line(3, 3, 2, false, 250),
        ]
    }

    fn req(line_no: u32, qty: u32) -> RequestedLine {
        RequestedLine { line_no, qty }
    }

    fn at_day(days: i64) -> i64 {
        FULFILLED + days * DAY_MS
    }

    fn check(lines: &[RequestedLine], now_ms: i64, manager_override: Option<&ManagerOverride>) -> Decision {
        let order_lines = order_lines();
        let order = ReturnableOrder {
            fulfilled_at_ms: Some(FULFILLED),
            lines: &order_lines,
        };
        let request = ReturnRequest {
            lines,
            now_ms,
            manager_override,
        };
        ReturnPolicy::default().check(&order, &request)
    }

    fn manager(reason: &str) -> ManagerOverride {
        ManagerOverride {
            associate_id: "mgr-0042".to_owned(),
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn default_window_is_thirty_days() {
        assert_eq!(ReturnPolicy::default().window_days, 30);
    }

    #[test]
    fn each_reason_comes_from_its_case() {
        let cases: Vec<(&str, Vec<RequestedLine>, i64, Vec<Reason>)> = vec![
            ("clean return", vec![req(1, 2)], at_day(3), vec![]),
            ("empty request", vec![], at_day(3), vec![Reason::EmptyRequest]),
            (
                "outside window",
                vec![req(1, 1)],
                at_day(34),
                vec![Reason::OutsideWindow {
                    days_since: 34,
                    window_days: 30,
                }],
            ),
            (
                "final sale",
                vec![req(2, 1)],
                at_day(3),
                vec![Reason::FinalSale { line_no: 2 }],
            ),
            (
                "exceeds remaining",
                vec![req(3, 3)],
                at_day(3),
                vec![Reason::ExceedsRemaining {
                    line_no: 3,
                    requested: 3,
                    remaining: 1,
                    already_returned: 2,
                    ordered: 3,
                }],
            ),
            (
                "unknown line",
                vec![req(9, 1)],
                at_day(3),
                vec![Reason::UnknownLine { line_no: 9 }],
            ),
            (
                "zero quantity",
                vec![req(1, 0)],
                at_day(3),
                vec![Reason::ZeroQuantity { line_no: 1 }],
            ),
            (
                "duplicate reported once",
                vec![req(1, 1), req(1, 1), req(1, 1)],
                at_day(3),
                vec![Reason::DuplicateLine { line_no: 1 }],
            ),
            (
                "several problems at once, in request order",
                vec![req(9, 1), req(2, 0), req(3, 2), req(2, 1)],
                at_day(31),
                vec![
                    Reason::OutsideWindow {
                        days_since: 31,
                        window_days: 30,
                    },
                    Reason::UnknownLine { line_no: 9 },
                    Reason::ZeroQuantity { line_no: 2 },
                    Reason::FinalSale { line_no: 2 },
                    Reason::ExceedsRemaining {
                        line_no: 3,
                        requested: 2,
                        remaining: 1,
                        already_returned: 2,
                        ordered: 3,
                    },
                    Reason::DuplicateLine { line_no: 2 },
                ],
            ),
        ];
        for (name, lines, now_ms, expected) in cases {
            let decision = check(&lines, now_ms, None);
            assert_eq!(decision.blocking, expected, "{name}");
            assert_eq!(decision.allowed, expected.is_empty(), "{name}");
            assert!(decision.overridden.is_empty(), "{name}");
            if !decision.allowed {
                assert_eq!(decision.refund_minor, 0, "{name}");
            }
        }
    }

    #[test]
    fn an_order_not_yet_received_cannot_be_returned() {
        let lines = order_lines();
        let order = ReturnableOrder {
            fulfilled_at_ms: None,
            lines: &lines,
        };
        let request = ReturnRequest {
            lines: &[req(1, 1)],
            now_ms: FULFILLED,
            manager_override: Some(&manager("customer insists")),
        };
        let decision = ReturnPolicy::default().check(&order, &request);
        assert_eq!(decision.blocking, [Reason::NotReceived]);
        assert!(!decision.allowed);
        assert_eq!(decision.refund_minor, 0);
    }

    #[test]
    fn more_returned_than_ordered_leaves_nothing_to_return() {
        let lines = [line(1, 2, 5, false, 100)];
        let order = ReturnableOrder {
            fulfilled_at_ms: Some(FULFILLED),
            lines: &lines,
        };
        let request = ReturnRequest {
            lines: &[req(1, 1)],
            now_ms: FULFILLED,
            manager_override: None,
        };
        let decision = ReturnPolicy::default().check(&order, &request);
        assert_eq!(
            decision.blocking,
            [Reason::ExceedsRemaining {
                line_no: 1,
                requested: 1,
                remaining: 0,
                already_returned: 5,
                ordered: 2,
            }]
        );
    }

    #[test]
    fn window_boundary_is_whole_days() {
        let cases: &[(i64, bool)] = &[
            (at_day(0), true),
            (at_day(30), true),
            (at_day(31) - 1, true), // 30 days and 23:59:59.999
            (at_day(31), false),
            (at_day(400), false),
            (FULFILLED - DAY_MS, true), // fulfilment stamped in the future: clock skew
            (i64::MIN, true),
        ];
        for &(now_ms, inside) in cases {
            let decision = check(&[req(1, 1)], now_ms, None);
            assert_eq!(decision.allowed, inside, "now {now_ms}: {:?}", decision.blocking);
        }
        let outside = check(&[req(1, 1)], at_day(31), None);
        assert_eq!(
            outside.blocking,
            [Reason::OutsideWindow {
                days_since: 31,
                window_days: 30,
            }]
        );
    }

    #[test]
    fn custom_window_is_respected() {
        let lines = order_lines();
        let order = ReturnableOrder {
            fulfilled_at_ms: Some(FULFILLED),
            lines: &lines,
        };
        let policy = ReturnPolicy { window_days: 0 };
        let same_day = ReturnRequest {
            lines: &[req(1, 1)],
            now_ms: FULFILLED + DAY_MS - 1,
            manager_override: None,
        };
        assert!(policy.check(&order, &same_day).allowed);
        let next_day = ReturnRequest {
            now_ms: FULFILLED + DAY_MS,
            ..same_day
        };
        assert_eq!(
            policy.check(&order, &next_day).blocking,
            [Reason::OutsideWindow {
                days_since: 1,
                window_days: 0,
            }]
        );
    }

    #[test]
    fn refund_sums_quantity_times_unit_price() {
        let decision = check(&[req(1, 3), req(3, 1)], at_day(1), None);
        assert!(decision.allowed, "{:?}", decision.blocking);
        assert_eq!(decision.refund_minor, 3 * 1999 + 250);

        let single = check(&[req(1, 1)], at_day(1), None);
        assert_eq!(single.refund_minor, 1999);
    }

    #[test]
    fn refund_overflow_blocks_the_return() {
        let lines = [line(1, 3, 0, false, i64::MAX / 2), line(2, 1, 0, false, 2)];
        let order = ReturnableOrder {
            fulfilled_at_ms: Some(FULFILLED),
            lines: &lines,
        };
        // 2 × (MAX / 2) fits; adding line 2 overflows the sum.
        let sum_overflow = ReturnRequest {
            lines: &[req(1, 2), req(2, 1), req(2, 1)],
            now_ms: FULFILLED,
            manager_override: None,
        };
        let decision = ReturnPolicy::default().check(&order, &sum_overflow);
        assert_eq!(
            decision.blocking,
            [Reason::DuplicateLine { line_no: 2 }, Reason::AmountOverflow]
        );
        // 3 × (MAX / 2) overflows the line total itself.
        let product_overflow = ReturnRequest {
            lines: &[req(1, 3)],
            ..sum_overflow
        };
        let decision = ReturnPolicy::default().check(&order, &product_overflow);
        assert_eq!(decision.blocking, [Reason::AmountOverflow]);
        assert_eq!(decision.refund_minor, 0);
        assert!(!decision.allowed);
    }

    #[test]
    fn override_with_reason_moves_only_overridable_reasons() {
        let approval = manager("Damaged in transit, customer only noticed now");
        let lines = [req(2, 1), req(1, 5)];
        let decision = check(&lines, at_day(45), Some(&approval));
        assert_eq!(
            decision.overridden,
            [
                Reason::OutsideWindow {
                    days_since: 45,
                    window_days: 30,
                },
                Reason::FinalSale { line_no: 2 },
            ]
        );
        assert_eq!(
            decision.blocking,
            [Reason::ExceedsRemaining {
                line_no: 1,
                requested: 5,
                remaining: 3,
                already_returned: 0,
                ordered: 3,
            }]
        );
        assert!(!decision.allowed);
        assert_eq!(decision.refund_minor, 0);

        let fixed = check(&[req(2, 1), req(1, 3)], at_day(45), Some(&approval));
        assert!(fixed.allowed, "{:?}", fixed.blocking);
        assert_eq!(fixed.overridden.len(), 2);
        assert_eq!(fixed.refund_minor, 4500 + 3 * 1999);
    }

    #[test]
    fn override_without_reason_overrides_nothing() {
        for reason in ["", "   ", "\t\n"] {
            let decision = check(&[req(2, 1)], at_day(3), Some(&manager(reason)));
            assert_eq!(
                decision.blocking,
                [Reason::FinalSale { line_no: 2 }, Reason::OverrideWithoutReason],
                "reason {reason:?}"
            );
            assert!(decision.overridden.is_empty());
            assert!(!decision.allowed);
        }
        // An empty override blocks even a return that needed no override.
        let clean = check(&[req(1, 1)], at_day(3), Some(&manager("")));
        assert_eq!(clean.blocking, [Reason::OverrideWithoutReason]);
        assert_eq!(clean.refund_minor, 0);
    }

    #[test]
    fn override_on_a_clean_return_changes_nothing() {
        let decision = check(&[req(1, 1)], at_day(3), Some(&manager("just in case")));
        assert!(decision.allowed);
        assert!(decision.overridden.is_empty());
        assert_eq!(decision.refund_minor, 1999);
    }

    #[test]
    fn only_window_and_final_sale_are_overridable() {
        let cases: &[(Reason, bool)] = &[
            (Reason::EmptyRequest, false),
            (Reason::NotReceived, false),
            (
                Reason::OutsideWindow {
                    days_since: 31,
                    window_days: 30,
                },
                true,
            ),
            (Reason::FinalSale { line_no: 1 }, true),
            (
                Reason::ExceedsRemaining {
                    line_no: 1,
                    requested: 2,
                    remaining: 1,
                    already_returned: 0,
                    ordered: 1,
                },
                false,
            ),
            (Reason::UnknownLine { line_no: 1 }, false),
            (Reason::ZeroQuantity { line_no: 1 }, false),
            (Reason::DuplicateLine { line_no: 1 }, false),
            (Reason::OverrideWithoutReason, false),
            (Reason::AmountOverflow, false),
        ];
        for (reason, overridable) in cases {
            assert_eq!(reason.overridable(), *overridable, "{reason:?}");
        }
    }

    #[test]
    fn reasons_read_as_sentences() {
        let cases: &[(Reason, &str)] = &[
            (
                Reason::OutsideWindow {
                    days_since: 34,
                    window_days: 30,
                },
                "Returned 34 days after delivery; the return window is 30 days.",
            ),
            (
                Reason::OutsideWindow {
                    days_since: 1,
                    window_days: 0,
                },
                "Returned 1 day after delivery; the return window is 0 days.",
            ),
            (
                Reason::FinalSale { line_no: 2 },
                "Line 2 is a final-sale item and cannot be returned.",
            ),
            (
                Reason::ExceedsRemaining {
                    line_no: 1,
                    requested: 3,
                    remaining: 1,
                    already_returned: 2,
                    ordered: 3,
                },
                "Line 1: 3 requested but only 1 left to return (2 of 3 already returned).",
            ),
            (Reason::UnknownLine { line_no: 7 }, "Line 7 is not on this order."),
            (
                Reason::ZeroQuantity { line_no: 4 },
                "Line 4: the quantity to return must be at least 1.",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), *text);
        }
    }

    #[test]
    fn reasons_text_lists_blocking_then_overridden() {
        let decision = Decision {
            allowed: false,
            blocking: vec![Reason::UnknownLine { line_no: 9 }],
            overridden: vec![Reason::FinalSale { line_no: 2 }],
            refund_minor: 0,
        };
        assert_eq!(
            decision.reasons_text(),
            [
                "Line 9 is not on this order.",
                "Overridden by a manager: Line 2 is a final-sale item and cannot be returned.",
            ]
        );
    }

    #[test]
    fn reasons_serialize_with_a_code_tag() {
        let cases: &[(Reason, &str)] = &[
            (Reason::EmptyRequest, r#"{"code":"empty_request"}"#),
            (
                Reason::FinalSale { line_no: 2 },
                r#"{"code":"final_sale","line_no":2}"#,
            ),
            (
                Reason::OutsideWindow {
                    days_since: 34,
                    window_days: 30,
                },
                r#"{"code":"outside_window","days_since":34,"window_days":30}"#,
            ),
            (
                Reason::OverrideWithoutReason,
                r#"{"code":"override_without_reason"}"#,
            ),
        ];
        for (reason, json) in cases {
            assert_eq!(serde_json::to_string(reason).expect("serializes"), *json);
            let back: Reason = serde_json::from_str(json).expect("deserializes");
            assert_eq!(&back, reason);
        }
    }
}
