//! Convergent wishlist edits between the store and the cloud.
//!
//! A customer's wishlist can be edited at the kiosk, by an associate, on the web and in
//! the app, and the store may be offline while it happens. Edits therefore reach the
//! store and the cloud in different orders, and both must still end in the same state.
//! This module decides, for one wishlist item, whether an incoming edit replaces what is
//! stored.
//!
//! The rule is a last-writer-wins register per (customer, GTIN):
//! - Each [`WishlistOp`] carries `at_ms` and a globally unique `op_id`. An op replaces
//!   the stored [`ItemState`] exactly when `(op.at_ms, op.op_id)` is greater than
//!   `(state.at_ms, state.op_id)`, compared lexicographically; `op_id`s compare as byte
//!   strings (Rust's `str` order), so every side breaks ties the same way.
//! - An op equal to the stored one is a redelivery and changes nothing.
//! - A remove is kept as a tombstone (`present = false`), so an older add that arrives
//!   late cannot bring a removed item back.
//!
//! Invariant: the stored state is a function of the set of ops seen, never of their
//! arrival order; and applying an op twice is the same as applying it once. The tests
//! check both with proptest.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What a wishlist edit does to its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WishlistAction {
    /// Put the item on the wishlist.
    Add,
    /// Take the item off the wishlist.
    Remove,
}

impl WishlistAction {
    /// The snake_case name used in SQLite and on the wire (same as serde).
    pub fn as_str(&self) -> &'static str {
        match self {
            WishlistAction::Add => "add",
            WishlistAction::Remove => "remove",
        }
    }
}

/// Writes the snake_case name, `add` or `remove`.
impl fmt::Display for WishlistAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action name read from storage or a payload that is not `add` or `remove`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{text:?} is not a wishlist action; expected add or remove")]
pub struct UnknownWishlistAction {
    /// The rejected text, exactly as given.
    pub text: String,
}

/// Parses the name written by [`WishlistAction::as_str`].
impl FromStr for WishlistAction {
    type Err = UnknownWishlistAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "add" => Ok(WishlistAction::Add),
            "remove" => Ok(WishlistAction::Remove),
            _ => Err(UnknownWishlistAction { text: s.to_owned() }),
        }
    }
}

/// One edit to one wishlist item, from any channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WishlistOp {
    /// The customer whose wishlist is edited.
    pub customer_id: String,
    /// The product (GTIN) the edit is about.
    pub gtin: String,
    /// Add or remove.
    pub action: WishlistAction,
    /// When the edit was made, Unix milliseconds on the editing device's clock.
    pub at_ms: i64,
    /// Globally unique id of the edit (a UUIDv7 in practice); breaks `at_ms` ties and
    /// identifies redeliveries.
    pub op_id: String,
    /// Where the edit was made (e.g. `kiosk`, `associate`, `web`, `app`), for display.
    pub channel: String,
}

/// The stored state of one wishlist item: the effect of the winning op so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemState {
    /// Whether the item is on the wishlist; false is a tombstone left by a remove.
    pub present: bool,
    /// `at_ms` of the winning op.
    pub at_ms: i64,
    /// `op_id` of the winning op.
    pub op_id: String,
    /// When the item was added, for "on your wishlist since …": the winning add's
    /// `at_ms`, or `None` when the winning op is a remove.
    pub added_at_ms: Option<i64>,
    /// The channel of the winning op.
    pub channel: String,
}

/// Applies `op` to the item's stored state (`None` when the item was never seen).
///
/// Returns the new state when `op` wins, and `None` when it loses to the stored op or
/// is a redelivery of it; on `None` the caller writes nothing. A winning remove returns
/// a tombstone rather than deleting the item, so the order of arrival never matters.
///
/// `added_at_ms` is the winning add's own `at_ms`, even when the item was already
/// present. Keeping an earlier add time instead would make the result depend on
/// arrival order (two adds at 1 and 2 would end with 1 in one order and 2 in the
/// other), which this module exists to prevent.
pub fn apply(current: Option<&ItemState>, op: &WishlistOp) -> Option<ItemState> {
    if let Some(state) = current {
        let op_key = (op.at_ms, op.op_id.as_str());
        let state_key = (state.at_ms, state.op_id.as_str());
        if op_key <= state_key {
            return None;
        }
    }
    let present = op.action == WishlistAction::Add;
    Some(ItemState {
        present,
        at_ms: op.at_ms,
        op_id: op.op_id.clone(),
        added_at_ms: present.then_some(op.at_ms),
        channel: op.channel.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use WishlistAction::{Add, Remove};
    use proptest::prelude::*;

    fn op(action: WishlistAction, at_ms: i64, op_id: &str, channel: &str) -> WishlistOp {
        WishlistOp {
            customer_id: "cust-1".to_owned(),
            gtin: "04006381333931".to_owned(),
            action,
            at_ms,
            op_id: op_id.to_owned(),
            channel: channel.to_owned(),
        }
    }

    fn state(present: bool, at_ms: i64, op_id: &str, added_at_ms: Option<i64>, channel: &str) -> ItemState {
        ItemState {
            present,
            at_ms,
            op_id: op_id.to_owned(),
            added_at_ms,
            channel: channel.to_owned(),
        }
    }

    fn fold<'a>(ops: impl IntoIterator<Item = &'a WishlistOp>) -> Option<ItemState> {
        let mut current: Option<ItemState> = None;
        for op in ops {
            if let Some(next) = apply(current.as_ref(), op) {
                current = Some(next);
            }
        }
        current
    }

    #[test]
    fn apply_follows_last_writer_wins() {
        let stored_add = state(true, 100, "m", Some(100), "web");
        let tombstone = state(false, 100, "m", None, "web");
        let cases: Vec<(&str, Option<ItemState>, WishlistOp, Option<ItemState>)> = vec![
            (
                "first add creates the item",
                None,
                op(Add, 100, "m", "kiosk"),
                Some(state(true, 100, "m", Some(100), "kiosk")),
            ),
            (
                "first op a remove leaves a tombstone",
                None,
                op(Remove, 100, "m", "app"),
                Some(state(false, 100, "m", None, "app")),
            ),
            (
                "newer remove wins",
                Some(stored_add.clone()),
                op(Remove, 101, "a", "kiosk"),
                Some(state(false, 101, "a", None, "kiosk")),
            ),
            (
                "older remove loses",
                Some(stored_add.clone()),
                op(Remove, 99, "z", "kiosk"),
                None,
            ),
            (
                "older add cannot resurrect a removed item",
                Some(tombstone.clone()),
                op(Add, 99, "z", "kiosk"),
                None,
            ),
            (
                "newer add brings a removed item back",
                Some(tombstone.clone()),
                op(Add, 150, "b", "associate"),
                Some(state(true, 150, "b", Some(150), "associate")),
            ),
            (
                "same time, larger op id wins",
                Some(stored_add.clone()),
                op(Remove, 100, "n", "kiosk"),
                Some(state(false, 100, "n", None, "kiosk")),
            ),
            (
                "same time, smaller op id loses",
                Some(tombstone.clone()),
                op(Add, 100, "l", "kiosk"),
                None,
            ),
            (
                "op ids compare as byte strings",
                Some(state(true, 100, "Z", Some(100), "web")),
                op(Remove, 100, "a", "kiosk"),
                Some(state(false, 100, "a", None, "kiosk")),
            ),
            (
                "redelivery is ignored",
                Some(stored_add.clone()),
                op(Add, 100, "m", "web"),
                None,
            ),
            (
                "redelivered remove is ignored",
                Some(tombstone.clone()),
                op(Remove, 100, "m", "web"),
                None,
            ),
            (
                "newer add over a present item takes the new add time",
                Some(stored_add.clone()),
                op(Add, 200, "c", "app"),
                Some(state(true, 200, "c", Some(200), "app")),
            ),
            (
                "time outranks op id",
                Some(state(true, 100, "zzz", Some(100), "web")),
                op(Remove, 101, "a", "kiosk"),
                Some(state(false, 101, "a", None, "kiosk")),
            ),
        ];
        for (name, current, incoming, expected) in cases {
            assert_eq!(apply(current.as_ref(), &incoming), expected, "{name}");
        }
    }

    #[test]
    fn late_older_add_does_not_resurrect_in_either_order() {
        let add = op(Add, 10, "a", "web");
        let remove = op(Remove, 20, "b", "kiosk");
        let expected = Some(state(false, 20, "b", None, "kiosk"));
        assert_eq!(fold([&add, &remove]), expected);
        assert_eq!(fold([&remove, &add]), expected);
    }

    #[test]
    fn action_names_match_serde_and_parse_back() {
        for action in [Add, Remove] {
            let json = serde_json::to_string(&action).expect("serializes");
            assert_eq!(json, format!("\"{}\"", action.as_str()));
            assert_eq!(action.to_string(), action.as_str());
            assert_eq!(action.as_str().parse::<WishlistAction>(), Ok(action));
        }
        assert_eq!(Add.as_str(), "add");
        assert_eq!(Remove.as_str(), "remove");
        let err = "Add".parse::<WishlistAction>().unwrap_err();
        assert_eq!(err.text, "Add");
        assert!(err.to_string().contains("\"Add\""), "{err}");
    }

    #[test]
    fn op_serde_round_trips() {
        let original = op(
            Remove,
            1_714_586_400_000,
            "0190f3a2-0000-7000-8000-000000000001",
            "kiosk",
        );
        let json = serde_json::to_value(&original).expect("serializes");
        assert_eq!(json["action"], "remove");
        assert_eq!(json["at_ms"], 1_714_586_400_000_i64);
        let back: WishlistOp = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, original);
    }

    /// Up to 8 ops on one item. Times come from a small range so that ties on `at_ms`
    /// are common; op ids are unique (index suffix) but their order is random (prefix).
    fn ops_on_one_item() -> impl Strategy<Value = Vec<WishlistOp>> {
        prop::collection::vec((0i64..4, any::<bool>(), 0u8..4, 0usize..3), 0..=8).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(index, (at_ms, is_add, prefix, channel))| {
                    let action = if is_add { Add } else { Remove };
                    let op_id = format!("{}-{index}", char::from(b'a' + prefix));
                    op(action, at_ms, &op_id, ["kiosk", "web", "app"][channel])
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn every_arrival_order_converges(
            (ops, shuffled_a, shuffled_b, shuffled_c) in ops_on_one_item().prop_flat_map(|ops| {
                (
                    Just(ops.clone()),
                    Just(ops.clone()).prop_shuffle(),
                    Just(ops.clone()).prop_shuffle(),
                    Just(ops).prop_shuffle(),
                )
            })
        ) {
            let in_order = fold(&ops);
            prop_assert_eq!(&fold(&shuffled_a), &in_order);
            prop_assert_eq!(&fold(&shuffled_b), &in_order);
            prop_assert_eq!(&fold(&shuffled_c), &in_order);

            // The final state is exactly the effect of the greatest (at_ms, op_id).
            let winner = ops.iter().max_by(|x, y| (x.at_ms, &x.op_id).cmp(&(y.at_ms, &y.op_id)));
            prop_assert_eq!(in_order, winner.and_then(|w| apply(None, w)));
        }

        #[test]
        fn applying_an_op_twice_changes_nothing(ops in ops_on_one_item()) {
            let mut current: Option<ItemState> = None;
            for op in &ops {
                if let Some(next) = apply(current.as_ref(), op) {
                    current = Some(next);
                }
                prop_assert_eq!(apply(current.as_ref(), op), None, "immediate redelivery of {:?}", op);
            }
            for op in &ops {
                prop_assert_eq!(apply(current.as_ref(), op), None, "late redelivery of {:?}", op);
            }
        }
    }
}
