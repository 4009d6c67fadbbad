//! The agent's side of the screens: it implements `kiosk_ui::ScreenData` over the
//! local store, turns device events into screen events (a scan arrives at the
//! screen with the data it shows already read), performs kiosk check-ins, and
//! tells the screens when the status bar or the pickup queue changed.
//!
//! Which screen a scan goes to: scanners and card readers listed in
//! `screens.kiosk_devices` feed the kiosk; every other device feeds the console.
//! Injected scans (demo mode, `screens.scan_injection`) come from the virtual
//! devices [`INJECT_CONSOLE`] and [`INJECT_KIOSK`].

use crate::counter::{Counter, CounterOptions};
use crate::devices::AgentEvent;
use crate::domain::bopis::OrderEvent;
use crate::events::{Captured, now_ms};
use crate::store::records::{OrderUpdate, WishlistEdit};
use crate::store::{Store, StoreError, entities, queries};
use firmware_interfaces::scan::{Scan, ScanKind};
use kiosk_ui::model::{
    Associate, CustomerHit, CustomerView, HandOverDone, HandOverRequest, OrderView, ProductView, QueueEntry,
    ReturnCheck, ReturnDone, ReturnEntry, ScanResult, ScreenEvent, ScreenKind, StaffRole, StatusBar,
    masked_name,
};
use kiosk_ui::{DataError, Readiness, ScreenData, WishlistAdd};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// The virtual device of scans injected for the console.
pub const INJECT_CONSOLE: &str = "inject-console";
/// The virtual device of scans injected for the kiosk.
pub const INJECT_KIOSK: &str = "inject-kiosk";

/// How often the status bar and the pickup queue are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// A scan injected over HTTP: `(virtual device id, data)`.
pub type Injected = (String, String);

/// The data behind the screens.
pub struct AgentScreens {
    store: Arc<Store>,
    events: broadcast::Sender<ScreenEvent>,
    inject: Option<mpsc::Sender<Injected>>,
    counter: Counter,
    nearby: Option<mpsc::Sender<crate::sync::engine::NearbyLookup>>,
}

/// How long the console waits for the cloud's nearby-stock answer.
const NEARBY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

impl AgentScreens {
    /// Screens over `store`, pushing `events`; `inject` is where injected scans go
    /// (`None`: injection is off); `counter` says how hand-overs and returns print
    /// and what the offline refund limit is.
    pub fn new(
        store: Arc<Store>,
        events: broadcast::Sender<ScreenEvent>,
        inject: Option<mpsc::Sender<Injected>>,
        counter: CounterOptions,
    ) -> AgentScreens {
        AgentScreens {
            counter: Counter::new(store.clone(), counter),
            store,
            events,
            inject,
            nearby: None,
        }
    }

    /// Nearby-stock look-ups go to the cloud sync through `lookups`.
    pub fn with_nearby(mut self, lookups: mpsc::Sender<crate::sync::engine::NearbyLookup>) -> AgentScreens {
        self.nearby = Some(lookups);
        self
    }

    /// Runs a query on the read pool, with the store's errors as the screens' errors.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, DataError> {
        self.store.reads().read(f).await.map_err(data_error)
    }
}

/// The store's errors as the screens' errors.
pub(crate) fn data_error(e: StoreError) -> DataError {
    match e {
        StoreError::NotFound { .. } => DataError::NotFound(e.to_string()),
        StoreError::Invalid { .. } => DataError::Invalid(e.to_string()),
        StoreError::Transition(_) | StoreError::ReturnRefused(_) => DataError::Refused(e.to_string()),
        other => DataError::Unavailable(other.to_string()),
    }
}

impl ScreenData for AgentScreens {
    async fn status(&self) -> Result<StatusBar, DataError> {
        self.read(queries::status_bar).await
    }

    async fn readiness(&self) -> Readiness {
        let store = self.store.clone();
        let storage = tokio::task::spawn_blocking(move || store.storage()).await.ok();
        match self.store.reads().read(crate::store::status::live).await {
            Ok(report) => Readiness {
                // Not ready while new POS input would be refused for lack of space.
                ready: !storage.as_ref().is_some_and(|s| s.is_full()),
                checks: serde_json::json!({
                    "database": "ok",
                    "schema_version": report.schema_version,
                    "storage": storage,
                    "devices": report.devices,
                    "sync": report.sync,
                    "outbox": report.outbox,
                }),
            },
            Err(e) => Readiness {
                ready: false,
                checks: serde_json::json!({ "database": e.to_string() }),
            },
        }
    }

    async fn metrics(&self) -> String {
        match self.store.reads().read(crate::store::status::live).await {
            Ok(live) => crate::metrics::render(&live, now_ms()),
            Err(e) => format!("# the local store could not be read: {e}\nstore_agent_up 1\n"),
        }
    }

    async fn sign_in(&self, associate_id: &str, pin: &str) -> Result<Option<Associate>, DataError> {
        let id = associate_id.to_string();
        let pin = pin.to_string();
        let found = self.read(move |c| queries::associate_for_sign_in(c, &id)).await?;
        let id = associate_id.to_string();
        // Argon2 takes tens of milliseconds of CPU: off the async workers.
        tokio::task::spawn_blocking(move || {
            // Unknown ids are hashed against a fixed hash too, so the answer takes
            // as long as for a known id with a wrong PIN.
            let (name, role, hash) =
                found.unwrap_or_else(|| (String::new(), String::new(), dummy_hash().to_string()));
            let ok = entities::verify_pin(&hash, &pin) && !name.is_empty();
            ok.then(|| Associate {
                associate_id: id,
                name,
                role: if role == "associate" {
                    StaffRole::Associate
                } else {
                    StaffRole::Manager
                },
            })
        })
        .await
        .map_err(|e| DataError::Unavailable(format!("the PIN check failed: {e}")))
    }

    async fn customer(&self, customer_id: &str) -> Result<Option<CustomerView>, DataError> {
        let id = customer_id.to_string();
        self.read(move |c| queries::customer_view(c, &id)).await
    }

    async fn search_customers(&self, query: &str, limit: u32) -> Result<Vec<CustomerHit>, DataError> {
        let q = queries::CustomerQuery::parse(self.store.hasher(), query);
        self.read(move |c| queries::search_customers(c, &q, limit)).await
    }

    async fn product(&self, gtin: &str) -> Result<Option<ProductView>, DataError> {
        let g = gtin.to_string();
        self.read(move |c| queries::product_by_gtin(c, &g)).await
    }

    async fn nearby_stock(&self, gtin: &str) -> Result<Vec<kiosk_ui::model::NearbyStoreView>, DataError> {
        let gtin =
            crate::store::entities::gtin14("gtin", gtin).map_err(|e| DataError::Invalid(e.to_string()))?;
        let unavailable =
            || DataError::Unavailable("stock in nearby stores needs the cloud: the store is offline".into());
        let Some(lookups) = &self.nearby else {
            return Err(DataError::Unavailable("no cloud connection is configured".into()));
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        lookups
            .try_send(crate::sync::engine::NearbyLookup { gtin, reply })
            .map_err(|_| unavailable())?;
        match tokio::time::timeout(NEARBY_TIMEOUT, answer).await {
            Ok(Ok(stores)) => Ok(stores
                .into_iter()
                .take(20)
                .map(|s| kiosk_ui::model::NearbyStoreView {
                    store_id: s.store_id,
                    name: s.name,
                    available: s.available,
                    distance_m: s.distance_m,
                })
                .collect()),
            Ok(Err(_)) => Err(unavailable()),
            Err(_) => Err(DataError::Unavailable("the cloud did not answer in time".into())),
        }
    }

    async fn pickup_queue(&self) -> Result<Vec<QueueEntry>, DataError> {
        let now = now_ms();
        self.read(move |c| queries::pickup_queue(c, now)).await
    }

    async fn order(&self, order_id: &str) -> Result<Option<OrderView>, DataError> {
        let id = order_id.to_string();
        self.read(move |c| queries::order_view(c, &id)).await
    }

    async fn mark_arrived(&self, order_id: &str, associate_id: &str) -> Result<OrderView, DataError> {
        let order = self.counter.mark_arrived(order_id, associate_id).await?;
        let _ = self.events.send(ScreenEvent::OrdersChanged);
        Ok(order)
    }

    async fn hand_over(
        &self,
        order_id: &str,
        associate_id: &str,
        request: HandOverRequest,
    ) -> Result<HandOverDone, DataError> {
        let done = self.counter.hand_over(order_id, associate_id, request).await?;
        let _ = self.events.send(ScreenEvent::OrdersChanged);
        Ok(done)
    }

    async fn check_return(&self, entry: &ReturnEntry) -> Result<ReturnCheck, DataError> {
        self.counter.check_return(entry).await
    }

    async fn record_return(&self, entry: ReturnEntry) -> Result<Result<ReturnDone, ReturnCheck>, DataError> {
        self.counter.record_return(entry).await
    }

    fn has_printer(&self) -> bool {
        self.counter.has_printer()
    }

    async fn add_to_wishlist(&self, add: WishlistAdd) -> Result<(), DataError> {
        self.store
            .record_wishlist_edit(Captured::now(WishlistEdit {
                customer_id: add.customer_id,
                gtin: add.gtin,
                action: crate::domain::wishlist::WishlistAction::Add,
                channel: format!("store-{}", add.channel),
            }))
            .await
            .map(|_| ())
            .map_err(data_error)
    }

    fn subscribe(&self) -> broadcast::Receiver<ScreenEvent> {
        self.events.subscribe()
    }

    async fn inject_scan(&self, screen: ScreenKind, data: &str) -> Result<(), DataError> {
        let Some(tx) = &self.inject else {
            return Err(DataError::NotFound("scan injection is off".into()));
        };
        let device = match screen {
            ScreenKind::Console => INJECT_CONSOLE,
            ScreenKind::Kiosk => INJECT_KIOSK,
        };
        tx.send((device.to_string(), data.to_string()))
            .await
            .map_err(|_| DataError::Unavailable("the device pipeline has stopped".into()))
    }
}

/// An Argon2 hash of a random PIN nobody knows, checked for unknown associate ids
/// so that their answer takes as long as a wrong PIN's.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let pin = hex::encode(rand::random::<[u8; 16]>());
        entities::hash_pin(&pin, &rand::random::<[u8; 16]>()).unwrap_or_default()
    })
}

/// Turns device events into screen events until `stop`.
/// What the scan router needs from the configuration.
#[derive(Debug, Clone, Default)]
pub struct ScanRouting {
    /// Scanners whose scans go to the kiosk screen.
    pub kiosk_devices: HashSet<String>,
    /// `scan.receipt_code_prefixes`: stripped before an order is looked up.
    pub receipt_prefixes: Vec<String>,
}

impl ScanRouting {
    /// The order id in a receipt code: the code without its longest configured
    /// prefix.
    pub fn order_id_of_receipt_code<'a>(&self, code: &'a str) -> &'a str {
        self.receipt_prefixes
            .iter()
            .filter(|p| code.starts_with(p.as_str()))
            .max_by_key(|p| p.len())
            .map_or(code, |p| &code[p.len()..])
    }
}

pub async fn route_scans(
    mut devices: broadcast::Receiver<AgentEvent>,
    store: Arc<Store>,
    screens: broadcast::Sender<ScreenEvent>,
    routing: ScanRouting,
    stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = devices.recv() => e,
            _ = crate::devices::stopped(stop.clone()) => return,
        };
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "The screens fell behind the devices; some scans were not shown."
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let device_id = device_of(&event).to_string();
        let screen = if routing.kiosk_devices.contains(&device_id) || device_id == INJECT_KIOSK {
            ScreenKind::Kiosk
        } else {
            ScreenKind::Console
        };
        let started = std::time::Instant::now();
        let result = resolve(event, screen, &routing, &store, &screens).await;
        crate::metrics::scan_resolved(started.elapsed());
        let _ = screens.send(ScreenEvent::Scan {
            screen,
            device_id,
            result: Box::new(result),
        });
    }
}

fn device_of(e: &AgentEvent) -> &str {
    match e {
        AgentEvent::Scanned { device_id, .. }
        | AgentEvent::CustomerIdentified { device_id, .. }
        | AgentEvent::UnknownCard { device_id }
        | AgentEvent::PaymentCardRejected { device_id }
        | AgentEvent::UnreadableSwipe { device_id, .. } => device_id,
    }
}

async fn resolve(
    event: AgentEvent,
    screen: ScreenKind,
    routing: &ScanRouting,
    store: &Arc<Store>,
    screens: &broadcast::Sender<ScreenEvent>,
) -> ScanResult {
    let failed = |e: StoreError| {
        tracing::warn!(error = %e, "A scan could not be looked up.");
        ScanResult::Unreadable {
            message: "the local store could not answer".into(),
        }
    };
    match event {
        AgentEvent::CustomerIdentified { customer_id, .. } => {
            match store
                .reads()
                .read(move |c| queries::customer_view(c, &customer_id))
                .await
            {
                Ok(Some(view)) => ScanResult::Customer {
                    customer: Box::new(view),
                },
                Ok(None) => ScanResult::UnknownCard,
                Err(e) => failed(e),
            }
        }
        AgentEvent::UnknownCard { .. } => ScanResult::UnknownCard,
        AgentEvent::PaymentCardRejected { .. } => ScanResult::PaymentCardRejected,
        AgentEvent::UnreadableSwipe { reason, .. } => ScanResult::Unreadable { message: reason },
        AgentEvent::Scanned { scan, .. } => resolve_scan(*scan, screen, routing, store, screens)
            .await
            .unwrap_or_else(failed),
    }
}

async fn resolve_scan(
    scan: Scan,
    screen: ScreenKind,
    routing: &ScanRouting,
    store: &Arc<Store>,
    screens: &broadcast::Sender<ScreenEvent>,
) -> Result<ScanResult, StoreError> {
    Ok(match scan.kind {
        ScanKind::Product => {
            let gtin = scan.gtin14.clone().unwrap_or_default();
            let g = gtin.clone();
            let product = store
                .reads()
                .read(move |c| queries::product_by_gtin14(c, &g))
                .await?;
            ScanResult::Product { gtin, product }
        }
        ScanKind::OrderCode => {
            let code = scan.data().to_string();
            let hash = store.hasher().pickup_code_hash(&code);
            let order_id = store
                .reads()
                .read(move |c| queries::order_id_by_pickup_hash(c, &hash))
                .await?;
            match (screen, order_id) {
                (ScreenKind::Kiosk, Some(order_id)) => check_in(store, screens, order_id).await?,
                (ScreenKind::Kiosk, None) => ScanResult::CheckInRefused {
                    reason: "no order for this code in this store".into(),
                },
                (ScreenKind::Console, Some(order_id)) => ScanResult::Order {
                    order: store
                        .reads()
                        .read(move |c| queries::order_view(c, &order_id))
                        .await?,
                },
                (ScreenKind::Console, None) => ScanResult::Order { order: None },
            }
        }
        ScanKind::ReceiptCode => {
            // A receipt code carries the order id after its prefix; an order id
            // that itself starts with the prefix is found by the whole code.
            let code = scan.data().to_string();
            let stripped = routing.order_id_of_receipt_code(&code).to_string();
            ScanResult::Order {
                order: store
                    .reads()
                    .read(move |c| match queries::order_view(c, &stripped)? {
                        Some(o) => Ok(Some(o)),
                        None if stripped != code => queries::order_view(c, &code),
                        None => Ok(None),
                    })
                    .await?,
            }
        }
        ScanKind::PaymentCardRejected => ScanResult::PaymentCardRejected,
        ScanKind::LoyaltyCard => ScanResult::UnknownCard,
        ScanKind::Invalid => ScanResult::Unreadable {
            message: scan.error.unwrap_or_else(|| "invalid code".into()),
        },
        ScanKind::Unknown => ScanResult::Unreadable {
            message: "not a code this store uses".into(),
        },
    })
}

/// A pickup code scanned at a kiosk: the customer has arrived.
async fn check_in(
    store: &Arc<Store>,
    screens: &broadcast::Sender<ScreenEvent>,
    order_id: String,
) -> Result<ScanResult, StoreError> {
    let update = OrderUpdate {
        order_id: order_id.clone(),
        event: OrderEvent::CustomerArrived,
        associate_id: None,
    };
    match store.record_order_event(Captured::now(update)).await {
        Ok(_) => {
            let id = order_id.clone();
            let profile = store
                .reads()
                .read(move |c| queries::order_customer_profile(c, &id))
                .await?;
            tracing::info!(order_id = %order_id, "Customer checked in for a pickup at the kiosk.");
            let _ = screens.send(ScreenEvent::CustomerArrived {
                order_id: order_id.clone(),
                customer_name: profile.as_ref().map(|p| p.display_name.clone()),
            });
            Ok(ScanResult::CheckedIn {
                order_id,
                greeting: profile.as_ref().map(masked_name),
            })
        }
        Err(StoreError::Transition(e)) => Ok(ScanResult::CheckInRefused {
            reason: e.to_string(),
        }),
        Err(e) => Err(e),
    }
}

/// Pushes a status event when the status bar changes and `orders_changed` when
/// the pickup queue does, until `stop`.
pub async fn watch_changes(
    store: Arc<Store>,
    screens: broadcast::Sender<ScreenEvent>,
    stop: watch::Receiver<bool>,
) {
    let mut last_status: Option<StatusBar> = None;
    let mut last_queue: Option<(i64, i64)> = None;
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::devices::stopped(stop.clone()) => return,
        }
        if screens.receiver_count() == 0 {
            continue;
        }
        let read = store
            .reads()
            .read(|c| Ok((queries::status_bar(c)?, queries::pickup_queue_fingerprint(c)?)))
            .await;
        let Ok((status, queue)) = read else { continue };
        if last_status.as_ref() != Some(&status) {
            last_status = Some(status.clone());
            let _ = screens.send(ScreenEvent::Status { status });
        }
        if last_queue.is_some_and(|q| q != queue) {
            let _ = screens.send(ScreenEvent::OrdersChanged);
        }
        last_queue = Some(queue);
    }
}

#[cfg(test)]
mod tests {
    use super::ScanRouting;

    #[test]
    fn receipt_codes_lose_their_longest_prefix() {
        let routing = ScanRouting {
            receipt_prefixes: vec!["R".into(), "RCPT-".into()],
            ..ScanRouting::default()
        };
        assert_eq!(routing.order_id_of_receipt_code("RCPT-ORD-1"), "ORD-1");
        assert_eq!(routing.order_id_of_receipt_code("RORD-2"), "ORD-2");
        assert_eq!(routing.order_id_of_receipt_code("ORD-3"), "ORD-3");
        assert_eq!(
            ScanRouting::default().order_id_of_receipt_code("RCPT-1"),
            "RCPT-1"
        );
    }
}
