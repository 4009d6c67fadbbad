//! The data the screens show, as the agent's store reads it.
//!
//! These types are the contract between the agent (which fills them from SQLite)
//! and the screens (which render them and serve them as JSON under `/api/v1/`):
//! the JSON field names are part of the documented API.

use serde::{Deserialize, Serialize};

/// A product's stock in a store near this one (from the cloud, while online).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearbyStoreView {
    /// The store's id.
    pub store_id: String,
    /// Its name.
    pub name: String,
    /// Units available there.
    pub available: i64,
    /// Distance in metres, when the cloud knows.
    pub distance_m: Option<u32>,
}

/// This store's stock of a product, as the screens show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The customer profile the screens show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartView {
    /// Currency of the prices.
    pub currency: String,
    /// Last change online.
    pub updated_at_ms: i64,
    /// Lines in cart order.
    pub lines: Vec<CartEntry>,
}

/// An order line as the screens show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Units the customer refused at a BOPIS hand-over (never received).
    pub qty_refused: u32,
    /// Price per unit.
    pub unit_price_minor: i64,
    /// Final sale.
    pub final_sale: bool,
}

/// An order as the screens show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// When the customer received it (delivery or hand-over), Unix ms; the return
    /// window counts from here.
    pub fulfilled_at_ms: Option<i64>,
    /// Lines.
    pub lines: Vec<OrderLineView>,
}

/// Everything the customer panel shows, read in one snapshot of the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerView {
    /// Profile.
    pub profile: CustomerProfile,
    /// Wishlist, newest first, with stock and aisle.
    pub wishlist: Vec<WishlistEntry>,
    /// Online cart, if any.
    pub cart: Option<CartView>,
    /// BOPIS orders waiting for pickup.
    pub open_orders: Vec<OrderView>,
    /// Online orders the customer received (delivered or picked up), newest
    /// first, at most 10: where a BORIS return starts.
    pub recent_orders: Vec<OrderView>,
    /// Purchases in this store (POS transactions linked to the customer), newest
    /// first, at most 10.
    pub recent_purchases: Vec<PurchaseView>,
}

/// A purchase at this store's tills, as the customer panel lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseView {
    /// The POS transaction id.
    pub tx_id: String,
    /// `sale` or `return`.
    pub kind: String,
    /// When it happened (the till's time, else when it was recorded), Unix ms.
    pub at_ms: i64,
    /// Total, minor units (negative for a return).
    pub total_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Item lines.
    pub items: u32,
}

/// A BOPIS hand-over as the console asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandOverRequest {
    /// Order lines the customer refused (none: everything was taken; all: the
    /// order is refused).
    #[serde(default)]
    pub refused_lines: Vec<u32>,
    /// The associate checked the customer's ID. Required: a hand-over without it
    /// is refused.
    pub id_checked: bool,
    /// Print the pickup slip on the receipt printer.
    #[serde(default)]
    pub print_slip: bool,
}

/// A hand-over that was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandOverDone {
    /// The order as it is now.
    pub order: OrderView,
    /// The slip went to the printer.
    pub printed: bool,
}

/// One order line being returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnLine {
    /// The order line.
    pub line_no: u32,
    /// Units returned.
    pub qty: u32,
}

/// A manager's approval of a return the policy or the offline limit would stop,
/// as the screens checked it: the manager is signed in here, or gave their PIN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerApproval {
    /// The manager who approved.
    pub manager_id: String,
    /// Why, in the manager's words.
    pub reason: String,
}

/// A BORIS return as the console enters it (the approval already verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnEntry {
    /// The online order.
    pub order_id: String,
    /// Lines and quantities.
    pub lines: Vec<ReturnLine>,
    /// Why the customer returns the items (a code from the screen's list).
    pub reason: String,
    /// The condition the associate found (a code from the screen's list).
    pub condition: String,
    /// `restock` or `damaged`.
    pub disposition: String,
    /// How the cloud refunds (a code from the screen's list).
    pub refund_method: String,
    /// The associate taking the return.
    pub associate_id: String,
    /// A manager's approval, when one was given.
    pub approval: Option<ManagerApproval>,
    /// Print the return receipt.
    pub print_receipt: bool,
}

/// One finding of the return check, for the screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnReason {
    /// Machine-readable code (`outside_window`, `final_sale`, `exceeds_remaining`,
    /// `offline_limit`, …).
    pub code: String,
    /// The sentence to show.
    pub text: String,
    /// A manager may approve the return despite it.
    pub overridable: bool,
}

/// What the return policy says about a return, before or when it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnCheck {
    /// The return may be recorded as it stands.
    pub allowed: bool,
    /// What stops it.
    pub blocking: Vec<ReturnReason>,
    /// What a manager's approval lifted (kept for the record).
    pub overridden: Vec<ReturnReason>,
    /// The refund, minor units.
    pub refund_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Everything that blocks can be lifted by a manager's approval.
    pub manager_can_approve: bool,
    /// The store is offline and the refund is above the offline limit.
    pub offline_limit_exceeded: bool,
}

/// A recorded return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnDone {
    /// The return's id (its idempotency key), printed as a barcode on the receipt.
    pub return_id: String,
    /// The refund, minor units.
    pub refund_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The reasons a manager's approval lifted, as sentences.
    pub overridden: Vec<String>,
    /// The receipt went to the printer.
    pub printed: bool,
}

/// The status bar every screen shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StatusBar {
    /// Whether the cloud connection is up.
    pub online: bool,
    /// Since when it is up (or down), Unix ms; `None` before the first attempt.
    pub since_ms: Option<i64>,
    /// When the local copy last received data from the cloud, Unix ms.
    pub data_as_of_ms: Option<i64>,
    /// Events waiting in the outbox.
    pub events_waiting: i64,
    /// Devices configured.
    pub devices_total: u32,
    /// Devices connected now.
    pub devices_connected: u32,
}

/// A staff member's role on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    /// A store associate.
    Associate,
    /// A manager: can override a return policy refusal.
    Manager,
}

/// A signed-in associate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Associate {
    /// Associate id (the sign-in name).
    pub associate_id: String,
    /// Name shown in the header.
    pub name: String,
    /// Role.
    pub role: StaffRole,
}

/// A customer found by search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerHit {
    /// Cloud customer id.
    pub customer_id: String,
    /// Greeting name.
    pub display_name: String,
    /// Loyalty tier.
    pub tier: Option<String>,
    /// Points balance.
    pub points: i64,
}

/// A BOPIS order in the pickup queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// Order id.
    pub order_id: String,
    /// The customer's greeting name, when the order has a known customer.
    pub customer_name: Option<String>,
    /// `ready_for_pickup` or `customer_arrived`.
    pub status: String,
    /// When ordered, Unix ms.
    pub placed_at_ms: i64,
    /// Pickup deadline, Unix ms.
    pub pickup_deadline_ms: Option<i64>,
    /// The deadline has passed.
    pub overdue: bool,
    /// Order lines.
    pub lines: u32,
}

/// What the kiosk shows of the customer who identified there: no e-mail, phone,
/// address or full last name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KioskCustomer {
    /// First name and last initial ("Maria S.").
    pub greeting: String,
    /// Loyalty tier.
    pub tier: Option<String>,
    /// Points balance.
    pub points: i64,
    /// Wishlist with stock and aisle here.
    pub wishlist: Vec<WishlistEntry>,
    /// Online cart with stock and aisle here.
    pub cart: Option<CartView>,
}

impl KioskCustomer {
    /// The kiosk's masked view of a customer.
    pub fn from_view(view: &CustomerView) -> KioskCustomer {
        KioskCustomer {
            greeting: masked_name(&view.profile),
            tier: view.profile.tier.clone(),
            points: view.profile.points,
            wishlist: view.wishlist.clone(),
            cart: view.cart.clone(),
        }
    }
}

/// "First L." from a profile: the first name (or the first word of the display
/// name) and the initial of the last name.
pub fn masked_name(p: &CustomerProfile) -> String {
    let first = p
        .first_name
        .clone()
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| p.display_name.split_whitespace().next().unwrap_or("").to_string());
    match p.last_name.as_deref().and_then(|l| l.trim().chars().next()) {
        Some(initial) => format!("{} {}.", first.trim(), initial.to_uppercase()),
        None => first.trim().to_string(),
    }
}

/// Which screen a scanner feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScreenKind {
    /// The associate console at the counter.
    Console,
    /// The customer kiosk.
    Kiosk,
}

/// A scan, resolved against the local store before it is pushed to the screens,
/// so the push carries what the screen shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScanResult {
    /// A loyalty card of a customer in the local store.
    Customer {
        /// The customer panel.
        customer: Box<CustomerView>,
    },
    /// A loyalty card no customer here has.
    UnknownCard,
    /// A product code.
    Product {
        /// The GTIN on 14 digits.
        gtin: String,
        /// The product, when the catalogue has it.
        product: Option<ProductView>,
    },
    /// A BOPIS pickup code or receipt code.
    Order {
        /// The order, when the local store has it.
        order: Option<OrderView>,
    },
    /// A pickup code scanned at the kiosk: the customer was checked in.
    CheckedIn {
        /// The order.
        order_id: String,
        /// The customer's masked name.
        greeting: Option<String>,
    },
    /// A pickup code scanned at the kiosk that could not be checked in.
    CheckInRefused {
        /// Why, for the shopper.
        reason: String,
    },
    /// A payment card: its data was dropped.
    PaymentCardRejected,
    /// Not a code this store knows, or invalid.
    Unreadable {
        /// Why.
        message: String,
    },
}

/// What the agent pushes to the screens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ScreenEvent {
    /// A scan at a device that feeds `screen`.
    Scan {
        /// Which screens show it.
        screen: ScreenKind,
        /// The device.
        device_id: String,
        /// What was scanned.
        result: Box<ScanResult>,
    },
    /// A customer checked in for a pickup (at a kiosk or the counter).
    CustomerArrived {
        /// The order.
        order_id: String,
        /// The customer's greeting name.
        customer_name: Option<String>,
    },
    /// The pickup queue changed (an order arrived, was handed over, expired).
    OrdersChanged,
    /// The status bar changed.
    Status {
        /// The new status.
        status: StatusBar,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(first: Option<&str>, last: Option<&str>, display: &str) -> CustomerProfile {
        CustomerProfile {
            customer_id: "c".into(),
            display_name: display.into(),
            first_name: first.map(Into::into),
            last_name: last.map(Into::into),
            tier: None,
            points: 0,
            preferences_json: "{}".into(),
            consent_json: "{}".into(),
            home_store: None,
            last_seen_ms: None,
        }
    }

    #[test]
    fn masked_name_keeps_first_name_and_last_initial_only() {
        assert_eq!(
            masked_name(&profile(Some("Maria"), Some("schmidt"), "Maria Schmidt")),
            "Maria S."
        );
        assert_eq!(masked_name(&profile(None, Some("Lee"), "Ann Lee")), "Ann L.");
        assert_eq!(masked_name(&profile(Some("Bo"), None, "Bo Jones")), "Bo");
        assert_eq!(
            masked_name(&profile(Some("Élodie"), Some("Ångström"), "x")),
            "Élodie Å."
        );
    }
}
