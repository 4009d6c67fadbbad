//! A tiny blocking HTTP/1.1 client for the screens' API tests: plain sockets to
//! 127.0.0.1, `Connection: close`, so what a test sends and gets is exactly what
//! it wrote (no cookie jar, no redirects followed, no proxy).

use std::io::{Read, Write};
use std::time::Duration;

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names in lower case, with their values, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text (chunked bodies are decoded).
    pub body: String,
}

impl Response {
    /// The first value of `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `name=value` of the session cookie this response sets, if any.
    pub fn session_cookie(&self) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .filter_map(|(_, v)| v.split(';').next())
            .find(|kv| kv.starts_with("sa_session=") && kv.len() > "sa_session=".len())
            .map(str::to_string)
    }

    /// The `data-csrf` token of a page.
    pub fn csrf(&self) -> String {
        self.body
            .split("data-csrf=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no data-csrf in the page: {}", self.body))
            .to_string()
    }
}

/// Sends one request to `addr` and reads the whole response.
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// [`request`] for a server that may be gone (killed, restarting): the I/O error
/// instead of a panic, and a response cut short is an error too.
pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("no status line: {head:?}"),
            )
        })?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// A signed-in associate session on the console: (cookie, CSRF token).
pub type Session = (String, String);

/// Signs associate `id` in on the agent at `addr`; `None` when the agent does not
/// answer (killed, starting).
pub fn sign_in(addr: &str, id: &str, pin: &str) -> Option<Session> {
    let page = try_request(addr, "GET", "/console/sign-in", &[], b"").ok()?;
    let cookie = page.session_cookie()?;
    let body = serde_json::json!({ "associate_id": id, "pin": pin }).to_string();
    let headers = [
        ("Cookie", cookie.as_str()),
        ("X-CSRF-Token", &page.csrf()),
        ("Content-Type", "application/json"),
    ];
    let signed = try_request(addr, "POST", "/api/v1/session", &headers, body.as_bytes()).ok()?;
    let staff = signed.session_cookie()?;
    let console = try_request(addr, "GET", "/console", &[("Cookie", &staff)], b"").ok()?;
    (console.status == 200).then(|| (staff, console.csrf()))
}

/// The associate at the counter, as the console would: one call of the staff API.
pub fn staff_call(
    addr: &str,
    session: &Session,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> Option<Response> {
    let text = body.to_string();
    let headers = [
        ("Cookie", session.0.as_str()),
        ("X-CSRF-Token", session.1.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = if method == "GET" {
        &b""[..]
    } else {
        text.as_bytes()
    };
    try_request(addr, method, path, &headers, body).ok()
}
