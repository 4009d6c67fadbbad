//! `POST /api/v1/pos/transactions`: POS software on this device hands over a
//! transaction as POSLog XML (`Content-Type: application/xml` or `text/xml`) or as
//! JSON (`application/json`, the fields of [`PosTransaction`]).
//!
//! It records through the same path as the spool folder
//! ([`Store::record_pos_transaction`]) and answers only after the transaction and
//! its outbox row are committed: 201 with what was recorded (`new` or
//! `duplicate`, found by the transaction's natural key, so a POS that retries
//! after a lost answer does not record twice). A body that cannot be used gets 400
//! with what and where, and is kept in the dead-letter table with card and loyalty
//! numbers masked ([`firmware_interfaces::poslog::redact`], then every run of 12 or
//! more digits), as is the error itself: a PAN never reaches the database or the log.
//!
//! Only callers on this device (loopback) may post: the route has no session, and
//! the store network must not be able to inject sales.

use crate::events::Captured;
use crate::store::Store;
use crate::store::records::{PosTransaction, Recorded};
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the route needs.
#[derive(Clone)]
pub struct PosIntake {
    /// The store.
    pub store: Arc<Store>,
    /// Store id for POSLog documents that name none.
    pub store_id: String,
    /// Currency for POSLog documents that name none.
    pub currency: String,
}

/// The route, to merge into the screens' router.
pub fn routes(intake: PosIntake) -> Router {
    Router::new()
        .route("/api/v1/pos/transactions", post(record))
        .with_state(intake)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn record(
    State(intake): State<PosIntake>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !peer.ip().is_loopback() {
        return error(
            StatusCode::FORBIDDEN,
            "POS transactions are accepted from this device only (loopback)".into(),
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let parsed: Result<Vec<PosTransaction>, String> = match content_type.as_str() {
        "application/json" => serde_json::from_slice::<PosTransaction>(&body)
            .map(|t| vec![t])
            .map_err(|e| format!("not a POS transaction in JSON: {e}")),
        "application/xml" | "text/xml" => crate::spool::poslog_transactions(
            &body,
            &intake.store_id,
            &intake.currency,
            intake.store.hasher(),
        ),
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type {other:?} is not accepted: send application/xml (POSLog) or application/json"
                ),
            );
        }
    };
    let transactions = match parsed {
        Ok(t) if t.is_empty() => Err("the POSLog document holds no transaction".to_string()),
        other => other,
    };
    let transactions = match transactions {
        Ok(t) => t,
        Err(message) => {
            // The error may quote a value of the body: masked like the body.
            let message = crate::spool::mask_long_digit_runs(&message);
            let mut kept = body.to_vec();
            firmware_interfaces::poslog::redact(&mut kept);
            let kept = crate::spool::mask_long_digit_runs(&String::from_utf8_lossy(&kept));
            if let Err(e) = intake
                .store
                .dead_letter(
                    "http:/api/v1/pos/transactions".into(),
                    kept.into_bytes(),
                    message.clone(),
                )
                .await
            {
                tracing::error!(error = %e, "Cannot keep a rejected POS transaction in the dead-letter table.");
            }
            tracing::warn!(error = %message, "POS transaction over HTTP rejected.");
            return error(StatusCode::BAD_REQUEST, message);
        }
    };
    let mut results = Vec::with_capacity(transactions.len());
    for tx in transactions {
        let key = (
            tx.workstation.clone(),
            tx.sequence_number,
            tx.business_day.clone(),
        );
        match intake.store.record_pos_transaction(Captured::now(tx)).await {
            Ok(recorded) => results.push(serde_json::json!({
                "workstation": key.0,
                "sequence_number": key.1,
                "business_day": key.2,
                "result": match recorded { Recorded::New { .. } => "new", Recorded::Duplicate => "duplicate" },
            })),
            Err(e) if e.is_disk_full() => {
                tracing::warn!(error = %e, "POS transaction over HTTP refused: the disk is full.");
                return error(
                    StatusCode::INSUFFICIENT_STORAGE,
                    format!("not recorded: {e}; send it again when space is freed"),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot record a POS transaction from HTTP.");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the transaction could not be recorded ({e}); send it again"),
                );
            }
        }
    }
    (
        StatusCode::CREATED,
        Json(serde_json::json!({ "recorded": results })),
    )
        .into_response()
}
