//! The static assets, embedded in the binary: the screens need nothing from the
//! internet, so they work with the store offline.

use crate::{AppState, ScreenData};
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

pub fn routes<D: ScreenData>() -> Router<AppState<D>> {
    Router::new()
        .route("/assets/app.js", get(js))
        .route("/assets/app.css", get(css))
}

// `no-cache`: the browser revalidates, so an upgraded agent's script is used at
// once; the files are small and served from loopback or the store LAN.
async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_CSS,
    )
}
