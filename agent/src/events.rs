//! Events the store captures for the cloud, and the uplink streams they travel on.
//!
//! An event gets its idempotency key at the moment it is captured — when the scan,
//! the POSLog file or the associate's click reaches the agent — not when it is
//! sent. Every redelivery after that carries the same key, so the cloud can
//! de-duplicate whatever the network did.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// The current time as Unix milliseconds, the one time unit stored in the database.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An event with the identity it got when the agent first saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Captured<T> {
    /// UUIDv7: unique, and sortable by capture time, which keeps the outbox's
    /// unique index append-mostly.
    pub idempotency_key: Uuid,
    /// When the agent captured the event (Unix ms, the device's clock).
    pub captured_at_ms: i64,
    /// What happened.
    pub event: T,
}

impl<T> Captured<T> {
    /// Captures `event` now, with a fresh idempotency key.
    pub fn now(event: T) -> Self {
        Self::at(now_ms(), event)
    }

    /// Captures `event` at a given time (tests and replays pass their own clock).
    pub fn at(captured_at_ms: i64, event: T) -> Self {
        Captured {
            idempotency_key: Uuid::now_v7(),
            captured_at_ms,
            event,
        }
    }
}

/// The device uplink streams that carry store events to the cloud. Each has its
/// own sequence in the outbox, so a slow stream never holds up another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UplinkStream {
    /// Completed POS transactions.
    PosTransactions,
    /// BOPIS order events: check-in, hand-over, refusal.
    OrderEvents,
    /// BORIS returns.
    Returns,
    /// Wishlist add/remove operations made in the store.
    WishlistOps,
    /// Receipt text captured from printer streams (journal tap).
    Journal,
    /// Confirmations that a customer's local data was erased on the cloud's request.
    Erasures,
    /// Scan and engagement events (product scans at the kiosk): telemetry, sent last.
    ScanEvents,
}

impl UplinkStream {
    /// Every stream, in the order the uplink pump serves them: money first.
    pub const ALL: [UplinkStream; 7] = [
        UplinkStream::PosTransactions,
        UplinkStream::Returns,
        UplinkStream::OrderEvents,
        UplinkStream::Erasures,
        UplinkStream::WishlistOps,
        UplinkStream::Journal,
        UplinkStream::ScanEvents,
    ];

    /// The name used in the database and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            UplinkStream::PosTransactions => "pos_transactions",
            UplinkStream::OrderEvents => "order_events",
            UplinkStream::Returns => "returns",
            UplinkStream::WishlistOps => "wishlist_ops",
            UplinkStream::Journal => "journal",
            UplinkStream::Erasures => "erasures",
            UplinkStream::ScanEvents => "scan_events",
        }
    }
}

impl std::fmt::Display for UplinkStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cloud-to-store streams. All devices of a store read the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownlinkStream {
    /// The catalogue: [`crate::store::entities::ProductRecord`], keyed by `gtin`.
    Products,
    /// Stock in this store: `StockRecord`, keyed by `gtin`.
    Stock,
    /// Customer profiles: `CustomerRecord`, keyed by `customer_id`.
    Customers,
    /// Loyalty card hashes: `LoyaltyCardRecord`, keyed by `card_hash`.
    LoyaltyCards,
    /// Wishlist item registers: `WishlistItemRecord`, merged last-writer-wins.
    Wishlists,
    /// Online carts: `CartRecord` with its lines, keyed by `customer_id`.
    Carts,
    /// Online orders for this store: `OrderRecord` with its lines, keyed by `order_id`.
    Orders,
    /// Store associates: `AssociateRecord`, keyed by `associate_id`.
    Associates,
    /// Store settings pushed by the cloud: [`crate::store::entities::ConfigEntry`], keyed by `key`.
    Config,
    /// Requests to forget a customer: [`crate::sync::protocol::ErasureRequest`]; upsert only.
    Erasure,
}

impl DownlinkStream {
    /// Every stream.
    pub const ALL: [DownlinkStream; 10] = [
        DownlinkStream::Products,
        DownlinkStream::Stock,
        DownlinkStream::Customers,
        DownlinkStream::LoyaltyCards,
        DownlinkStream::Wishlists,
        DownlinkStream::Carts,
        DownlinkStream::Orders,
        DownlinkStream::Associates,
        DownlinkStream::Config,
        DownlinkStream::Erasure,
    ];

    /// The name in topics, envelopes and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DownlinkStream::Products => "products",
            DownlinkStream::Stock => "stock",
            DownlinkStream::Customers => "customers",
            DownlinkStream::LoyaltyCards => "loyalty_cards",
            DownlinkStream::Wishlists => "wishlists",
            DownlinkStream::Carts => "carts",
            DownlinkStream::Orders => "orders",
            DownlinkStream::Associates => "associates",
            DownlinkStream::Config => "config",
            DownlinkStream::Erasure => "erasure",
        }
    }

    /// The stream with this name.
    pub fn parse(name: &str) -> Option<DownlinkStream> {
        DownlinkStream::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The tables that hold this stream's state, children first. A snapshot that
    /// covers the stream replaces exactly these.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            DownlinkStream::Products => &["products"],
            DownlinkStream::Stock => &["stock"],
            DownlinkStream::Customers => &["customers"],
            DownlinkStream::LoyaltyCards => &["loyalty_cards"],
            DownlinkStream::Wishlists => &["wishlist_items"],
            DownlinkStream::Carts => &["cart_lines", "carts"],
            DownlinkStream::Orders => &["order_lines", "orders"],
            DownlinkStream::Associates => &["associates"],
            DownlinkStream::Config => &["cloud_config"],
            DownlinkStream::Erasure => &[],
        }
    }
}

impl std::fmt::Display for DownlinkStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_ordered_by_capture() {
        let a = Captured::now(());
        let b = Captured::now(());
        assert_ne!(a.idempotency_key, b.idempotency_key);
        assert_eq!(a.idempotency_key.get_version_num(), 7);
        assert!(a.idempotency_key < b.idempotency_key);
    }

    #[test]
    fn stream_names_match_serde() {
        for s in UplinkStream::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }
}
