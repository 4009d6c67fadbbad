//! Security headers, sessions on requests, CSRF checks and request metrics.

use crate::session::{Role, Session};
use crate::{AppState, ScreenData};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The name of the session cookie.
pub const COOKIE: &str = "sa_session";

/// No inline script, no `eval`, nothing from elsewhere, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// `value` escaped for a Prometheus label (backslash, quote, newline).
pub fn prometheus_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Requests served, by route and status, for `/metrics`.
#[derive(Default)]
pub struct HttpMetrics {
    counts: Mutex<BTreeMap<(String, u16), u64>>,
}

impl HttpMetrics {
    fn count(&self, route: String, status: u16) {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((route, status)).or_default() += 1;
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::from(
            "# HELP store_agent_http_requests_total HTTP requests served, by route and status.\n\
             # TYPE store_agent_http_requests_total counter\n",
        );
        for ((route, status), n) in m.iter() {
            out.push_str(&format!(
                "store_agent_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}\n",
                prometheus_label(route)
            ));
        }
        out
    }
}

/// Adds the security headers to every response and counts it.
pub async fn layer<D: ScreenData>(State(app): State<AppState<D>>, req: Request, next: Next) -> Response {
    // The route pattern, not the path: ids in paths must not become label values.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    if api {
        res = json_error(res).await;
    }
    app.metrics.count(route, res.status().as_u16());
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Customer data must not stay in the browser's cache for the back button or
    // the next shopper at a kiosk; assets set their own caching.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// The API answers errors as `{"error": message}`. axum's own rejections (a query
/// string that does not parse, a body over the limit, a path that is not UTF-8)
/// are plain text; this turns them into the same shape, so that a client (and the
/// OpenAPI document) has one error format.
async fn json_error(res: Response) -> Response {
    let plain = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !(res.status().is_client_error() || res.status().is_server_error()) || !plain {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = match axum::body::to_bytes(body, 16 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_string()
    } else {
        text
    };
    ApiError::new(parts.status, message).into_response()
}

/// An API error: a status and a message for the person at the screen.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and what to do.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<crate::DataError> for ApiError {
    fn from(e: crate::DataError) -> ApiError {
        use crate::DataError::*;
        match e {
            NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            Refused(m) => ApiError::new(StatusCode::CONFLICT, m),
            Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            Unavailable(m) => {
                tracing::warn!(error = %m, "A screen request could not be answered.");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the local store cannot answer right now; try again",
                )
            }
        }
    }
}

/// The session cookie's value, if the request has one.
pub fn cookie_session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The `Set-Cookie` value for a session.
pub fn session_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any session, anonymous included (sign-in).
    AnySession,
    /// A signed-in associate or manager.
    Staff,
    /// A kiosk.
    Kiosk,
    /// Staff or kiosk (product lookup, live events).
    StaffOrKiosk,
}

/// Checks the request's session, role and, for state-changing methods, its CSRF
/// token and origin.
pub fn require<D: ScreenData>(
    app: &AppState<D>,
    method: &Method,
    headers: &HeaderMap,
    need: Need,
) -> Result<Session, ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "sign in first (the session is missing or expired)",
        )
    };
    let id = cookie_session_id(headers).ok_or_else(unauthorized)?;
    let session = app.sessions.touch(&id).ok_or_else(unauthorized)?;
    let allowed = matches!(
        (need, &session.role),
        (Need::AnySession, _)
            | (Need::Staff, Role::Staff(_))
            | (Need::Kiosk, Role::Kiosk { .. })
            | (Need::StaffOrKiosk, Role::Staff(_) | Role::Kiosk { .. })
    );
    if !allowed {
        return Err(match session.role {
            Role::Anonymous => unauthorized(),
            _ => ApiError::new(StatusCode::FORBIDDEN, "this screen may not do that"),
        });
    }
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        check_origin(headers)?;
        let token = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(token.as_bytes(), session.csrf.as_bytes()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the request lacks this page's CSRF token (X-CSRF-Token); reload the page",
            ));
        }
    }
    Ok(session)
}

/// A browser sends `Origin` on cross-site and on POST requests: when it is there,
/// it must name this server (the `Host` the request was sent to).
pub fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| !host.is_empty() && o == host);
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin requests are refused",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_must_match_host_when_present() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_origin(&h).is_ok(), "no Origin (curl, same-origin GET)");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(check_origin(&h).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(check_origin(&h).is_err());
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(check_origin(&h).is_err());
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sa_session=abc; b=2"),
        );
        assert_eq!(cookie_session_id(&h).as_deref(), Some("abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("xsa_session=abc"));
        assert_eq!(cookie_session_id(&h), None);
    }

    #[test]
    fn metrics_use_route_patterns_and_escape_labels() {
        let m = HttpMetrics::default();
        m.count("/api/v1/customers/{id}".into(), 200);
        m.count("/api/v1/customers/{id}".into(), 200);
        m.count("a\"b".into(), 404);
        let text = m.render();
        assert!(text.contains("route=\"/api/v1/customers/{id}\",status=\"200\"} 2"));
        assert!(text.contains("route=\"a\\\"b\",status=\"404\"} 1"));
    }
}
