//! The read side: what the screens ask of the local store.
//!
//! Every function takes a `&Connection` (a read-only one from the [`super::ReadPool`])
//! and uses cached prepared statements, so a repeated lookup costs one B-tree
//! search per table and no SQL parsing.

use super::StoreError;
pub use kiosk_ui::model::{
    CartEntry, CartView, CustomerProfile, CustomerView, OrderLineView, OrderView, ProductView, StockView,
    WishlistEntry,
};
use rusqlite::{Connection, OptionalExtension, params};

fn stock_view(
    on_hand: Option<i64>,
    reserved: Option<i64>,
    aisle: Option<String>,
    bin: Option<String>,
) -> Option<StockView> {
    on_hand.map(|on_hand| {
        let reserved_bopis = reserved.unwrap_or(0);
        StockView {
            on_hand,
            reserved_bopis,
            available: (on_hand - reserved_bopis).max(0),
            aisle,
            bin,
        }
    })
}

/// Looks a product up by its 14-digit GTIN.
pub fn product_by_gtin14(conn: &Connection, gtin14: &str) -> Result<Option<ProductView>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.gtin, p.sku, p.name, p.brand, p.price_minor, p.currency, p.department, p.attributes,
                s.on_hand, s.reserved_bopis, s.aisle, s.bin
         FROM products p LEFT JOIN stock s ON s.gtin = p.gtin
         WHERE p.gtin = ?1",
    )?;
    Ok(stmt
        .query_row([gtin14], |r| {
            Ok(ProductView {
                gtin: r.get(0)?,
                sku: r.get(1)?,
                name: r.get(2)?,
                brand: r.get(3)?,
                price_minor: r.get(4)?,
                currency: r.get(5)?,
                department: r.get(6)?,
                attributes_json: r.get(7)?,
                stock: stock_view(r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?),
            })
        })
        .optional()?)
}

/// Looks a product up by any GTIN form (8, 12, 13 or 14 digits).
pub fn product_by_gtin(conn: &Connection, gtin: &str) -> Result<Option<ProductView>, StoreError> {
    let g14 = super::entities::gtin14("gtin", gtin)?;
    product_by_gtin14(conn, &g14)
}

/// The customer whose active card has this keyed hash.
pub fn customer_id_by_card_hash(
    conn: &Connection,
    card_hash: &[u8; 32],
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT customer_id FROM loyalty_cards WHERE card_hash = ?1 AND status = 'active'")?
        .query_row([&card_hash[..]], |r| r.get(0))
        .optional()?)
}

/// The customer panel for the holder of the card with this keyed hash.
pub fn customer_view_by_card_hash(
    conn: &Connection,
    card_hash: &[u8; 32],
) -> Result<Option<CustomerView>, StoreError> {
    // One read transaction, so the panel never mixes two states of the database.
    conn.execute_batch("BEGIN DEFERRED")?;
    let result = (|| match customer_id_by_card_hash(conn, card_hash)? {
        Some(id) => customer_view_in_tx(conn, &id),
        None => Ok(None),
    })();
    conn.execute_batch("COMMIT")?;
    result
}

/// The customer panel by customer id.
pub fn customer_view(conn: &Connection, customer_id: &str) -> Result<Option<CustomerView>, StoreError> {
    conn.execute_batch("BEGIN DEFERRED")?;
    let result = customer_view_in_tx(conn, customer_id);
    conn.execute_batch("COMMIT")?;
    result
}

/// A customer's profile alone (no wishlist, cart or orders).
pub fn customer_profile(conn: &Connection, customer_id: &str) -> Result<Option<CustomerProfile>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT customer_id, display_name, first_name, last_name, tier, points, preferences, consent,
                    home_store, last_seen_ms
             FROM customers WHERE customer_id = ?1",
        )?
        .query_row([customer_id], |r| {
            Ok(CustomerProfile {
                customer_id: r.get(0)?,
                display_name: r.get(1)?,
                first_name: r.get(2)?,
                last_name: r.get(3)?,
                tier: r.get(4)?,
                points: r.get(5)?,
                preferences_json: r.get(6)?,
                consent_json: r.get(7)?,
                home_store: r.get(8)?,
                last_seen_ms: r.get(9)?,
            })
        })
        .optional()?)
}

/// The columns [`order_head`] reads, in its order.
const ORDER_HEAD: &str =
    "order_id, kind, status, currency, total_minor, placed_at_ms, pickup_deadline_ms, fulfilled_at_ms";

/// An order row selected with [`ORDER_HEAD`], without its lines.
fn order_head(r: &rusqlite::Row<'_>) -> rusqlite::Result<OrderView> {
    Ok(OrderView {
        order_id: r.get(0)?,
        kind: r.get(1)?,
        status: r.get(2)?,
        currency: r.get(3)?,
        total_minor: r.get(4)?,
        placed_at_ms: r.get(5)?,
        pickup_deadline_ms: r.get(6)?,
        fulfilled_at_ms: r.get(7)?,
        lines: Vec::new(),
    })
}

fn customer_view_in_tx(conn: &Connection, customer_id: &str) -> Result<Option<CustomerView>, StoreError> {
    let profile = customer_profile(conn, customer_id)?;
    let Some(profile) = profile else {
        return Ok(None);
    };

    let wishlist = conn
        .prepare_cached(
            "SELECT w.gtin, w.added_at_ms, w.channel, p.name, p.price_minor, p.currency,
                    s.on_hand, s.reserved_bopis, s.aisle, s.bin
             FROM wishlist_items w
             LEFT JOIN products p ON p.gtin = w.gtin
             LEFT JOIN stock s ON s.gtin = w.gtin
             WHERE w.customer_id = ?1 AND w.present = 1
             ORDER BY w.added_at_ms DESC, w.gtin",
        )?
        .query_map([customer_id], |r| {
            Ok(WishlistEntry {
                gtin: r.get(0)?,
                added_at_ms: r.get(1)?,
                channel: r.get(2)?,
                name: r.get(3)?,
                price_minor: r.get(4)?,
                currency: r.get(5)?,
                stock: stock_view(r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let cart_head: Option<(String, i64)> = conn
        .prepare_cached("SELECT currency, updated_at_ms FROM carts WHERE customer_id = ?1")?
        .query_row([customer_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let cart = match cart_head {
        None => None,
        Some((currency, updated_at_ms)) => {
            let lines = conn
                .prepare_cached(
                    "SELECT c.line_no, c.gtin, c.qty, c.unit_price_minor, p.name,
                            s.on_hand, s.reserved_bopis, s.aisle, s.bin
                     FROM cart_lines c
                     LEFT JOIN products p ON p.gtin = c.gtin
                     LEFT JOIN stock s ON s.gtin = c.gtin
                     WHERE c.customer_id = ?1 ORDER BY c.line_no",
                )?
                .query_map([customer_id], |r| {
                    Ok(CartEntry {
                        line_no: r.get(0)?,
                        gtin: r.get(1)?,
                        qty: r.get(2)?,
                        unit_price_minor: r.get(3)?,
                        name: r.get(4)?,
                        stock: stock_view(r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Some(CartView {
                currency,
                updated_at_ms,
                lines,
            })
        }
    };

    let mut open_orders = conn
        .prepare_cached(&format!(
            "SELECT {ORDER_HEAD} FROM orders
             WHERE customer_id = ?1 AND kind = 'bopis' AND status IN ('ready_for_pickup', 'customer_arrived')
             ORDER BY placed_at_ms"
        ))?
        .query_map([customer_id], order_head)?
        .collect::<Result<Vec<_>, _>>()?;
    for order in &mut open_orders {
        order.lines = order_lines(conn, &order.order_id)?;
    }

    // Received online orders: where a return starts.
    let mut recent_orders = conn
        .prepare_cached(&format!(
            "SELECT {ORDER_HEAD} FROM orders
             WHERE customer_id = ?1 AND fulfilled_at_ms IS NOT NULL
             ORDER BY fulfilled_at_ms DESC LIMIT 10"
        ))?
        .query_map([customer_id], order_head)?
        .collect::<Result<Vec<_>, _>>()?;
    for order in &mut recent_orders {
        order.lines = order_lines(conn, &order.order_id)?;
    }

    let recent_purchases = conn
        .prepare_cached(
            "SELECT t.tx_id, t.kind, coalesce(t.occurred_at_ms, t.recorded_at_ms), t.total_minor, t.currency,
                    (SELECT count(*) FROM pos_lines l WHERE l.tx_id = t.tx_id AND l.kind IN ('sale', 'return'))
             FROM pos_transactions t WHERE t.customer_id = ?1
             ORDER BY coalesce(t.occurred_at_ms, t.recorded_at_ms) DESC LIMIT 10",
        )?
        .query_map([customer_id], |r| {
            Ok(kiosk_ui::model::PurchaseView {
                tx_id: r.get(0)?,
                kind: r.get(1)?,
                at_ms: r.get(2)?,
                total_minor: r.get(3)?,
                currency: r.get(4)?,
                items: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;

    Ok(Some(CustomerView {
        profile,
        wishlist,
        cart,
        open_orders,
        recent_orders,
        recent_purchases,
    }))
}

/// The lines of an order.
pub fn order_lines(conn: &Connection, order_id: &str) -> Result<Vec<OrderLineView>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT line_no, gtin, name, qty_ordered, qty_returned, unit_price_minor, final_sale, qty_refused
             FROM order_lines WHERE order_id = ?1 ORDER BY line_no",
        )?
        .query_map(params![order_id], |r| {
            Ok(OrderLineView {
                line_no: r.get(0)?,
                gtin: r.get(1)?,
                name: r.get(2)?,
                qty_ordered: r.get(3)?,
                qty_returned: r.get(4)?,
                unit_price_minor: r.get(5)?,
                final_sale: r.get(6)?,
                qty_refused: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

/// An order with its lines.
pub fn order_view(conn: &Connection, order_id: &str) -> Result<Option<OrderView>, StoreError> {
    let head = conn
        .prepare_cached(&format!("SELECT {ORDER_HEAD} FROM orders WHERE order_id = ?1"))?
        .query_row([order_id], order_head)
        .optional()?;
    match head {
        None => Ok(None),
        Some(mut o) => {
            o.lines = order_lines(conn, order_id)?;
            Ok(Some(o))
        }
    }
}

/// The profile of the customer who placed an order, if the order has one.
pub fn order_customer_profile(
    conn: &Connection,
    order_id: &str,
) -> Result<Option<CustomerProfile>, StoreError> {
    let customer: Option<Option<String>> = conn
        .prepare_cached("SELECT customer_id FROM orders WHERE order_id = ?1")?
        .query_row([order_id], |r| r.get(0))
        .optional()?;
    match customer.flatten() {
        Some(id) => customer_profile(conn, &id),
        None => Ok(None),
    }
}

/// The order whose pickup code has this keyed hash.
pub fn order_id_by_pickup_hash(conn: &Connection, hash: &[u8; 32]) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT order_id FROM orders WHERE pickup_code_hash = ?1")?
        .query_row([&hash[..]], |r| r.get(0))
        .optional()?)
}

/// BOPIS orders waiting for pickup: customers who arrived first, then by order time.
pub fn pickup_queue(conn: &Connection, now_ms: i64) -> Result<Vec<kiosk_ui::model::QueueEntry>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT o.order_id, c.display_name, o.status, o.placed_at_ms, o.pickup_deadline_ms,
                    (SELECT count(*) FROM order_lines l WHERE l.order_id = o.order_id)
             FROM orders o LEFT JOIN customers c ON c.customer_id = o.customer_id
             WHERE o.kind = 'bopis' AND o.status IN ('ready_for_pickup', 'customer_arrived')
             ORDER BY o.status = 'customer_arrived' DESC, o.placed_at_ms
             LIMIT 500",
        )?
        .query_map([], |r| {
            let deadline: Option<i64> = r.get(4)?;
            Ok(kiosk_ui::model::QueueEntry {
                order_id: r.get(0)?,
                customer_name: r.get(1)?,
                status: r.get(2)?,
                placed_at_ms: r.get(3)?,
                pickup_deadline_ms: deadline,
                overdue: deadline.is_some_and(|d| d < now_ms),
                lines: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

/// A cheap fingerprint of the pickup queue (count and last change), so a poller can
/// tell the screens the queue changed without reading it.
pub fn pickup_queue_fingerprint(conn: &Connection) -> Result<(i64, i64), StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), coalesce(max(updated_at_ms), 0) FROM orders
             WHERE kind = 'bopis' AND status IN ('ready_for_pickup', 'customer_arrived')",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// What an associate typed into the console's customer search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerQuery {
    /// A name, or the start of one.
    Name(String),
    /// An e-mail address (text with an `@`), as its keyed hash.
    Email([u8; 32]),
    /// Exactly four digits: the phone number's last four.
    PhoneLast4(String),
    /// A whole phone number (seven digits or more, with `+`, spaces or dashes), as
    /// its keyed hash.
    Phone([u8; 32]),
}

impl CustomerQuery {
    /// Reads the search text: e-mail, phone last 4, phone number or name.
    pub fn parse(hasher: &crate::store::KeyedHasher, text: &str) -> CustomerQuery {
        let text = text.trim();
        if text.contains('@') {
            return CustomerQuery::Email(hasher.email_hash(text));
        }
        if text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()) {
            return CustomerQuery::PhoneLast4(text.to_string());
        }
        let phone_like = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '/'));
        let digits = crate::store::keyed_hash::phone_digits(text);
        if phone_like && digits.len() >= 7 {
            return CustomerQuery::Phone(hasher.phone_hash(text));
        }
        CustomerQuery::Name(text.to_string())
    }
}

/// Customers for the console's search: by name (the display name, or the first or
/// last name, starting with the text, case insensitive), e-mail, phone or phone
/// last 4; at most `limit`.
///
/// The name search scans the customers table until `limit` hits: on the
/// 1M-customer store a search for a rare name reads the whole table (see
/// docs/benchmarks.md); an index would cost every snapshot load a rebuild. E-mail
/// and phone are exact look-ups by index.
pub fn search_customers(
    conn: &Connection,
    query: &CustomerQuery,
    limit: u32,
) -> Result<Vec<kiosk_ui::model::CustomerHit>, StoreError> {
    const COLUMNS: &str = "SELECT customer_id, display_name, tier, points FROM customers";
    let hit = |r: &rusqlite::Row<'_>| {
        Ok(kiosk_ui::model::CustomerHit {
            customer_id: r.get(0)?,
            display_name: r.get(1)?,
            tier: r.get(2)?,
            points: r.get(3)?,
        })
    };
    let rows = match query {
        CustomerQuery::Name(text) => {
            let escaped: String = text
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            let prefix = format!("{escaped}%");
            let word = format!("% {escaped}%");
            conn.prepare_cached(&format!(
                "{COLUMNS}
                 WHERE display_name LIKE ?1 ESCAPE '\\' OR display_name LIKE ?2 ESCAPE '\\'
                    OR first_name LIKE ?1 ESCAPE '\\' OR last_name LIKE ?1 ESCAPE '\\'
                 LIMIT ?3"
            ))?
            .query_map(params![prefix, word, limit], hit)?
            .collect::<Result<Vec<_>, _>>()?
        }
        CustomerQuery::Email(hash) => conn
            .prepare_cached(&format!("{COLUMNS} WHERE email_hash = ?1 LIMIT ?2"))?
            .query_map(params![&hash[..], limit], hit)?
            .collect::<Result<Vec<_>, _>>()?,
        CustomerQuery::Phone(hash) => conn
            .prepare_cached(&format!("{COLUMNS} WHERE phone_hash = ?1 LIMIT ?2"))?
            .query_map(params![&hash[..], limit], hit)?
            .collect::<Result<Vec<_>, _>>()?,
        CustomerQuery::PhoneLast4(last4) => conn
            .prepare_cached(&format!(
                "{COLUMNS} WHERE phone_last4 = ?1 ORDER BY display_name LIMIT ?2"
            ))?
            .query_map(params![last4, limit], hit)?
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(rows)
}

/// An associate as the sign-in needs them: name, role and PIN hash, when active.
pub fn associate_for_sign_in(
    conn: &Connection,
    associate_id: &str,
) -> Result<Option<(String, String, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT name, role, pin_hash FROM associates WHERE associate_id = ?1 AND active = 1")?
        .query_row([associate_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}

/// What the status bar shows, read in one go.
pub fn status_bar(conn: &Connection) -> Result<kiosk_ui::model::StatusBar, StoreError> {
    let sync: Option<(String, i64, Option<i64>)> = conn
        .prepare_cached("SELECT state, since_ms, offline_since_ms FROM sync_state WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let data_as_of_ms: Option<i64> = conn
        .prepare_cached("SELECT max(updated_at_ms) FROM downlink_streams")?
        .query_row([], |r| r.get(0))?;
    let events_waiting: i64 = conn
        .prepare_cached("SELECT count(*) FROM outbox")?
        .query_row([], |r| r.get(0))?;
    let (devices_total, devices_connected): (u32, u32) = conn
        .prepare_cached("SELECT count(*), coalesce(sum(state = 'connected'), 0) FROM device_status")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (online, since_ms) = match sync {
        Some((state, since, _)) if state == "online" => (true, Some(since)),
        Some((_, since, offline_since)) => (false, offline_since.or(Some(since))),
        None => (false, None),
    };
    Ok(kiosk_ui::model::StatusBar {
        online,
        since_ms,
        data_as_of_ms,
        events_waiting,
        devices_total,
        devices_connected,
    })
}
