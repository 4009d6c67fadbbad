//! The counter's state-changing routes: a BOPIS customer marked as arrived, the
//! hand-over, and BORIS returns (checked, then recorded).
//!
//! Invariants:
//! * Only staff sessions reach these routes, each with the page's CSRF token.
//! * A hand-over needs the associate's confirmation that the customer's ID was
//!   checked; without it nothing is recorded.
//! * A manager's approval is verified here, never taken on trust from the body: the
//!   signed-in associate is a manager, or the body carries a manager's id and PIN,
//!   checked like a sign-in (same Argon2 check, same lockout after wrong PINs).

use crate::api::{body, json};
use crate::model::{HandOverRequest, ManagerApproval, ReturnEntry, ReturnLine, StaffRole};
use crate::security::{ApiError, Need, require};
use crate::{AppState, ScreenData};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use serde::Deserialize;

/// The reasons a customer may give for a return, as the screen lists them.
pub const RETURN_REASONS: &[&str] = &[
    "wrong_size",
    "not_as_described",
    "defective",
    "damaged_in_transit",
    "changed_mind",
    "other",
];
/// The conditions an associate may record.
pub const RETURN_CONDITIONS: &[&str] = &["unopened", "like_new", "used", "damaged"];
/// How the cloud may refund.
pub const REFUND_METHODS: &[&str] = &["original_tender", "gift_card", "store_credit"];
/// Where the goods go.
pub const DISPOSITIONS: &[&str] = &["restock", "damaged"];

pub fn routes<D: ScreenData>() -> Router<AppState<D>> {
    Router::new()
        .route("/api/v1/orders/{id}/arrived", post(arrived::<D>))
        .route("/api/v1/orders/{id}/handover", post(hand_over::<D>))
        .route("/api/v1/returns/check", post(check_return::<D>))
        .route("/api/v1/returns", post(record_return::<D>))
}

type ApiResult = Result<Response, ApiError>;

async fn arrived<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let session = require(&app, &method, &headers, Need::Staff)?;
    let staff = session.staff().cloned().expect("a staff session");
    json(&app.data.mark_arrived(&id, &staff.associate_id).await?)
}

async fn hand_over<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let session = require(&app, &method, &headers, Need::Staff)?;
    let staff = session.staff().cloned().expect("a staff session");
    let req: HandOverRequest = body(&bytes)?;
    if !req.id_checked {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "id_checked must be true: check the customer's ID before handing the order over",
        ));
    }
    if req.refused_lines.len() > 500 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "too many refused_lines"));
    }
    let done = app.data.hand_over(&id, &staff.associate_id, req).await?;
    tracing::info!(order_id = %id, status = %done.order.status, "Order handed over at the counter.");
    json(&done)
}

/// A return as the console sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnBody {
    order_id: String,
    lines: Vec<ReturnLine>,
    /// Optional for a check, required to record.
    #[serde(default)]
    reason: String,
    #[serde(default)]
    condition: String,
    #[serde(default)]
    disposition: String,
    #[serde(default)]
    refund_method: String,
    #[serde(default)]
    approval: Option<ApprovalBody>,
    #[serde(default)]
    print_receipt: bool,
}

/// A manager's approval as the console sends it: the reason, and the manager's id
/// and PIN unless the signed-in associate is a manager.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalBody {
    #[serde(default)]
    manager_id: Option<String>,
    #[serde(default)]
    pin: Option<String>,
    reason: String,
}

/// The staff session's return request as a [`ReturnEntry`], with the approval
/// verified.
async fn entry<D: ScreenData>(
    app: &AppState<D>,
    method: &Method,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<ReturnEntry, ApiError> {
    let session = require(app, method, headers, Need::Staff)?;
    let staff = session.staff().cloned().expect("a staff session");
    let (staff_id, staff_role) = (staff.associate_id.as_str(), staff.role);
    let body: ReturnBody = body(bytes)?;
    if body.order_id.trim().is_empty() || body.order_id.len() > 128 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "order_id is required"));
    }
    if body.lines.len() > 500 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "too many lines"));
    }
    let approval = match body.approval {
        None => None,
        Some(a) => Some(verify_approval(app, staff_id, staff_role, a).await?),
    };
    Ok(ReturnEntry {
        order_id: body.order_id.trim().to_string(),
        lines: body.lines,
        reason: body.reason,
        condition: body.condition,
        disposition: body.disposition,
        refund_method: body.refund_method,
        associate_id: staff_id.to_string(),
        approval,
        print_receipt: body.print_receipt,
    })
}

async fn verify_approval<D: ScreenData>(
    app: &AppState<D>,
    staff_id: &str,
    staff_role: StaffRole,
    a: ApprovalBody,
) -> Result<ManagerApproval, ApiError> {
    let reason = a.reason.trim().to_string();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a manager's approval needs a reason (1 to 500 characters)",
        ));
    }
    if staff_role == StaffRole::Manager {
        return Ok(ManagerApproval {
            manager_id: staff_id.to_string(),
            reason,
        });
    }
    let (Some(id), Some(pin)) = (a.manager_id, a.pin) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "a manager must approve: enter the manager's ID and PIN",
        ));
    };
    let id = id.trim().to_string();
    if id.is_empty() || id.len() > 64 || pin.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "manager_id and pin are required",
        ));
    }
    if app.throttle.locked(&id) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong PINs for this manager; wait five minutes",
        ));
    }
    match app.data.sign_in(&id, &pin).await? {
        Some(m) if m.role == StaffRole::Manager => {
            app.throttle.succeeded(&id);
            tracing::info!(manager_id = %id, associate_id = %staff_id, "Manager approved a return.");
            Ok(ManagerApproval {
                manager_id: id,
                reason,
            })
        }
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "that associate is not a manager; a manager must approve",
        )),
        None => {
            app.throttle.failed(&id);
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "manager ID or PIN is not right",
            ))
        }
    }
}

/// Checks the codes of a return that is to be recorded.
fn check_codes(e: &ReturnEntry) -> Result<(), ApiError> {
    for (field, value, allowed) in [
        ("reason", &e.reason, RETURN_REASONS),
        ("condition", &e.condition, RETURN_CONDITIONS),
        ("disposition", &e.disposition, DISPOSITIONS),
        ("refund_method", &e.refund_method, REFUND_METHODS),
    ] {
        if !allowed.contains(&value.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{field} must be one of {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

async fn check_return<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let entry = entry(&app, &method, &headers, &bytes).await?;
    json(&app.data.check_return(&entry).await?)
}

async fn record_return<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let entry = entry(&app, &method, &headers, &bytes).await?;
    check_codes(&entry)?;
    let order_id = entry.order_id.clone();
    match app.data.record_return(entry).await? {
        Ok(done) => {
            tracing::info!(order_id = %order_id, return_id = %done.return_id, "Return recorded.");
            Ok((StatusCode::CREATED, Json(done)).into_response())
        }
        Err(check) => {
            let text: Vec<&str> = check.blocking.iter().map(|r| r.text.as_str()).collect();
            Ok((
                StatusCode::CONFLICT,
                Json(serde_json::json!({
                    "error": format!("the return cannot be recorded: {}", text.join(" ")),
                    "check": check,
                })),
            )
                .into_response())
        }
    }
}
