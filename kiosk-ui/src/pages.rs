//! The page shells, rendered on the server. The data inside them is filled by the
//! pages' script from the JSON API and the live events, with `textContent` only.
//!
//! Each page carries what its script needs as `data-` attributes of `<body>`:
//! the CSRF token, the page kind, the idle timeout and the string table of its
//! language (attributes, not an inline script: the CSP forbids inline scripts).

use crate::i18n::{self, Lang, t};
use crate::security::{cookie_session_id, session_cookie};
use crate::session::{Role, Session};
use crate::{AppState, ScreenData};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

pub fn routes<D: ScreenData>() -> Router<AppState<D>> {
    Router::new()
        .route("/", get(root::<D>))
        .route("/console", get(console::<D>))
        .route("/console/sign-in", get(sign_in::<D>))
        .route("/kiosk", get(kiosk::<D>))
        .route("/demo", get(demo::<D>))
}

fn lang_of<D>(app: &AppState<D>, headers: &HeaderMap) -> Lang {
    Lang::negotiate(
        headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()),
        app.options.default_lang,
    )
}

struct Shell<'a> {
    lang: Lang,
    page: &'a str,
    title: &'a str,
    csrf: &'a str,
    kiosk_idle_ms: u128,
    printer: bool,
}

fn shell(s: &Shell<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(s.lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (s.title) }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body class=(s.page) data-page=(s.page) data-csrf=(s.csrf)
                data-kiosk-idle-ms=(s.kiosk_idle_ms) data-printer=(s.printer)
                data-strings=(i18n::table_json(s.lang)) {
                (body)
            }
        }
    }
}

fn with_cookie(session: &Session, markup: Markup) -> Response {
    (
        [(header::SET_COOKIE, session_cookie(&session.id))],
        Html(markup.into_string()),
    )
        .into_response()
}

async fn root<D: ScreenData>(State(app): State<AppState<D>>) -> Redirect {
    if app.options.console {
        Redirect::to("/console")
    } else {
        Redirect::to("/kiosk")
    }
}

fn not_served() -> Response {
    (
        StatusCode::NOT_FOUND,
        "This screen is not enabled on this device.",
    )
        .into_response()
}

fn status_bar(lang: Lang) -> Markup {
    html! {
        div #status .status role="status" aria-live="polite" {
            span #status-online .pill { (t(lang, "status.never_connected")) }
            span #status-data {}
            span #status-waiting {}
            span #status-devices {}
            span #status-live .pill .warn hidden { (t(lang, "status.live_lost")) }
        }
    }
}

async fn console<D: ScreenData>(State(app): State<AppState<D>>, headers: HeaderMap) -> Response {
    if !app.options.console {
        return not_served();
    }
    let session = cookie_session_id(&headers).and_then(|id| app.sessions.touch(&id));
    let Some(session) = session.filter(|s| s.staff().is_some()) else {
        return Redirect::to("/console/sign-in").into_response();
    };
    let lang = lang_of(&app, &headers);
    let associate = session.staff().cloned().expect("checked above");
    let body = html! {
        header .top {
            h1 { (t(lang, "app.console")) }
            span .store { (app.options.store_id) }
            span #associate .who data-role=(if session.is_manager() { "manager" } else { "associate" }) { (associate.name) }
            button #sign-out type="button" { (t(lang, "signout")) }
        }
        (status_bar(lang))
        main .console {
            section .work {
                form #search role="search" {
                    input #q name="q" type="search" autocomplete="off" placeholder=(t(lang, "search.placeholder")) aria-label=(t(lang, "search.placeholder"));
                    button type="submit" { (t(lang, "search.submit")) }
                }
                p .hint { (t(lang, "scan.hint")) }
                div #notice role="alert" hidden {}
                ul #results hidden {}
                section #panel .card hidden aria-live="polite" {}
                section #product .card hidden aria-live="polite" {}
                section #order .card hidden {}
            }
            aside .queue {
                h2 { (t(lang, "queue.title")) }
                ul #queue {}
            }
        }
    };
    let page = shell(
        &Shell {
            lang,
            page: "console",
            title: t(lang, "app.console"),
            csrf: &session.csrf,
            kiosk_idle_ms: app.options.kiosk_idle.as_millis(),
            printer: app.data.has_printer(),
        },
        body,
    );
    Html(page.into_string()).into_response()
}

async fn sign_in<D: ScreenData>(State(app): State<AppState<D>>, headers: HeaderMap) -> Response {
    if !app.options.console {
        return not_served();
    }
    let existing = cookie_session_id(&headers).and_then(|id| app.sessions.touch(&id));
    if existing.as_ref().is_some_and(|s| s.staff().is_some()) {
        return Redirect::to("/console").into_response();
    }
    let session = match existing {
        Some(s) if s.role == Role::Anonymous => s,
        _ => app.sessions.create(Role::Anonymous),
    };
    let lang = lang_of(&app, &headers);
    let body = html! {
        main .signin {
            h1 { (t(lang, "app.console")) }
            form #signin {
                label for="associate-id" { (t(lang, "signin.associate_id")) }
                input #associate-id name="associate_id" autocomplete="username" required autofocus;
                label for="pin" { (t(lang, "signin.pin")) }
                input #pin name="pin" type="password" inputmode="numeric" autocomplete="current-password" required;
                button type="submit" { (t(lang, "signin.submit")) }
                p #signin-error .error role="alert" hidden {}
            }
        }
    };
    let page = shell(
        &Shell {
            lang,
            page: "signin",
            title: t(lang, "signin.title"),
            csrf: &session.csrf,
            kiosk_idle_ms: 0,
            printer: false,
        },
        body,
    );
    with_cookie(&session, page)
}

async fn kiosk<D: ScreenData>(State(app): State<AppState<D>>, headers: HeaderMap) -> Response {
    if !app.options.kiosk {
        return not_served();
    }
    // Every load of the kiosk page starts at attract with a fresh session: a
    // reload or the back button never brings the previous shopper back.
    if let Some(old) = cookie_session_id(&headers) {
        app.sessions.remove(&old);
    }
    let session = app.sessions.create(Role::Kiosk { customer_id: None });
    let lang = lang_of(&app, &headers);
    let body = html! {
        (status_bar(lang))
        main .kiosk {
            section #attract {
                h1 { (t(lang, "kiosk.attract_title")) }
                p .big { (t(lang, "kiosk.attract_text")) }
                p { (t(lang, "kiosk.pickup_text")) }
            }
            section #me hidden aria-live="polite" {}
            section #product .card hidden aria-live="polite" {}
            section #message .card role="status" hidden {}
            button #done type="button" hidden { (t(lang, "kiosk.done")) }
        }
    };
    let page = shell(
        &Shell {
            lang,
            page: "kiosk",
            title: t(lang, "app.kiosk"),
            csrf: &session.csrf,
            kiosk_idle_ms: app.options.kiosk_idle.as_millis(),
            printer: false,
        },
        body,
    );
    with_cookie(&session, page)
}

async fn demo<D: ScreenData>(State(app): State<AppState<D>>, headers: HeaderMap) -> Response {
    if !app.options.scan_injection {
        return (
            StatusCode::NOT_FOUND,
            "Scan injection is off (demo mode or screens.scan_injection).",
        )
            .into_response();
    }
    let lang = lang_of(&app, &headers);
    let session = app.sessions.create(Role::Anonymous);
    let body = html! {
        main .demo {
            h1 { (t(lang, "demo.scan_title")) }
            p { a href="/console" { (t(lang, "app.console")) } " · " a href="/kiosk" { (t(lang, "app.kiosk")) } }
            form #scan {
                label for="scan-to" { (t(lang, "demo.scan_to")) }
                select #scan-to name="screen" {
                    option value="console" { (t(lang, "app.console")) }
                    option value="kiosk" { (t(lang, "app.kiosk")) }
                }
                input #scan-data name="data" autocomplete="off" required;
                button type="submit" { (t(lang, "demo.scan_send")) }
                p #scan-result role="status" {}
            }
        }
    };
    let page = shell(
        &Shell {
            lang,
            page: "demo",
            title: t(lang, "demo.scan_title"),
            csrf: &session.csrf,
            kiosk_idle_ms: 0,
            printer: false,
        },
        body,
    );
    with_cookie(&session, page)
}
