//! The entities of the store streams as the cloud keeps them:
//! * which entity an item is about: the key of each stream's records, in the
//!   form the agent itself keys them by (GTINs as 14 digits, card hashes in
//!   lowercase), so that two spellings of one product are one entity here too;
//! * whether the agent would accept it ([`fits_schema`]): published entities
//!   are checked once, so snapshots can leave out what would make the agent
//!   refuse the whole file without parsing every record again;
//! * the tag of each stream's snapshot record lines.

use crate::events::DownlinkStream;
use crate::store::entities::{
    AssociateRecord, CartRecord, ConfigEntry, CustomerRecord, LoyaltyCardRecord, OrderRecord, ProductRecord,
    StockRecord, WishlistItemRecord,
};
use crate::store::snapshot::SnapshotRecord;
use rusqlite::Connection;
use serde_json::Value;
use std::cell::RefCell;

/// Separates the customer from the GTIN in a wishlist item's key
/// (`"{customer_id}/{gtin14}"`); a GTIN never holds it, so the last one splits.
pub const WISHLIST_KEY_SEPARATOR: char = '/';

/// A GTIN as the agent stores it (14 digits); anything that is not a valid GTIN
/// is kept as written, so a malformed test entity still has a key.
fn gtin_key(gtin: &str) -> String {
    firmware_interfaces::gtin::to_gtin14(gtin.trim()).unwrap_or_else(|_| gtin.trim().to_string())
}

fn wishlist_key(customer_id: &str, gtin: &str) -> String {
    format!("{customer_id}{WISHLIST_KEY_SEPARATOR}{}", gtin_key(gtin))
}

/// The key of `entity` on `stream`, from its key fields: products and stock
/// `gtin`, customers `customer_id`, loyalty cards `card_hash`, wishlists
/// `customer_id` + `gtin`, carts `customer_id`, orders `order_id`, associates
/// `associate_id`, config `key`. `None` when a key field is missing or not a
/// string, and always for `erasure`, whose requests are not entities the cloud keeps.
pub fn entity_key(stream: DownlinkStream, entity: &Value) -> Option<String> {
    let field = |name: &str| entity.get(name).and_then(Value::as_str);
    Some(match stream {
        DownlinkStream::Products | DownlinkStream::Stock => gtin_key(field("gtin")?),
        DownlinkStream::Customers | DownlinkStream::Carts => field("customer_id")?.to_string(),
        DownlinkStream::LoyaltyCards => field("card_hash")?.to_ascii_lowercase(),
        DownlinkStream::Wishlists => wishlist_key(field("customer_id")?, field("gtin")?),
        DownlinkStream::Orders => field("order_id")?.to_string(),
        DownlinkStream::Associates => field("associate_id")?.to_string(),
        DownlinkStream::Config => field("key")?.to_string(),
        DownlinkStream::Erasure => return None,
    })
}

/// A key as a caller may write it (a 13-digit GTIN, an uppercase card hash) in
/// the form [`entity_key`] produces, for look-ups.
pub fn normalize_key(stream: DownlinkStream, key: &str) -> String {
    match stream {
        DownlinkStream::Products | DownlinkStream::Stock => gtin_key(key),
        DownlinkStream::LoyaltyCards => key.to_ascii_lowercase(),
        DownlinkStream::Wishlists => match key.rsplit_once(WISHLIST_KEY_SEPARATOR) {
            Some((customer, gtin)) => wishlist_key(customer, gtin),
            None => key.to_string(),
        },
        _ => key.to_string(),
    }
}

/// The tag of `stream`'s records in a snapshot file (`{"product":{…}}`);
/// `None` for `erasure`, which has no records.
pub(super) fn record_tag(stream: DownlinkStream) -> Option<&'static str> {
    Some(match stream {
        DownlinkStream::Products => "product",
        DownlinkStream::Stock => "stock",
        DownlinkStream::Customers => "customer",
        DownlinkStream::LoyaltyCards => "loyalty_card",
        DownlinkStream::Wishlists => "wishlist_item",
        DownlinkStream::Carts => "cart",
        DownlinkStream::Orders => "order",
        DownlinkStream::Associates => "associate",
        DownlinkStream::Config => "config",
        DownlinkStream::Erasure => return None,
    })
}

/// A snapshot record read from `line` as `(stream, key, entity JSON)` for the
/// entity state; `None` for the trailer. The entity's JSON is cut from the line
/// when the line is compact (as every writer of this format makes it), and
/// serialized again otherwise.
pub(super) fn record_parts(record: &SnapshotRecord, line: &str) -> Option<(DownlinkStream, String, String)> {
    fn json<T: serde::Serialize>(value: &T) -> String {
        // Serializing these plain structs cannot fail (string keys, no custom code).
        serde_json::to_string(value).unwrap_or_default()
    }
    let (stream, key) = match record {
        SnapshotRecord::Product(r) => (DownlinkStream::Products, gtin_key(&r.gtin)),
        SnapshotRecord::Stock(r) => (DownlinkStream::Stock, gtin_key(&r.gtin)),
        SnapshotRecord::Customer(r) => (DownlinkStream::Customers, r.customer_id.clone()),
        SnapshotRecord::LoyaltyCard(r) => (DownlinkStream::LoyaltyCards, r.card_hash.to_ascii_lowercase()),
        SnapshotRecord::WishlistItem(r) => (DownlinkStream::Wishlists, wishlist_key(&r.customer_id, &r.gtin)),
        SnapshotRecord::Cart(r) => (DownlinkStream::Carts, r.customer_id.clone()),
        SnapshotRecord::Order(r) => (DownlinkStream::Orders, r.order_id.clone()),
        SnapshotRecord::Associate(r) => (DownlinkStream::Associates, r.associate_id.clone()),
        SnapshotRecord::Config(r) => (DownlinkStream::Config, r.key.clone()),
        SnapshotRecord::End(_) => return None,
    };
    // Only for a line written with spaces: the record's own JSON.
    let typed = || match record {
        SnapshotRecord::Product(r) => json(r),
        SnapshotRecord::Stock(r) => json(r),
        SnapshotRecord::Customer(r) => json(r),
        SnapshotRecord::LoyaltyCard(r) => json(r),
        SnapshotRecord::WishlistItem(r) => json(r),
        SnapshotRecord::Cart(r) => json(r),
        SnapshotRecord::Order(r) => json(r),
        SnapshotRecord::Associate(r) => json(r),
        SnapshotRecord::Config(r) => json(r),
        SnapshotRecord::End(r) => json(r),
    };
    let json = record_tag(stream)
        .and_then(|tag| {
            let inner = line
                .trim_end()
                .strip_prefix("{\"")?
                .strip_prefix(tag)?
                .strip_prefix("\":")?
                .strip_suffix('}')?;
            Some(inner.to_string())
        })
        .unwrap_or_else(typed);
    Some((stream, key, json))
}

/// Why the agent would refuse `entity` as a record of `stream`, if it would:
/// its schema (unknown or missing fields) and the checks the agent makes when
/// it writes one (a valid GTIN, a known currency, …), run against a scratch
/// in-memory database with the agent's schema that is rolled back each time.
pub fn fits_schema(stream: DownlinkStream, entity: &Value) -> Result<(), String> {
    use crate::store::entities::Entity;
    fn typed<T: serde::de::DeserializeOwned>(entity: &Value) -> Result<T, String> {
        T::deserialize(entity).map_err(|e| e.to_string())
    }
    thread_local! {
        /// One scratch database per thread (the database thread, in practice).
        static SCRATCH: RefCell<Option<Connection>> = const { RefCell::new(None) };
    }
    SCRATCH.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            let mut conn = Connection::open_in_memory().map_err(|e| format!("scratch database: {e}"))?;
            crate::store::schema::migrate(&mut conn).map_err(|e| format!("scratch database: {e}"))?;
            *cell = Some(conn);
        }
        let conn = cell.as_mut().ok_or("no scratch database")?;
        let tx = conn.transaction().map_err(|e| format!("scratch database: {e}"))?;
        let written = match stream {
            DownlinkStream::Products => typed::<ProductRecord>(entity)?.write(&tx, 0),
            DownlinkStream::Stock => typed::<StockRecord>(entity)?.write(&tx, 0),
            DownlinkStream::Customers => typed::<CustomerRecord>(entity)?.write(&tx, 0),
            DownlinkStream::LoyaltyCards => typed::<LoyaltyCardRecord>(entity)?.write(&tx, 0),
            DownlinkStream::Wishlists => typed::<WishlistItemRecord>(entity)?.write(&tx, 0),
            DownlinkStream::Carts => typed::<CartRecord>(entity)?.write(&tx, 0),
            DownlinkStream::Orders => typed::<OrderRecord>(entity)?.write(&tx, 0),
            DownlinkStream::Associates => typed::<AssociateRecord>(entity)?.write(&tx, 0),
            DownlinkStream::Config => typed::<ConfigEntry>(entity)?.write(&tx, 0),
            DownlinkStream::Erasure => {
                typed::<crate::sync::protocol::ErasureRequest>(entity)?;
                Ok(())
            }
        };
        // Dropping `tx` rolls the write back: the scratch database stays empty.
        written.map_err(|e| e.to_string())
    })
}
