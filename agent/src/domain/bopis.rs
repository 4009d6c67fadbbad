//! The BOPIS (buy online, pick up in store) order state machine.
//!
//! The cloud sends the store an order that is ready for pickup. The customer arrives
//! (kiosk check-in or at the counter), the associate hands the items over, and the
//! customer may refuse some or all of them; an order nobody collects expires after its
//! deadline, and either side may cancel it. This module decides which of those steps are
//! allowed from which state, so the counter screen, the kiosk and the sync code all
//! follow the same rules.
//!
//! Invariants:
//! - [`transition`] is the only place that decides a status change, and it is pure: the
//!   caller passes the current time and the order's lines in a [`PickupContext`].
//! - Terminal states (handed over, partially handed over, refused, expired, cancelled)
//!   never change again; every event on them is an [`TransitionError::AlreadyFinal`].
//! - Items are handed over only after the customer is marked as arrived, and an order
//!   whose customer is in the store never expires under them.
//! - Every [`TransitionError`] message names the state and the event, so a rejected
//!   action can be explained on screen and found in the log.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where a BOPIS order stands at this store.
///
/// Stored in SQLite and sent to the cloud as its snake_case name ([`OrderStatus::as_str`]
/// and serde agree), so the names are part of the wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// The order is packed and waiting for the customer.
    ReadyForPickup,
    /// The customer checked in at the kiosk or was marked as arrived at the counter.
    CustomerArrived,
    /// Every line was handed over to the customer.
    HandedOver,
    /// Some lines were handed over and the customer refused the rest.
    PartiallyHandedOver,
    /// The customer came but refused every line.
    Refused,
    /// Nobody collected the order before its pickup deadline.
    Expired,
    /// The order was cancelled before it was handed over.
    Cancelled,
}

impl OrderStatus {
    /// Every status, in lifecycle order: for exhaustive tests, filters and schema checks.
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::ReadyForPickup,
        OrderStatus::CustomerArrived,
        OrderStatus::HandedOver,
        OrderStatus::PartiallyHandedOver,
        OrderStatus::Refused,
        OrderStatus::Expired,
        OrderStatus::Cancelled,
    ];

    /// The snake_case name used in SQLite, logs and the wire protocol (same as serde).
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderStatus::ReadyForPickup => "ready_for_pickup",
            OrderStatus::CustomerArrived => "customer_arrived",
            OrderStatus::HandedOver => "handed_over",
            OrderStatus::PartiallyHandedOver => "partially_handed_over",
            OrderStatus::Refused => "refused",
            OrderStatus::Expired => "expired",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the order's story is over: nothing may happen to it any more.
    pub fn is_terminal(&self) -> bool {
        match self {
            OrderStatus::ReadyForPickup | OrderStatus::CustomerArrived => false,
            OrderStatus::HandedOver
            | OrderStatus::PartiallyHandedOver
            | OrderStatus::Refused
            | OrderStatus::Expired
            | OrderStatus::Cancelled => true,
        }
    }

    /// Whether the order still needs the store's attention (shown in the pickup queue).
    pub fn is_open(&self) -> bool {
        !self.is_terminal()
    }
}

/// Writes the snake_case name, e.g. `ready_for_pickup`.
impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name read from storage or a payload that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{text:?} is not a BOPIS order status; expected one of ready_for_pickup, \
     customer_arrived, handed_over, partially_handed_over, refused, expired, cancelled"
)]
pub struct UnknownOrderStatus {
    /// The rejected text, exactly as given.
    pub text: String,
}

/// Parses the snake_case name written by [`OrderStatus::as_str`].
impl FromStr for OrderStatus {
    type Err = UnknownOrderStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownOrderStatus { text: s.to_owned() })
    }
}

/// Something that happens to a BOPIS order at the store.
///
/// Serialized with an `event` tag, e.g. `{"event":"hand_over","refused_lines":[2]}`,
/// because the same shape travels in the outbox to the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum OrderEvent {
    /// The customer checked in at the kiosk or was marked as arrived at the counter.
    CustomerArrived,
    /// The associate handed the order over; the customer refused the listed lines.
    HandOver {
        /// Order line numbers the customer refused; empty when everything was taken.
        /// Duplicates are harmless (the lines are treated as a set). Missing in a
        /// payload means none were refused.
        #[serde(default)]
        refused_lines: Vec<u32>,
    },
    /// The pickup deadline passed without the customer collecting the order.
    Expire,
    /// The order is cancelled (by the customer, the store or the cloud).
    Cancel,
}

impl OrderEvent {
    /// The snake_case event name, as in the serde tag; used in errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            OrderEvent::CustomerArrived => "customer_arrived",
            OrderEvent::HandOver { .. } => "hand_over",
            OrderEvent::Expire => "expire",
            OrderEvent::Cancel => "cancel",
        }
    }
}

/// The facts about an order that the transition rules need besides its status.
///
/// Passed in by the caller so that [`transition`] stays pure: no clock, no database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickupContext<'a> {
    /// The current time in Unix milliseconds, from the caller's clock.
    pub now_ms: i64,
    /// When the order stops being held for the customer (Unix milliseconds), if the
    /// cloud set a deadline. An order without one never expires.
    pub pickup_deadline_ms: Option<i64>,
    /// The order's line numbers; refused lines must be among them.
    pub line_numbers: &'a [u32],
}

/// Why an event cannot be applied to an order in its current state.
///
/// Each message reads "cannot apply EVENT to an order in state STATUS: WHY", so the
/// associate sees what was refused and the log line can be searched by both names.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransitionError {
    /// `hand_over` on an order whose customer has not been marked as arrived.
    NotArrived,
    /// `customer_arrived` on an order whose customer is already marked as arrived.
    AlreadyArrived,
    /// `expire` on an order whose customer is in the store.
    CustomerInStore,
    /// `expire` on an order without a pickup deadline.
    NoDeadline,
    /// `expire` before the pickup deadline has passed.
    DeadlineNotPassed {
        /// The order's pickup deadline, Unix milliseconds.
        deadline_ms: i64,
    },
    /// `hand_over` refused a line number the order does not have.
    UnknownLine {
        /// The refused line number that is not on the order.
        line: u32,
    },
    /// Any event on an order that is already handed over, refused, expired or cancelled.
    AlreadyFinal {
        /// The order's terminal status.
        status: OrderStatus,
        /// The name of the rejected event ([`OrderEvent::name`]).
        event: &'static str,
    },
}

impl TransitionError {
    /// The state the order was in when the event was rejected (for log fields).
    pub fn status(&self) -> OrderStatus {
        match self {
            TransitionError::NotArrived
            | TransitionError::NoDeadline
            | TransitionError::DeadlineNotPassed { .. } => OrderStatus::ReadyForPickup,
            TransitionError::AlreadyArrived
            | TransitionError::CustomerInStore
            | TransitionError::UnknownLine { .. } => OrderStatus::CustomerArrived,
            TransitionError::AlreadyFinal { status, .. } => *status,
        }
    }

    /// The name of the rejected event (for log fields).
    pub fn event(&self) -> &'static str {
        match self {
            TransitionError::NotArrived | TransitionError::UnknownLine { .. } => "hand_over",
            TransitionError::AlreadyArrived => "customer_arrived",
            TransitionError::CustomerInStore
            | TransitionError::NoDeadline
            | TransitionError::DeadlineNotPassed { .. } => "expire",
            TransitionError::AlreadyFinal { event, .. } => event,
        }
    }
}

impl fmt::Display for TransitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot apply {} to an order in state {}: ",
            self.event(),
            self.status()
        )?;
        match self {
            TransitionError::NotArrived => f.write_str("the customer must be marked as arrived first"),
            TransitionError::AlreadyArrived => f.write_str("the customer is already marked as arrived"),
            TransitionError::CustomerInStore => {
                f.write_str("the customer is in the store; hand the order over or cancel it instead")
            }
            TransitionError::NoDeadline => {
                f.write_str("the order has no pickup deadline, so it never expires; cancel it instead")
            }
            TransitionError::DeadlineNotPassed { deadline_ms } => write!(
                f,
                "its pickup deadline, {}, has not passed yet",
                describe_instant(*deadline_ms)
            ),
            TransitionError::UnknownLine { line } => {
                write!(f, "line {line} is not on this order, so it cannot be refused")
            }
            TransitionError::AlreadyFinal { .. } => {
                f.write_str("the order is already final and cannot change")
            }
        }
    }
}

/// A Unix-milliseconds instant as RFC 3339 UTC text, so an associate can read it; the raw
/// number is kept for instants `time` cannot represent.
fn describe_instant(ms: i64) -> String {
    let formatted = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok());
    formatted.unwrap_or_else(|| format!("{ms} ms after the Unix epoch"))
}

/// Decides the order's next status when `event` happens in state `from`.
///
/// Rules:
/// - `ready_for_pickup` + `customer_arrived` → `customer_arrived`.
/// - `customer_arrived` + `hand_over` → `handed_over` when nothing was refused,
///   `refused` when every distinct order line was refused, `partially_handed_over`
///   otherwise. A refused line that is not in `ctx.line_numbers` is an error; repeated
///   line numbers count once. (An order with no lines and nothing refused is handed
///   over.)
/// - `ready_for_pickup` + `expire` → `expired` only when the order has a deadline and
///   `ctx.now_ms` is strictly after it.
/// - `ready_for_pickup` or `customer_arrived` + `cancel` → `cancelled`.
/// - Anything else is an error: hand-over before arrival, a second arrival, expiry
///   while the customer is in the store, and every event on a terminal state.
pub fn transition(
    from: OrderStatus,
    event: &OrderEvent,
    ctx: &PickupContext,
) -> Result<OrderStatus, TransitionError> {
    use OrderStatus as S;

    match (from, event) {
        (S::ReadyForPickup, OrderEvent::CustomerArrived) => Ok(S::CustomerArrived),
        (S::CustomerArrived, OrderEvent::CustomerArrived) => Err(TransitionError::AlreadyArrived),

        (S::ReadyForPickup, OrderEvent::HandOver { .. }) => Err(TransitionError::NotArrived),
        (S::CustomerArrived, OrderEvent::HandOver { refused_lines }) => {
            hand_over_outcome(refused_lines, ctx.line_numbers)
        }

        (S::ReadyForPickup, OrderEvent::Expire) => match ctx.pickup_deadline_ms {
            None => Err(TransitionError::NoDeadline),
            Some(deadline_ms) if ctx.now_ms > deadline_ms => Ok(S::Expired),
            Some(deadline_ms) => Err(TransitionError::DeadlineNotPassed { deadline_ms }),
        },
        (S::CustomerArrived, OrderEvent::Expire) => Err(TransitionError::CustomerInStore),

        (S::ReadyForPickup | S::CustomerArrived, OrderEvent::Cancel) => Ok(S::Cancelled),

        // Terminal states are listed by name rather than matched with a wildcard, so a
        // new status or event fails to compile until its rules are written here.
        (S::HandedOver | S::PartiallyHandedOver | S::Refused | S::Expired | S::Cancelled, _) => {
            Err(TransitionError::AlreadyFinal {
                status: from,
                event: event.name(),
            })
        }
    }
}

/// The status after a hand-over in which the customer refused `refused_lines`.
fn hand_over_outcome(refused_lines: &[u32], line_numbers: &[u32]) -> Result<OrderStatus, TransitionError> {
    let lines: HashSet<u32> = line_numbers.iter().copied().collect();
    let mut refused = HashSet::with_capacity(refused_lines.len());
    for &line in refused_lines {
        if !lines.contains(&line) {
            return Err(TransitionError::UnknownLine { line });
        }
        refused.insert(line);
    }
    Ok(if refused.is_empty() {
        OrderStatus::HandedOver
    } else if refused.len() == lines.len() {
        OrderStatus::Refused
    } else {
        OrderStatus::PartiallyHandedOver
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus as S;
    use TransitionError as E;

    /// What `transition` returns, named to keep the tables readable.
    type Outcome = Result<OrderStatus, TransitionError>;

    const LINES: &[u32] = &[1, 2, 3];
    const DEADLINE: i64 = 1_714_586_400_000; // 2024-05-01T18:00:00Z

    fn ctx(now_ms: i64, deadline: Option<i64>) -> PickupContext<'static> {
        PickupContext {
            now_ms,
            pickup_deadline_ms: deadline,
            line_numbers: LINES,
        }
    }

    fn hand_over(refused: &[u32]) -> OrderEvent {
        OrderEvent::HandOver {
            refused_lines: refused.to_vec(),
        }
    }

    fn final_err(status: OrderStatus, event: &'static str) -> Outcome {
        Err(E::AlreadyFinal { status, event })
    }

    /// Every (state, event) pair, with a deadline that has passed and nothing refused,
    /// so the only failures are the ones the state machine itself forbids.
    #[test]
    fn every_state_event_pair() {
        let events = [
            OrderEvent::CustomerArrived,
            hand_over(&[]),
            OrderEvent::Expire,
            OrderEvent::Cancel,
        ];
        type Row = (OrderStatus, [Outcome; 4]);
        let table: [Row; 7] = [
            (
                S::ReadyForPickup,
                [
                    Ok(S::CustomerArrived),
                    Err(E::NotArrived),
                    Ok(S::Expired),
                    Ok(S::Cancelled),
                ],
            ),
            (
                S::CustomerArrived,
                [
                    Err(E::AlreadyArrived),
                    Ok(S::HandedOver),
                    Err(E::CustomerInStore),
                    Ok(S::Cancelled),
                ],
            ),
            (
                S::HandedOver,
                [
                    final_err(S::HandedOver, "customer_arrived"),
                    final_err(S::HandedOver, "hand_over"),
                    final_err(S::HandedOver, "expire"),
                    final_err(S::HandedOver, "cancel"),
                ],
            ),
            (
                S::PartiallyHandedOver,
                [
                    final_err(S::PartiallyHandedOver, "customer_arrived"),
                    final_err(S::PartiallyHandedOver, "hand_over"),
                    final_err(S::PartiallyHandedOver, "expire"),
                    final_err(S::PartiallyHandedOver, "cancel"),
                ],
            ),
            (
                S::Refused,
                [
                    final_err(S::Refused, "customer_arrived"),
                    final_err(S::Refused, "hand_over"),
                    final_err(S::Refused, "expire"),
                    final_err(S::Refused, "cancel"),
                ],
            ),
            (
                S::Expired,
                [
                    final_err(S::Expired, "customer_arrived"),
                    final_err(S::Expired, "hand_over"),
                    final_err(S::Expired, "expire"),
                    final_err(S::Expired, "cancel"),
                ],
            ),
            (
                S::Cancelled,
                [
                    final_err(S::Cancelled, "customer_arrived"),
                    final_err(S::Cancelled, "hand_over"),
                    final_err(S::Cancelled, "expire"),
                    final_err(S::Cancelled, "cancel"),
                ],
            ),
        ];
        let past_deadline = ctx(DEADLINE + 1, Some(DEADLINE));
        let mut checked = 0;
        for (from, expected_row) in &table {
            for (event, expected) in events.iter().zip(expected_row) {
                let got = transition(*from, event, &past_deadline);
                assert_eq!(&got, expected, "{from} + {}", event.name());
                if let Err(err) = got {
                    // Every message names the state and the event it refused.
                    let message = err.to_string();
                    let prefix = format!("cannot apply {} to an order in state {from}: ", event.name());
                    assert!(message.starts_with(&prefix), "{message}");
                    assert_eq!(err.status(), *from);
                    assert_eq!(err.event(), event.name());
                }
                checked += 1;
            }
        }
        // The table must cover the whole state machine, including any status added later.
        assert_eq!(checked, OrderStatus::ALL.len() * events.len());
        let covered: Vec<OrderStatus> = table.iter().map(|(s, _)| *s).collect();
        assert_eq!(covered, OrderStatus::ALL);
    }

    #[test]
    fn refusal_sets_decide_the_hand_over_outcome() {
        let cases: &[(&[u32], &[u32], Outcome)] = &[
            (LINES, &[], Ok(S::HandedOver)),
            (LINES, &[2], Ok(S::PartiallyHandedOver)),
            (LINES, &[1, 3], Ok(S::PartiallyHandedOver)),
            (LINES, &[2, 2, 2], Ok(S::PartiallyHandedOver)),
            (LINES, &[1, 2, 2], Ok(S::PartiallyHandedOver)),
            (LINES, &[3, 1, 2], Ok(S::Refused)),
            (LINES, &[1, 2, 3, 3, 1], Ok(S::Refused)),
            (LINES, &[4], Err(E::UnknownLine { line: 4 })),
            (LINES, &[1, 9, 2], Err(E::UnknownLine { line: 9 })),
            (LINES, &[0], Err(E::UnknownLine { line: 0 })),
            // Line numbers given twice in the order still count as one line.
            (&[1, 1, 2], &[1], Ok(S::PartiallyHandedOver)),
            (&[1, 1, 2], &[1, 2], Ok(S::Refused)),
            (&[5], &[5], Ok(S::Refused)),
            (&[5], &[], Ok(S::HandedOver)),
            (&[], &[], Ok(S::HandedOver)),
            (&[], &[1], Err(E::UnknownLine { line: 1 })),
        ];
        for &(lines, refused, ref expected) in cases {
            let context = PickupContext {
                now_ms: 0,
                pickup_deadline_ms: None,
                line_numbers: lines,
            };
            let got = transition(S::CustomerArrived, &hand_over(refused), &context);
            assert_eq!(&got, expected, "lines {lines:?}, refused {refused:?}");
        }
    }

    #[test]
    fn expiry_needs_a_deadline_strictly_in_the_past() {
        let cases: &[(i64, Option<i64>, Outcome)] = &[
            (DEADLINE + 1, Some(DEADLINE), Ok(S::Expired)),
            (DEADLINE + 86_400_000, Some(DEADLINE), Ok(S::Expired)),
            (
                DEADLINE,
                Some(DEADLINE),
                Err(E::DeadlineNotPassed {
                    deadline_ms: DEADLINE,
                }),
            ),
            (
                DEADLINE - 1,
                Some(DEADLINE),
                Err(E::DeadlineNotPassed {
                    deadline_ms: DEADLINE,
                }),
            ),
            (DEADLINE, None, Err(E::NoDeadline)),
            (i64::MAX, None, Err(E::NoDeadline)),
        ];
        for &(now_ms, deadline, ref expected) in cases {
            let got = transition(S::ReadyForPickup, &OrderEvent::Expire, &ctx(now_ms, deadline));
            assert_eq!(&got, expected, "now {now_ms}, deadline {deadline:?}");
        }
    }

    #[test]
    fn error_messages_explain_the_refusal() {
        let cases: &[(TransitionError, &str)] = &[
            (
                E::NotArrived,
                "cannot apply hand_over to an order in state ready_for_pickup: \
                 the customer must be marked as arrived first",
            ),
            (
                E::AlreadyArrived,
                "cannot apply customer_arrived to an order in state customer_arrived: \
                 the customer is already marked as arrived",
            ),
            (
                E::DeadlineNotPassed {
                    deadline_ms: DEADLINE,
                },
                "cannot apply expire to an order in state ready_for_pickup: \
                 its pickup deadline, 2024-05-01T18:00:00Z, has not passed yet",
            ),
            (
                E::DeadlineNotPassed {
                    deadline_ms: i64::MAX,
                },
                "cannot apply expire to an order in state ready_for_pickup: its pickup \
                 deadline, 9223372036854775807 ms after the Unix epoch, has not passed yet",
            ),
            (
                E::UnknownLine { line: 7 },
                "cannot apply hand_over to an order in state customer_arrived: \
                 line 7 is not on this order, so it cannot be refused",
            ),
            (
                E::AlreadyFinal {
                    status: S::Expired,
                    event: "cancel",
                },
                "cannot apply cancel to an order in state expired: \
                 the order is already final and cannot change",
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(err.to_string(), *expected);
        }
        assert!(
            E::CustomerInStore
                .to_string()
                .contains("the customer is in the store")
        );
        assert!(E::NoDeadline.to_string().contains("no pickup deadline"));
    }

    #[test]
    fn terminal_and_open_partition_the_statuses() {
        let terminal: Vec<OrderStatus> = OrderStatus::ALL
            .into_iter()
            .filter(OrderStatus::is_terminal)
            .collect();
        assert_eq!(
            terminal,
            [
                S::HandedOver,
                S::PartiallyHandedOver,
                S::Refused,
                S::Expired,
                S::Cancelled
            ]
        );
        for status in OrderStatus::ALL {
            assert_eq!(status.is_open(), !status.is_terminal(), "{status}");
        }
        assert!(S::ReadyForPickup.is_open() && S::CustomerArrived.is_open());
    }

    #[test]
    fn status_names_match_serde_and_parse_back() {
        for status in OrderStatus::ALL {
            let json = serde_json::to_string(&status).expect("serializes");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(status.to_string(), status.as_str());
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
            let back: OrderStatus = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, status);
        }
        assert_eq!(S::PartiallyHandedOver.as_str(), "partially_handed_over");
        let err = "ReadyForPickup".parse::<OrderStatus>().unwrap_err();
        assert_eq!(err.text, "ReadyForPickup");
        assert!(err.to_string().contains("\"ReadyForPickup\""), "{err}");
    }

    #[test]
    fn events_serialize_with_an_event_tag() {
        let cases: &[(OrderEvent, &str)] = &[
            (OrderEvent::CustomerArrived, r#"{"event":"customer_arrived"}"#),
            (
                hand_over(&[2, 3]),
                r#"{"event":"hand_over","refused_lines":[2,3]}"#,
            ),
            (OrderEvent::Expire, r#"{"event":"expire"}"#),
            (OrderEvent::Cancel, r#"{"event":"cancel"}"#),
        ];
        for (event, json) in cases {
            assert_eq!(serde_json::to_string(event).expect("serializes"), *json);
            let back: OrderEvent = serde_json::from_str(json).expect("deserializes");
            assert_eq!(&back, event);
            let tag: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
            assert_eq!(tag["event"], event.name());
        }
        let bare: OrderEvent = serde_json::from_str(r#"{"event":"hand_over"}"#).expect("defaults");
        assert_eq!(bare, hand_over(&[]));
        assert!(serde_json::from_str::<OrderEvent>(r#"{"event":"explode"}"#).is_err());
    }
}
