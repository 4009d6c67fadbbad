//! The entities the cloud sends the store — products, stock, customers, loyalty
//! cards, wishlist items, carts, orders and associates — and how each is written.
//!
//! The same types are the records of a snapshot file and (with the sync) the
//! bodies of downlink messages, so there is one validation and one insert path
//! per entity. Validation errors name the field; the caller adds where the record
//! came from (file and line, topic).

use super::StoreError;
use crate::domain::bopis::OrderStatus;
use crate::domain::money::Currency;
use rusqlite::{Connection, Statement, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A product of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductRecord {
    /// Any GTIN form (8, 12, 13 or 14 digits); stored as 14 digits.
    pub gtin: String,
    /// The retailer's article number.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Brand, when the catalogue has one.
    #[serde(default)]
    pub brand: Option<String>,
    /// Shelf price in minor units of `currency`.
    pub price_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Department for grouping on screens.
    #[serde(default)]
    pub department: Option<String>,
    /// Free-form attributes (colour, size, …) shown on the product panel.
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

/// This store's stock of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockRecord {
    /// The product, any GTIN form.
    pub gtin: String,
    /// Units on hand in the store.
    pub on_hand: i64,
    /// Units set aside for BOPIS orders.
    #[serde(default)]
    pub reserved_bopis: i64,
    /// Aisle shown to associates and shoppers.
    #[serde(default)]
    pub aisle: Option<String>,
    /// Bin or shelf within the aisle.
    #[serde(default)]
    pub bin: Option<String>,
    /// When the cloud last counted it.
    pub updated_at_ms: i64,
}

/// A customer profile, reduced to what the screens need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerRecord {
    /// The cloud's customer id.
    pub customer_id: String,
    /// How the screens greet the customer.
    pub display_name: String,
    /// First name (the kiosk shows it with the last initial only).
    #[serde(default)]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// Loyalty tier, e.g. "gold".
    #[serde(default)]
    pub tier: Option<String>,
    /// Loyalty points balance.
    #[serde(default)]
    pub points: i64,
    /// Shopping preferences (sizes, favourite brands).
    #[serde(default)]
    pub preferences: Map<String, Value>,
    /// Consent flags, e.g. `{"marketing_email": false}`.
    #[serde(default)]
    pub consent: Map<String, Value>,
    /// The store the customer shops at most.
    #[serde(default)]
    pub home_store: Option<String>,
    /// When the customer was last seen in any channel.
    #[serde(default)]
    pub last_seen_ms: Option<i64>,
    /// Keyed hash (hex) of the e-mail address, trimmed and lower-cased, for the
    /// console's search; the address itself never reaches the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_hash: Option<String>,
    /// Keyed hash (hex) of the phone number's digits (E.164 without `+`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_hash: Option<String>,
    /// The phone number's last four digits, for "search by phone last 4".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_last4: Option<String>,
}

/// A loyalty card, as its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoyaltyCardRecord {
    /// 64 hex digits: HMAC-SHA256 of the card number with the tenant key.
    pub card_hash: String,
    /// Whose card it is.
    pub customer_id: String,
    /// `active` or `blocked`; a blocked card identifies nobody.
    #[serde(default = "active")]
    pub status: String,
}

fn active() -> String {
    "active".into()
}

/// One wishlist item's register state (see `domain::wishlist`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WishlistItemRecord {
    /// Whose wishlist.
    pub customer_id: String,
    /// The item, any GTIN form.
    pub gtin: String,
    /// False for the tombstone of a removal.
    #[serde(default = "yes")]
    pub present: bool,
    /// When the item was added (absent for a tombstone).
    #[serde(default)]
    pub added_at_ms: Option<i64>,
    /// Where it was last edited: "web", "app", "store".
    pub channel: String,
    /// Time of the operation that produced this state.
    pub op_at_ms: i64,
    /// Id of that operation (the tie-break of the merge rule).
    pub op_id: String,
}

fn yes() -> bool {
    true
}

/// A customer's online cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartRecord {
    /// Whose cart.
    pub customer_id: String,
    /// Currency of the line prices.
    pub currency: String,
    /// Last change online.
    pub updated_at_ms: i64,
    /// The lines.
    pub lines: Vec<CartLineRecord>,
}

/// One line of an online cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartLineRecord {
    /// Position in the cart.
    pub line_no: u32,
    /// The item, any GTIN form.
    pub gtin: String,
    /// Units.
    pub qty: u32,
    /// Price per unit online, minor units.
    pub unit_price_minor: i64,
}

/// An online order cached for pickup (BOPIS) or returns (BORIS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRecord {
    /// The cloud's order id.
    pub order_id: String,
    /// The customer, when the order is tied to one.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// `bopis` or `delivered`.
    pub kind: String,
    /// Pickup state (BOPIS) — delivered orders carry `handed_over`.
    pub status: OrderStatus,
    /// Currency of all amounts.
    pub currency: String,
    /// Order total, minor units.
    pub total_minor: i64,
    /// When the customer ordered.
    pub placed_at_ms: i64,
    /// 64 hex digits: keyed hash of the pickup code in the order e-mail's QR.
    #[serde(default)]
    pub pickup_code_hash: Option<String>,
    /// When an uncollected BOPIS order expires.
    #[serde(default)]
    pub pickup_deadline_ms: Option<i64>,
    /// When the order was delivered or picked up; the return window starts here.
    #[serde(default)]
    pub fulfilled_at_ms: Option<i64>,
    /// The lines.
    pub lines: Vec<OrderLineRecord>,
}

/// One line of an online order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRecord {
    /// Line number within the order.
    pub line_no: u32,
    /// The item, any GTIN form.
    pub gtin: String,
    /// Name as ordered (the catalogue may have changed since).
    pub name: String,
    /// Units ordered.
    pub qty_ordered: u32,
    /// Units already returned (in any store or by post).
    #[serde(default)]
    pub qty_returned: u32,
    /// Price paid per unit, minor units.
    pub unit_price_minor: i64,
    /// Final-sale items cannot be returned without a manager override.
    #[serde(default)]
    pub final_sale: bool,
}

/// A store associate who can sign in to the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssociateRecord {
    /// Staff id.
    pub associate_id: String,
    /// Name shown on the console.
    pub name: String,
    /// `associate`, `manager` (may override return refusals) or `admin`.
    pub role: String,
    /// Argon2 PHC string of the PIN.
    pub pin_hash: String,
    /// Inactive associates cannot sign in.
    #[serde(default = "yes")]
    pub active: bool,
}

/// A setting the cloud pushes on the `config` stream, stored in `cloud_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigEntry {
    /// The setting's name.
    pub key: String,
    /// Its value (absent in a delete).
    #[serde(default)]
    pub value: Value,
}

/// A JSON object as text for a TEXT column.
fn json_text(map: &Map<String, Value>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
}

/// A GTIN in any valid form, as its 14 digits.
pub(crate) fn gtin14(field: &str, gtin: &str) -> Result<String, StoreError> {
    firmware_interfaces::gtin::to_gtin14(gtin)
        .map_err(|e| StoreError::invalid(field, format!("{gtin:?}: {e}")))
}

fn currency(field: &str, code: &str) -> Result<(), StoreError> {
    Currency::new(code)
        .map(|_| ())
        .map_err(|e| StoreError::invalid(field, e.to_string()))
}

/// Decodes a 32-byte hash written as 64 hex digits (either case). A snapshot
/// holds about four per customer, so this is a table lookup per digit rather
/// than `hex`'s general decoder (which was a tenth of the parser thread's time).
fn hash32(field: &str, hex_text: &str) -> Result<[u8; 32], StoreError> {
    let digits = hex_text.as_bytes();
    let bad = |why: String| StoreError::invalid(field, format!("expected 64 hex digits: {why}"));
    if digits.len() != 64 {
        return Err(bad(format!("found {} characters", hex_text.chars().count())));
    }
    let mut out = [0u8; 32];
    for (i, (pair, byte)) in digits.chunks_exact(2).zip(out.iter_mut()).enumerate() {
        let (hi, lo) = (HEX_VALUE[usize::from(pair[0])], HEX_VALUE[usize::from(pair[1])]);
        if hi | lo > 0x0f {
            let at = if hi > 0x0f { 2 * i } else { 2 * i + 1 };
            let c = hex_text
                .char_indices()
                .take_while(|&(start, _)| start <= at)
                .last()
                .map_or('?', |(_, c)| c);
            return Err(bad(format!("{c:?} at index {at} is not a hex digit")));
        }
        *byte = (hi << 4) | lo;
    }
    Ok(out)
}

/// The value of each byte as a hex digit, 0xff for the others.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

fn non_empty(field: &str, value: &str) -> Result<(), StoreError> {
    if value.trim().is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    Ok(())
}

fn non_negative(field: &str, value: i64) -> Result<(), StoreError> {
    if value < 0 {
        return Err(StoreError::invalid(
            field,
            format!("must not be negative (found {value})"),
        ));
    }
    Ok(())
}

/// The SQL that writes each entity. `INSERT OR REPLACE` semantics: the cloud's
/// copy is the truth for cached entities. Public so the import benchmark's bare
/// baseline runs exactly the same statements.
pub mod sql {
    pub const PRODUCT: &str = "INSERT OR REPLACE INTO products
        (gtin, sku, name, brand, price_minor, currency, department, attributes)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    pub const STOCK: &str = "INSERT OR REPLACE INTO stock
        (gtin, on_hand, reserved_bopis, aisle, bin, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    pub const CUSTOMER: &str = "INSERT OR REPLACE INTO customers
        (customer_id, display_name, first_name, last_name, tier, points, preferences, consent, home_store, last_seen_ms,
         email_hash, phone_hash, phone_last4)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
    pub const CARD: &str =
        "INSERT OR REPLACE INTO loyalty_cards (card_hash, customer_id, status) VALUES (?1, ?2, ?3)";
    pub const WISHLIST_ITEM: &str = "INSERT OR REPLACE INTO wishlist_items
        (customer_id, gtin, present, added_at_ms, channel, op_at_ms, op_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    pub const CART: &str =
        "INSERT OR REPLACE INTO carts (customer_id, currency, updated_at_ms) VALUES (?1, ?2, ?3)";
    pub const CART_LINE: &str = "INSERT INTO cart_lines
        (customer_id, line_no, gtin, qty, unit_price_minor) VALUES (?1, ?2, ?3, ?4, ?5)";
    pub const ORDER: &str = "INSERT OR REPLACE INTO orders
        (order_id, customer_id, kind, status, currency, total_minor, placed_at_ms, pickup_code_hash,
         pickup_deadline_ms, fulfilled_at_ms, updated_at_ms)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
    pub const ORDER_LINE: &str = "INSERT INTO order_lines
        (order_id, line_no, gtin, name, qty_ordered, qty_returned, qty_refused, unit_price_minor, final_sale)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)";
    pub const CONFIG: &str =
        "INSERT OR REPLACE INTO cloud_config (key, value, updated_at_ms) VALUES (?1, ?2, ?3)";
    pub const ASSOCIATE: &str = "INSERT OR REPLACE INTO associates
        (associate_id, name, role, pin_hash, active) VALUES (?1, ?2, ?3, ?4, ?5)";
}

/// Validates and writes one entity inside `tx`. `now_ms` stamps rows that record
/// when the store received them.
pub(crate) trait Entity {
    /// Writes the entity (replacing an earlier copy) after checking it.
    fn write(&self, tx: &Transaction<'_>, now_ms: i64) -> Result<(), StoreError>;
}

impl Entity for ProductRecord {
    fn write(&self, tx: &Transaction<'_>, _now_ms: i64) -> Result<(), StoreError> {
        let gtin = gtin14("product.gtin", &self.gtin)?;
        non_empty("product.name", &self.name)?;
        non_negative("product.price_minor", self.price_minor)?;
        currency("product.currency", &self.currency)?;
        let attributes = json_text(&self.attributes);
        tx.prepare_cached(sql::PRODUCT)?.execute(params![
            gtin,
            self.sku,
            self.name,
            self.brand,
            self.price_minor,
            self.currency,
            self.department,
            attributes
        ])?;
        Ok(())
    }
}

impl Entity for StockRecord {
    fn write(&self, tx: &Transaction<'_>, _now_ms: i64) -> Result<(), StoreError> {
        let gtin = gtin14("stock.gtin", &self.gtin)?;
        non_negative("stock.reserved_bopis", self.reserved_bopis)?;
        tx.prepare_cached(sql::STOCK)?.execute(params![
            gtin,
            self.on_hand,
            self.reserved_bopis,
            self.aisle,
            self.bin,
            self.updated_at_ms
        ])?;
        Ok(())
    }
}

impl Entity for CustomerRecord {
    fn write(&self, tx: &Transaction<'_>, _now_ms: i64) -> Result<(), StoreError> {
        write_customer(tx, self)
    }
}

fn write_customer(conn: &Connection, c: &CustomerRecord) -> Result<(), StoreError> {
    Prepared::customer(c.clone())?.insert(conn)
}

/// A checked entity with its column values computed, for the three entities a
/// big snapshot is mostly made of. The snapshot parser prepares them on its own
/// thread, so the writer thread (the import's bottleneck) only binds and inserts.
pub(crate) enum Prepared {
    /// A customer with its JSON columns as text.
    Customer {
        c: CustomerRecord,
        preferences: String,
        consent: String,
        email_hash: Option<Box<[u8; 32]>>,
        phone_hash: Option<Box<[u8; 32]>>,
    },
    /// A loyalty card with its hash decoded.
    Card {
        hash: [u8; 32],
        customer_id: String,
        status: &'static str,
    },
    /// A wishlist item with its GTIN as 14 digits.
    Wish { w: WishlistItemRecord, gtin: String },
}

impl Prepared {
    pub(crate) fn customer(c: CustomerRecord) -> Result<Prepared, StoreError> {
        non_empty("customer.customer_id", &c.customer_id)?;
        non_empty("customer.display_name", &c.display_name)?;
        let preferences = json_text(&c.preferences);
        let consent = json_text(&c.consent);
        let email_hash = c
            .email_hash
            .as_deref()
            .map(|h| hash32("customer.email_hash", h).map(Box::new))
            .transpose()?;
        let phone_hash = c
            .phone_hash
            .as_deref()
            .map(|h| hash32("customer.phone_hash", h).map(Box::new))
            .transpose()?;
        if let Some(last4) = &c.phone_last4
            && (last4.len() != 4 || !last4.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(StoreError::invalid(
                "customer.phone_last4",
                format!("expected 4 digits, found {last4:?}"),
            ));
        }
        Ok(Prepared::Customer {
            c,
            preferences,
            consent,
            email_hash,
            phone_hash,
        })
    }

    pub(crate) fn card(r: LoyaltyCardRecord) -> Result<Prepared, StoreError> {
        let hash = hash32("loyalty_card.card_hash", &r.card_hash)?;
        non_empty("loyalty_card.customer_id", &r.customer_id)?;
        let status = match r.status.as_str() {
            "active" => "active",
            "blocked" => "blocked",
            other => {
                return Err(StoreError::invalid(
                    "loyalty_card.status",
                    format!("expected active or blocked, found {other:?}"),
                ));
            }
        };
        Ok(Prepared::Card {
            hash,
            customer_id: r.customer_id,
            status,
        })
    }

    pub(crate) fn wish(w: WishlistItemRecord) -> Result<Prepared, StoreError> {
        let gtin = gtin14("wishlist_item.gtin", &w.gtin)?;
        non_empty("wishlist_item.customer_id", &w.customer_id)?;
        non_empty("wishlist_item.op_id", &w.op_id)?;
        Ok(Prepared::Wish { w, gtin })
    }

    /// Writes the row (replacing an earlier copy).
    pub(crate) fn insert(&self, conn: &Connection) -> Result<(), StoreError> {
        let mut stmt = conn.prepare_cached(self.sql())?;
        self.run(&mut stmt)
    }

    /// Which statement writes it, as an index into [`BulkInsert`]'s.
    fn slot(&self) -> usize {
        match self {
            Prepared::Customer { .. } => 0,
            Prepared::Card { .. } => 1,
            Prepared::Wish { .. } => 2,
        }
    }

    fn sql(&self) -> &'static str {
        match self {
            Prepared::Customer { .. } => sql::CUSTOMER,
            Prepared::Card { .. } => sql::CARD,
            Prepared::Wish { .. } => sql::WISHLIST_ITEM,
        }
    }

    /// Binds the row to `stmt` (the statement of [`Prepared::sql`]) and runs it.
    fn run(&self, stmt: &mut Statement<'_>) -> Result<(), StoreError> {
        match self {
            Prepared::Customer {
                c,
                preferences,
                consent,
                email_hash,
                phone_hash,
            } => stmt.execute(params![
                c.customer_id,
                c.display_name,
                c.first_name,
                c.last_name,
                c.tier,
                c.points,
                preferences,
                consent,
                c.home_store,
                c.last_seen_ms,
                email_hash.as_deref().map(|h| &h[..]),
                phone_hash.as_deref().map(|h| &h[..]),
                c.phone_last4
            ])?,
            Prepared::Card {
                hash,
                customer_id,
                status,
            } => stmt.execute(params![&hash[..], customer_id, *status])?,
            Prepared::Wish { w, gtin } => stmt.execute(params![
                w.customer_id,
                gtin,
                w.present,
                w.added_at_ms,
                w.channel,
                w.op_at_ms,
                w.op_id
            ])?,
        };
        Ok(())
    }
}

/// The statements of a bulk load, prepared once and held for all its rows: a
/// snapshot writes millions of customers, cards and wishlist items, and looking
/// each statement up in the connection's cache (hashing its SQL) and handing it
/// back cost a few percent of the writer thread, the load's bottleneck.
pub(crate) struct BulkInsert<'c> {
    conn: &'c Connection,
    statements: [Option<Statement<'c>>; 3],
}

impl<'c> BulkInsert<'c> {
    /// Statements are prepared on first use.
    pub(crate) fn new(conn: &'c Connection) -> BulkInsert<'c> {
        BulkInsert {
            conn,
            statements: [None, None, None],
        }
    }

    /// Writes `row` (replacing an earlier copy), as [`Prepared::insert`].
    pub(crate) fn insert(&mut self, row: &Prepared) -> Result<(), StoreError> {
        let stmt = match &mut self.statements[row.slot()] {
            Some(stmt) => stmt,
            empty => empty.insert(self.conn.prepare(row.sql())?),
        };
        row.run(stmt)
    }
}

impl Entity for LoyaltyCardRecord {
    fn write(&self, tx: &Transaction<'_>, _now_ms: i64) -> Result<(), StoreError> {
        Prepared::card(self.clone())?.insert(tx)
    }
}

impl Entity for WishlistItemRecord {
    fn write(&self, tx: &Transaction<'_>, _now_ms: i64) -> Result<(), StoreError> {
        Prepared::wish(self.clone())?.insert(tx)
    }
}

impl Entity for CartRecord {
    fn write(&self, tx: &Transaction<'_>, _now_ms: i64) -> Result<(), StoreError> {
        non_empty("cart.customer_id", &self.customer_id)?;
        currency("cart.currency", &self.currency)?;
        tx.prepare_cached("DELETE FROM cart_lines WHERE customer_id = ?1")?
            .execute([&self.customer_id])?;
        tx.prepare_cached(sql::CART)?.execute(params![
            self.customer_id,
            self.currency,
            self.updated_at_ms
        ])?;
        let mut line = tx.prepare_cached(sql::CART_LINE)?;
        for l in &self.lines {
            let gtin = gtin14("cart.lines.gtin", &l.gtin)?;
            if l.qty == 0 {
                return Err(StoreError::invalid("cart.lines.qty", "must be at least 1"));
            }
            line.execute(params![
                self.customer_id,
                l.line_no,
                gtin,
                l.qty,
                l.unit_price_minor
            ])?;
        }
        Ok(())
    }
}

impl Entity for OrderRecord {
    fn write(&self, tx: &Transaction<'_>, now_ms: i64) -> Result<(), StoreError> {
        non_empty("order.order_id", &self.order_id)?;
        if !matches!(self.kind.as_str(), "bopis" | "delivered") {
            return Err(StoreError::invalid(
                "order.kind",
                format!("expected bopis or delivered, found {:?}", self.kind),
            ));
        }
        currency("order.currency", &self.currency)?;
        if self.lines.is_empty() {
            return Err(StoreError::invalid(
                "order.lines",
                "an order has at least one line",
            ));
        }
        let code_hash = self
            .pickup_code_hash
            .as_deref()
            .map(|h| hash32("order.pickup_code_hash", h))
            .transpose()?;
        tx.prepare_cached("DELETE FROM order_lines WHERE order_id = ?1")?
            .execute([&self.order_id])?;
        tx.prepare_cached(sql::ORDER)?.execute(params![
            self.order_id,
            self.customer_id,
            self.kind,
            self.status.as_str(),
            self.currency,
            self.total_minor,
            self.placed_at_ms,
            code_hash.as_ref().map(|h| &h[..]),
            self.pickup_deadline_ms,
            self.fulfilled_at_ms,
            now_ms
        ])?;
        let mut line = tx.prepare_cached(sql::ORDER_LINE)?;
        for l in &self.lines {
            let gtin = gtin14("order.lines.gtin", &l.gtin)?;
            if l.qty_ordered == 0 || l.qty_returned > l.qty_ordered {
                return Err(StoreError::invalid(
                    "order.lines",
                    format!(
                        "line {}: qty_ordered must be at least 1 and qty_returned at most qty_ordered",
                        l.line_no
                    ),
                ));
            }
            line.execute(params![
                self.order_id,
                l.line_no,
                gtin,
                l.name,
                l.qty_ordered,
                l.qty_returned,
                l.unit_price_minor,
                l.final_sale
            ])?;
        }
        Ok(())
    }
}

impl Entity for ConfigEntry {
    fn write(&self, tx: &Transaction<'_>, now_ms: i64) -> Result<(), StoreError> {
        non_empty("config.key", &self.key)?;
        let value = serde_json::to_string(&self.value).unwrap_or_else(|_| "null".into());
        tx.prepare_cached(sql::CONFIG)?
            .execute(params![self.key, value, now_ms])?;
        Ok(())
    }
}

impl Entity for AssociateRecord {
    fn write(&self, tx: &Transaction<'_>, _now_ms: i64) -> Result<(), StoreError> {
        non_empty("associate.associate_id", &self.associate_id)?;
        if !matches!(self.role.as_str(), "associate" | "manager" | "admin") {
            return Err(StoreError::invalid(
                "associate.role",
                format!("expected associate, manager or admin, found {:?}", self.role),
            ));
        }
        argon2::PasswordHash::new(&self.pin_hash)
            .map_err(|e| StoreError::invalid("associate.pin_hash", format!("not a PHC string: {e}")))?;
        tx.prepare_cached(sql::ASSOCIATE)?.execute(params![
            self.associate_id,
            self.name,
            self.role,
            self.pin_hash,
            self.active
        ])?;
        Ok(())
    }
}

/// Writes a customer profile outside a snapshot.
pub(crate) fn upsert_customer(conn: &mut Connection, c: &CustomerRecord) -> Result<(), StoreError> {
    write_customer(conn, c)
}

/// Links a card hash to a customer outside a snapshot.
pub(crate) fn link_card_hash(
    conn: &mut Connection,
    hash: &[u8; 32],
    customer_id: &str,
) -> Result<(), StoreError> {
    non_empty("loyalty_card.customer_id", customer_id)?;
    conn.prepare_cached(super::entities::sql::CARD)?
        .execute(params![&hash[..], customer_id, "active"])?;
    Ok(())
}

/// Hashes an associate's PIN as an Argon2id PHC string with the given salt
/// (at least 8 bytes). The cloud does this when it provisions associates; the
/// sample-data generator does it with seeded salts so its output is reproducible.
pub fn hash_pin(pin: &str, salt: &[u8]) -> Result<String, StoreError> {
    use argon2::PasswordHasher;
    argon2::Argon2::default()
        .hash_password_with_salt(pin.as_bytes(), salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::invalid("associate.pin", format!("cannot hash: {e}")))
}

/// True when `pin` matches the stored PHC string.
pub fn verify_pin(pin_hash: &str, pin: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::PasswordHash::new(pin_hash)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(pin.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::hash32;
    use proptest::prelude::*;

    proptest! {
        /// The table decoder agrees with the `hex` crate on every hash, in either case.
        #[test]
        fn hash32_decodes_what_hex_decodes(bytes in proptest::array::uniform32(any::<u8>()), upper in any::<bool>()) {
            let text = if upper { hex::encode_upper(bytes) } else { hex::encode(bytes) };
            prop_assert_eq!(hash32("f", &text).unwrap(), bytes);
        }

        /// Any text that is not 64 hex digits is refused with the field's name, and
        /// never panics (multi-byte characters included).
        #[test]
        fn hash32_refuses_what_hex_refuses(text in "\\PC{0,70}") {
            let mut out = [0u8; 32];
            let expected_ok = hex::decode_to_slice(&text, &mut out).is_ok();
            match hash32("loyalty_card.card_hash", &text) {
                Ok(got) => {
                    prop_assert!(expected_ok);
                    prop_assert_eq!(got, out);
                }
                Err(e) => {
                    prop_assert!(!expected_ok);
                    prop_assert!(e.to_string().contains("loyalty_card.card_hash"), "{}", e);
                }
            }
        }
    }

    #[test]
    fn hash32_names_the_bad_digit() {
        let mut text = "ab".repeat(32);
        text.replace_range(40..41, "g");
        let err = hash32("customer.email_hash", &text).unwrap_err().to_string();
        assert!(err.contains("'g' at index 40"), "{err}");
        // A multi-byte character: its second byte is where the pair goes wrong.
        let text = format!("a{}{}", 'é', "0".repeat(61));
        assert_eq!(text.len(), 64);
        let err = hash32("f", &text).unwrap_err().to_string();
        assert!(err.contains("'é' at index 1"), "{err}");
        let err = hash32("f", "abc").unwrap_err().to_string();
        assert!(err.contains("found 3 characters"), "{err}");
    }
}
