//! The read side: what the screens ask of the local store.
//!
//! Every function takes a `&Connection` (a read-only one from the [`super::ReadPool`])
//! and uses cached prepared statements, so a repeated lookup costs one B-tree
//! search per table and no SQL parsing.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// This store's stock of a product, as the screens show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockView {
    /// Units on hand.
    pub on_hand: i64,
    /// Units held for BOPIS orders.
    pub reserved_bopis: i64,
    /// What can be sold: on hand less reserved, never negative.
    pub available: i64,
    /// Aisle.
    pub aisle: Option<String>,
    /// Bin or shelf.
    pub bin: Option<String>,
}

/// A product with its stock here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductView {
    /// 14-digit GTIN.
    pub gtin: String,
    /// Article number.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Brand.
    pub brand: Option<String>,
    /// Shelf price, minor units.
    pub price_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Department.
    pub department: Option<String>,
    /// Attributes as a JSON object text (passed through to the screens unparsed).
    pub attributes_json: String,
    /// `None` when the store has no stock record for it.
    pub stock: Option<StockView>,
}

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

/// The customer profile the screens show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerProfile {
    /// Cloud customer id.
    pub customer_id: String,
    /// Greeting name.
    pub display_name: String,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Loyalty tier.
    pub tier: Option<String>,
    /// Points balance.
    pub points: i64,
    /// Preferences as JSON object text.
    pub preferences_json: String,
    /// Consent flags as JSON object text.
    pub consent_json: String,
    /// Home store.
    pub home_store: Option<String>,
    /// Last seen in any channel.
    pub last_seen_ms: Option<i64>,
}

/// A wishlist item with what the store knows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WishlistEntry {
    /// 14-digit GTIN.
    pub gtin: String,
    /// When it was added.
    pub added_at_ms: Option<i64>,
    /// Where it was added.
    pub channel: String,
    /// Product name, when the catalogue has it.
    pub name: Option<String>,
    /// Shelf price here.
    pub price_minor: Option<i64>,
    /// Currency of the price.
    pub currency: Option<String>,
    /// Stock and aisle here.
    pub stock: Option<StockView>,
}

/// One line of the online cart, with stock here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CartEntry {
    /// Line number.
    pub line_no: u32,
    /// 14-digit GTIN.
    pub gtin: String,
    /// Units.
    pub qty: u32,
    /// Online unit price.
    pub unit_price_minor: i64,
    /// Product name, when the catalogue has it.
    pub name: Option<String>,
    /// Stock and aisle here.
    pub stock: Option<StockView>,
}

/// The online cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CartView {
    /// Currency of the prices.
    pub currency: String,
    /// Last change online.
    pub updated_at_ms: i64,
    /// Lines in cart order.
    pub lines: Vec<CartEntry>,
}

/// An order line as the screens show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLineView {
    /// Line number.
    pub line_no: u32,
    /// 14-digit GTIN.
    pub gtin: String,
    /// Name as ordered.
    pub name: String,
    /// Units ordered.
    pub qty_ordered: u32,
    /// Units already returned.
    pub qty_returned: u32,
    /// Price per unit.
    pub unit_price_minor: i64,
    /// Final sale.
    pub final_sale: bool,
}

/// An order as the screens show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderView {
    /// Order id.
    pub order_id: String,
    /// `bopis` or `delivered`.
    pub kind: String,
    /// State (snake_case, see `domain::bopis::OrderStatus`).
    pub status: String,
    /// Currency.
    pub currency: String,
    /// Total.
    pub total_minor: i64,
    /// When ordered.
    pub placed_at_ms: i64,
    /// Pickup deadline.
    pub pickup_deadline_ms: Option<i64>,
    /// Lines.
    pub lines: Vec<OrderLineView>,
}

/// Everything the customer panel shows, read in one snapshot of the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerView {
    /// Profile.
    pub profile: CustomerProfile,
    /// Wishlist, newest first, with stock and aisle.
    pub wishlist: Vec<WishlistEntry>,
    /// Online cart, if any.
    pub cart: Option<CartView>,
    /// BOPIS orders waiting for pickup.
    pub open_orders: Vec<OrderView>,
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

fn customer_view_in_tx(conn: &Connection, customer_id: &str) -> Result<Option<CustomerView>, StoreError> {
    let profile = conn
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
        .optional()?;
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
        .prepare_cached(
            "SELECT order_id, kind, status, currency, total_minor, placed_at_ms, pickup_deadline_ms
             FROM orders
             WHERE customer_id = ?1 AND kind = 'bopis' AND status IN ('ready_for_pickup', 'customer_arrived')
             ORDER BY placed_at_ms",
        )?
        .query_map([customer_id], |r| {
            Ok(OrderView {
                order_id: r.get(0)?,
                kind: r.get(1)?,
                status: r.get(2)?,
                currency: r.get(3)?,
                total_minor: r.get(4)?,
                placed_at_ms: r.get(5)?,
                pickup_deadline_ms: r.get(6)?,
                lines: Vec::new(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for order in &mut open_orders {
        order.lines = order_lines(conn, &order.order_id)?;
    }

    Ok(Some(CustomerView {
        profile,
        wishlist,
        cart,
        open_orders,
    }))
}

/// The lines of an order.
pub fn order_lines(conn: &Connection, order_id: &str) -> Result<Vec<OrderLineView>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT line_no, gtin, name, qty_ordered, qty_returned, unit_price_minor, final_sale
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
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}
