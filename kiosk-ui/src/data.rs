//! The data interface the screens are served from. The agent implements it over
//! its local store; the screens never touch SQLite, MQTT or devices themselves.

use crate::model::{
    Associate, CustomerHit, CustomerView, HandOverDone, HandOverRequest, OrderView, ProductView, QueueEntry,
    ReturnCheck, ReturnDone, ReturnEntry, ScreenEvent, ScreenKind, StatusBar,
};
use std::future::Future;
use thiserror::Error;
use tokio::sync::broadcast;

/// Why the data side could not answer. The screens map each case to an HTTP status.
#[derive(Debug, Error)]
pub enum DataError {
    /// The thing asked for is not in the local store (404).
    #[error("{0}")]
    NotFound(String),
    /// The request is understood but not allowed in the current state (409), e.g. a
    /// hand-over of an order whose customer has not arrived.
    #[error("{0}")]
    Refused(String),
    /// The request itself is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// The local store could not answer (503); the message is for the log.
    #[error("{0}")]
    Unavailable(String),
}

/// Whether the agent can serve the screens, for `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    /// All checks passed.
    pub ready: bool,
    /// Per part, its state (e.g. `{"database":"ok","sync":"offline since …"}`).
    pub checks: serde_json::Value,
}

/// An item added to a wishlist from a screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WishlistAdd {
    /// The customer.
    pub customer_id: String,
    /// Any GTIN form.
    pub gtin: String,
    /// `kiosk` or `store` (console).
    pub channel: &'static str,
}

/// Everything the screens read and do, implemented by the agent.
///
/// Methods return `Send` futures so the router can run them on any worker; an
/// implementation must not block (SQLite work belongs on its own threads).
pub trait ScreenData: Send + Sync + 'static {
    /// The status bar.
    fn status(&self) -> impl Future<Output = Result<StatusBar, DataError>> + Send;
    /// The checks behind `/readyz`.
    fn readiness(&self) -> impl Future<Output = Readiness> + Send;
    /// The agent's metrics in the Prometheus text format (the screens add the
    /// HTTP request counters).
    fn metrics(&self) -> impl Future<Output = String> + Send;
    /// Checks an associate's PIN; `None` when the id is unknown, inactive or the
    /// PIN is wrong (the caller does not learn which).
    fn sign_in(
        &self,
        associate_id: &str,
        pin: &str,
    ) -> impl Future<Output = Result<Option<Associate>, DataError>> + Send;
    /// The customer panel.
    fn customer(
        &self,
        customer_id: &str,
    ) -> impl Future<Output = Result<Option<CustomerView>, DataError>> + Send;
    /// Customers whose name starts with or contains `query`, at most `limit`.
    fn search_customers(
        &self,
        query: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<CustomerHit>, DataError>> + Send;
    /// A product by any GTIN form, with stock here.
    fn product(&self, gtin: &str) -> impl Future<Output = Result<Option<ProductView>, DataError>> + Send;
    /// The product's stock in nearby stores, asked of the cloud now (nearest
    /// first); [`DataError::Unavailable`] while offline or when the cloud does not
    /// answer in time.
    fn nearby_stock(
        &self,
        gtin: &str,
    ) -> impl Future<Output = Result<Vec<crate::model::NearbyStoreView>, DataError>> + Send;
    /// BOPIS orders waiting for pickup, arrived customers first.
    fn pickup_queue(&self) -> impl Future<Output = Result<Vec<QueueEntry>, DataError>> + Send;
    /// An order with its lines.
    fn order(&self, order_id: &str) -> impl Future<Output = Result<Option<OrderView>, DataError>> + Send;
    /// Marks the customer of a BOPIS order as arrived at the counter (queued for
    /// the cloud); returns the order as it is now.
    fn mark_arrived(
        &self,
        order_id: &str,
        associate_id: &str,
    ) -> impl Future<Output = Result<OrderView, DataError>> + Send;
    /// Records a BOPIS hand-over (queued for the cloud) and prints the slip when
    /// asked and a printer is configured.
    fn hand_over(
        &self,
        order_id: &str,
        associate_id: &str,
        request: HandOverRequest,
    ) -> impl Future<Output = Result<HandOverDone, DataError>> + Send;
    /// What the return policy (and the offline limit) says about `entry`, without
    /// recording anything.
    fn check_return(
        &self,
        entry: &ReturnEntry,
    ) -> impl Future<Output = Result<ReturnCheck, DataError>> + Send;
    /// Records a return (queued for the cloud) when the check allows it; `Err(check)`
    /// inside `Ok` when it does not, with the reasons.
    fn record_return(
        &self,
        entry: ReturnEntry,
    ) -> impl Future<Output = Result<Result<ReturnDone, ReturnCheck>, DataError>> + Send;
    /// Whether a receipt printer is configured (the screens offer printing).
    fn has_printer(&self) -> bool;
    /// Adds an item to a wishlist (queued for the cloud).
    fn add_to_wishlist(&self, add: WishlistAdd) -> impl Future<Output = Result<(), DataError>> + Send;
    /// Live events for the screens. Each subscriber gets every event from now on.
    fn subscribe(&self) -> broadcast::Receiver<ScreenEvent>;
    /// Injects a scan as if a scanner feeding `screen` had read `data` (the demo's
    /// scan field and `store-agent scan send`). Only called when the options allow it.
    fn inject_scan(
        &self,
        screen: ScreenKind,
        data: &str,
    ) -> impl Future<Output = Result<(), DataError>> + Send;
}
