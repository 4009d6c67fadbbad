//! The JSON API under `/api/v1/` (see `openapi.rs` for the document), and the
//! health, readiness and metrics endpoints.

use crate::model::{KioskCustomer, ScreenKind};
use crate::security::{ApiError, Need, clear_cookie, cookie_session_id, require, session_cookie};
use crate::session::Role;
use crate::{AppState, ScreenData, WishlistAdd};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub fn routes<D: ScreenData>() -> Router<AppState<D>> {
    Router::new()
        .route(
            "/api/v1/session",
            get(who_am_i::<D>).post(sign_in::<D>).delete(sign_out::<D>),
        )
        .route("/api/v1/status", get(status::<D>))
        .route("/api/v1/customers", get(search::<D>))
        .route("/api/v1/customers/{id}", get(customer::<D>))
        .route("/api/v1/products/{gtin}", get(product::<D>))
        .route("/api/v1/products/{gtin}/nearby", get(nearby::<D>))
        .route("/api/v1/pickups", get(pickups::<D>))
        .route("/api/v1/orders/{id}", get(order::<D>))
        .route("/api/v1/kiosk/me", get(kiosk_me::<D>))
        .route("/api/v1/kiosk/wishlist", post(kiosk_wishlist::<D>))
        .route("/api/v1/kiosk/end", post(kiosk_end::<D>))
        .route("/api/v1/scans", post(inject_scan::<D>))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<D>))
        .route("/metrics", get(metrics::<D>))
}

type ApiResult = Result<Response, ApiError>;

pub(crate) fn json<T: serde::Serialize>(value: &T) -> ApiResult {
    Ok(Json(value).into_response())
}

/// `value` as JSON, or 404 with `missing` when the local store has none.
fn found<T: serde::Serialize>(value: Option<T>, missing: impl FnOnce() -> String) -> ApiResult {
    match value {
        Some(v) => json(&v),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, missing())),
    }
}

/// Parses a JSON body with an error that says what and where (line, column),
/// after the session checks (axum's `Json` extractor would run before them).
pub(crate) fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// Failed sign-ins per associate id: after [`MAX_FAILURES`] within
/// [`FAILURE_WINDOW`] the id is locked for the rest of the window, so a 4-digit
/// PIN cannot be guessed by trying them all.
#[derive(Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);

impl SignInThrottle {
    pub(crate) fn locked(&self, id: &str) -> bool {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(id) {
            Some((n, since)) if since.elapsed() < FAILURE_WINDOW => *n >= MAX_FAILURES,
            Some(_) => {
                m.remove(id);
                false
            }
            None => false,
        }
    }

    pub(crate) fn failed(&self, id: &str) {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 10_000 {
            m.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let e = m.entry(id.to_string()).or_insert((0, Instant::now()));
        e.0 += 1;
    }

    pub(crate) fn succeeded(&self, id: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    associate_id: String,
    pin: String,
}

async fn sign_in<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let session = require(&app, &method, &headers, Need::AnySession)?;
    let req: SignIn = body(&bytes)?;
    let id = req.associate_id.trim();
    if id.is_empty() || id.len() > 64 || req.pin.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "associate_id and pin are required",
        ));
    }
    if app.throttle.locked(id) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong PINs for this associate; wait five minutes or ask a manager",
        ));
    }
    match app.data.sign_in(id, &req.pin).await? {
        Some(associate) => {
            app.throttle.succeeded(id);
            tracing::info!(associate_id = %associate.associate_id, "Associate signed in.");
            let new = app.sessions.sign_in(Some(&session.id), associate.clone());
            Ok((
                [(header::SET_COOKIE, session_cookie(&new.id))],
                Json(serde_json::json!({ "associate": associate })),
            )
                .into_response())
        }
        None => {
            app.throttle.failed(id);
            tracing::info!(associate_id = %id, "Sign-in refused.");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "associate ID or PIN is not right",
            ))
        }
    }
}

async fn sign_out<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult {
    let session = require(&app, &method, &headers, Need::Staff)?;
    app.sessions.remove(&session.id);
    Ok(([(header::SET_COOKIE, clear_cookie())], StatusCode::NO_CONTENT).into_response())
}

async fn who_am_i<D: ScreenData>(State(app): State<AppState<D>>, headers: HeaderMap) -> ApiResult {
    let session = cookie_session_id(&headers).and_then(|id| app.sessions.touch(&id));
    let role = match session.as_ref().map(|s| &s.role) {
        None => "none",
        Some(Role::Anonymous) => "anonymous",
        Some(Role::Staff(_)) => "staff",
        Some(Role::Kiosk { .. }) => "kiosk",
    };
    json(&serde_json::json!({
        "role": role,
        "associate": session.as_ref().and_then(|s| s.staff().cloned()),
    }))
}

async fn status<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult {
    require(&app, &method, &headers, Need::StaffOrKiosk)?;
    json(&app.data.status().await?)
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
}

async fn search<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    require(&app, &method, &headers, Need::Staff)?;
    // After the session check: without a staff session, the answer is 401/403
    // whatever the query says.
    let Ok(Query(q)) = q else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the search needs q: 2 to 100 characters of a name, an e-mail address or a phone number",
        ));
    };
    let q = q.q.trim();
    if q.chars().count() < 2 || q.len() > 100 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the search needs 2 to 100 characters of a name",
        ));
    }
    json(&app.data.search_customers(q, 20).await?)
}

async fn customer<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    require(&app, &method, &headers, Need::Staff)?;
    found(app.data.customer(&id).await?, || {
        format!("no customer {id} in this store's data")
    })
}

async fn product<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
    Path(gtin): Path<String>,
) -> ApiResult {
    require(&app, &method, &headers, Need::StaffOrKiosk)?;
    found(app.data.product(&gtin).await?, || {
        format!("no product {gtin} in the catalogue")
    })
}

async fn nearby<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
    Path(gtin): Path<String>,
) -> ApiResult {
    require(&app, &method, &headers, Need::Staff)?;
    match app.data.nearby_stock(&gtin).await {
        Ok(stores) => json(&stores),
        // Here "unavailable" is the cloud, not the local store: say which.
        Err(crate::data::DataError::Unavailable(why)) => {
            Err(ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, why))
        }
        Err(e) => Err(e.into()),
    }
}

async fn pickups<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult {
    require(&app, &method, &headers, Need::Staff)?;
    json(&app.data.pickup_queue().await?)
}

async fn order<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    require(&app, &method, &headers, Need::Staff)?;
    found(app.data.order(&id).await?, || {
        format!("no order {id} in this store's data")
    })
}

fn kiosk_customer_id(role: &Role) -> Result<String, ApiError> {
    match role {
        Role::Kiosk {
            customer_id: Some(id),
        } => Ok(id.clone()),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no customer has identified at this kiosk (or the session timed out)",
        )),
    }
}

async fn kiosk_me<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult {
    let session = require(&app, &method, &headers, Need::Kiosk)?;
    let id = kiosk_customer_id(&session.role)?;
    let view = app.data.customer(&id).await?;
    found(view.as_ref().map(KioskCustomer::from_view), || {
        "the customer is no longer in this store's data".into()
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KioskWish {
    gtin: String,
}

async fn kiosk_wishlist<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let session = require(&app, &method, &headers, Need::Kiosk)?;
    let req: KioskWish = body(&bytes)?;
    let customer_id = kiosk_customer_id(&session.role)?;
    app.data
        .add_to_wishlist(WishlistAdd {
            customer_id: customer_id.clone(),
            gtin: req.gtin,
            channel: "kiosk",
        })
        .await?;
    match app.data.customer(&customer_id).await? {
        Some(view) => json(&KioskCustomer::from_view(&view)),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

async fn kiosk_end<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult {
    let session = require(&app, &method, &headers, Need::Kiosk)?;
    app.sessions.set_kiosk_customer(&session.id, None);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectScan {
    screen: ScreenKind,
    data: String,
}

async fn inject_scan<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    if !app.options.scan_injection {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "scan injection is off: it is on in demo mode or with screens.scan_injection = true",
        ));
    }
    require(&app, &method, &headers, Need::AnySession)?;
    let req: InjectScan = body(&bytes)?;
    if req.data.is_empty() || req.data.len() > 4096 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "data must be 1 to 4096 bytes",
        ));
    }
    app.data.inject_scan(req.screen, &req.data).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn readyz<D: ScreenData>(State(app): State<AppState<D>>) -> Response {
    let r = app.data.readiness().await;
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r)).into_response()
}

async fn metrics<D: ScreenData>(State(app): State<AppState<D>>) -> Response {
    let mut text = app.data.metrics().await;
    text.push_str(&app.metrics.render());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
