//! The cloud's HTTP server: the snapshot manifest endpoint the agent
//! bootstraps from, and the snapshot files.
//!
//! * `GET /manifest?streams=a,b` — a [`SnapshotManifest`] JSON for those streams
//!   (all streams with a position when the parameter is absent or empty);
//!   400 naming an unknown stream.
//! * `GET /snapshots/{file}` — the file, streamed, with its length; 404 for a
//!   name that is not a plain file name in the snapshot folder.
//!
//! [`SnapshotManifest`]: crate::sync::protocol::SnapshotManifest

use super::Shared;
use crate::events::DownlinkStream;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// Serves the routes on `listener` until the cloud shuts down.
pub(super) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let mut run = shared.run.subscribe();
    let app = Router::new()
        .route("/manifest", get(manifest))
        .route("/snapshots/{file}", get(snapshot_file))
        .with_state(shared);
    let stop = async move {
        let _ = run.wait_for(|s| *s == super::RunState::Shutdown).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::error!(error = %e, "The cloud's HTTP server stopped.");
    }
}

async fn manifest(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let streams = match requested_streams(query.as_deref()) {
        Ok(s) => s,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    match super::mqtt::manifest(&shared, streams).await {
        Ok(m) => Json(m).into_response(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "Cannot make a snapshot manifest.");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response()
        }
    }
}

/// The `streams` parameter: `None` for every stream, or the named ones.
pub(super) fn requested_streams(query: Option<&str>) -> Result<Option<Vec<DownlinkStream>>, String> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("streams="))
    else {
        return Ok(None);
    };
    let value = percent_decode(value);
    let names: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    names
        .into_iter()
        .map(|n| {
            DownlinkStream::parse(n).ok_or_else(|| format!("unknown stream {n:?} in the streams parameter"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Decodes `%XX` and `+` of a query value (clients encode the commas).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A name the snapshot folder may serve: no separators, no hidden or
/// temporary files, nothing that climbs out.
fn servable(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

async fn snapshot_file(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    if !servable(&name) {
        return (StatusCode::NOT_FOUND, "no such snapshot").into_response();
    }
    let path = shared.snapshots.dir().join(&name);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, format!("no snapshot {name}")).into_response();
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "Cannot open a snapshot to serve.");
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot open {name}")).into_response();
        }
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "Cannot read a snapshot's size.");
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read {name}")).into_response();
        }
    };
    // Read in chunks: a snapshot of a million customers never sits in memory.
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), Some(file)))
            }
            // Report the error once and end the body there.
            Err(e) => Some((Err(e), None)),
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_parameter_parses() {
        assert_eq!(requested_streams(None), Ok(None));
        assert_eq!(requested_streams(Some("streams=")), Ok(None));
        assert_eq!(
            requested_streams(Some("x=1&streams=stock%2Cproducts")),
            Ok(Some(vec![DownlinkStream::Stock, DownlinkStream::Products]))
        );
        assert_eq!(
            requested_streams(Some("streams=config,customers")),
            Ok(Some(vec![DownlinkStream::Config, DownlinkStream::Customers]))
        );
        assert!(
            requested_streams(Some("streams=stock,nonsense"))
                .unwrap_err()
                .contains("nonsense")
        );
    }

    #[test]
    fn only_plain_names_are_served() {
        assert!(servable("snapshot-0190.jsonl"));
        for bad in ["", "../cloud.db", ".base.tmp", "a/b", "a\\b", "x%2F"] {
            assert!(!servable(bad), "{bad}");
        }
    }
}
