//! The associate console and the customer kiosk screens of store-agent: templates,
//! embedded static assets and their HTTP routes, behind a data interface
//! ([`ScreenData`]) the agent implements.
//!
//! What is served (the JSON API is described by `/api/v1/openapi.json`):
//! * pages: `/console` (after `/console/sign-in`), `/kiosk`, `/demo` (scan
//!   injection, only when enabled), and `/assets/*`, embedded in the binary: no CDN,
//!   no external fonts, so the screens work with the store offline;
//! * `/api/v1/…`: everything the pages do, as JSON; `/api/v1/events`, the live
//!   push (Server-Sent Events);
//! * `/healthz`, `/readyz`, `/metrics` for supervisors and monitoring.
//!
//! Security invariants (tested in `tests/tests/screens.rs`):
//! * Every response carries a Content-Security-Policy without inline scripts or
//!   `eval` and with `frame-ancestors 'none'`, and `X-Content-Type-Options: nosniff`.
//! * The session cookie is `HttpOnly; SameSite=Strict`; every state-changing
//!   request carries the session's CSRF token in `X-CSRF-Token` and, if the browser
//!   sends an `Origin`, it is this server's.
//! * Staff routes need a staff session; a kiosk session reaches only the kiosk
//!   routes, and only the customer who identified at that kiosk.
//! * All data is escaped: the templates escape by construction (maud) and the
//!   script only ever sets `textContent`.

pub mod data;
pub mod i18n;
pub mod model;
pub mod session;

mod api;
mod assets;
mod counter;
mod events;
mod openapi;
mod pages;
mod security;

pub use data::{DataError, Readiness, ScreenData, WishlistAdd};
pub use security::prometheus_label;

use axum::Router;
use i18n::Lang;
use session::{Sessions, Timeouts};
use std::sync::Arc;
use std::time::Duration;

/// How the screens are served.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// Serve the associate console.
    pub console: bool,
    /// Serve the customer kiosk.
    pub kiosk: bool,
    /// Language when the browser asks for none we have.
    pub default_lang: Lang,
    /// Idle time after which an associate is signed out.
    pub console_idle: Duration,
    /// Idle time after which the kiosk returns to its attract screen.
    pub kiosk_idle: Duration,
    /// Allow injecting scans over HTTP (`/demo`, `store-agent scan send`).
    pub scan_injection: bool,
    /// Store id, shown in the header.
    pub store_id: String,
    /// Becomes `true` when the agent stops: the live event streams end then, so
    /// the HTTP server's graceful shutdown is not held open by a screen that
    /// never disconnects (the pages reconnect to the restarted agent by themselves).
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Default for UiOptions {
    fn default() -> Self {
        UiOptions {
            console: true,
            kiosk: true,
            default_lang: Lang::En,
            console_idle: Duration::from_secs(15 * 60),
            kiosk_idle: Duration::from_secs(60),
            scan_injection: false,
            store_id: String::new(),
            stop: None,
        }
    }
}

/// Shared by every handler.
pub(crate) struct App<D> {
    pub data: Arc<D>,
    pub sessions: Sessions,
    pub options: UiOptions,
    pub metrics: security::HttpMetrics,
    pub throttle: api::SignInThrottle,
}

pub(crate) type AppState<D> = Arc<App<D>>;

/// All routes of the screens, plus `extra` (the agent's own routes, such as the
/// POS transaction intake), behind the security headers and request metrics.
pub fn router<D: ScreenData>(data: Arc<D>, options: UiOptions, extra: Router) -> Router {
    let state: AppState<D> = Arc::new(App {
        data,
        sessions: Sessions::new(Timeouts {
            console_idle: options.console_idle,
            kiosk_idle: options.kiosk_idle,
        }),
        options,
        metrics: security::HttpMetrics::default(),
        throttle: api::SignInThrottle::default(),
    });
    let routes = pages::routes::<D>()
        .merge(api::routes::<D>())
        .merge(counter::routes::<D>())
        .merge(events::routes::<D>())
        .merge(assets::routes::<D>())
        .with_state(state.clone());
    routes
        .merge(extra)
        .layer(axum::middleware::from_fn_with_state(state, security::layer::<D>))
}
