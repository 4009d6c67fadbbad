//! The health endpoints: what fleet monitoring and the screens' status bar ask the
//! running agent.
//!
//! * `GET /healthz` — 200 with a JSON body: the store's status report (outbox depth
//!   and age per stream, last sync per cloud stream, row counts) and every device's
//!   state. It reads the local store only.
//! * `GET /readyz` — 200 `{"ready":true}` once the store is open (the server starts
//!   after it is), so a supervisor can wait for it.
//!
//! The server listens on `http.listen` (default: none, no server; use a loopback
//! address on kiosks). The body holds ids and counts, never customer data. The
//! screens (associate console, kiosk) add their own routes behind sign-in.

use crate::store::{Store, status};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;

/// Builds the routes.
pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(store)
}

async fn healthz(State(store): State<Arc<Store>>) -> impl IntoResponse {
    match store.reads().read(status::report).await {
        Ok(report) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ok", "store": report })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "error", "error": e.to_string() })),
        ),
    }
}

async fn readyz() -> impl IntoResponse {
    Json(serde_json::json!({ "ready": true }))
}

/// Serves the routes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown)
        .await
}
