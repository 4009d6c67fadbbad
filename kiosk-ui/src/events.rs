//! The live push: `GET /api/v1/events`, Server-Sent Events per session.
//!
//! Each message is one JSON object with a `type`. What a session receives depends
//! on who it is:
//! * staff: scans at console scanners (with the customer panel, product or order
//!   already read), customer check-ins, pickup-queue changes, status changes;
//! * a kiosk: scans at kiosk scanners, with a loyalty card bound to this kiosk's
//!   session and turned into the masked [`KioskCustomer`]; status changes; and a
//!   `kiosk_reset` when the idle timeout sends it back to attract.
//!
//! The browser's `EventSource` reconnects by itself; a stream that fell behind the
//! broadcast buffer gets a `resync` telling the page to reload its data.

use crate::model::{KioskCustomer, ScanResult, ScreenEvent, ScreenKind};
use crate::security::{ApiError, Need, require};
use crate::session::Role;
use crate::{AppState, ScreenData};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::Stream;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

pub fn routes<D: ScreenData>() -> Router<AppState<D>> {
    Router::new().route("/api/v1/events", get(events::<D>))
}

/// How often a kiosk stream checks the idle timeout.
const IDLE_CHECK: Duration = Duration::from_millis(500);

async fn events<D: ScreenData>(
    State(app): State<AppState<D>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let session = require(&app, &method, &headers, Need::StaffOrKiosk)?;
    let rx = app.data.subscribe();
    let stop = app.options.stop.clone();
    let state = StreamState {
        app,
        session_id: session.id,
        kiosk: matches!(session.role, Role::Kiosk { .. }),
        rx,
        stop,
        first: true,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let msg = s.next().await?;
        Some((Ok(Event::default().data(msg.to_string())), s))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct StreamState<D> {
    app: AppState<D>,
    session_id: String,
    kiosk: bool,
    rx: tokio::sync::broadcast::Receiver<ScreenEvent>,
    /// The agent's stop signal ([`crate::UiOptions::stop`]).
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    first: bool,
}

impl<D: ScreenData> StreamState<D> {
    /// The next message for this session; `None` ends the stream (the session
    /// ended, or the agent is stopping).
    async fn next(&mut self) -> Option<serde_json::Value> {
        let Some(mut stop) = self.stop.take() else {
            return self.next_message().await;
        };
        let next = tokio::select! {
            biased;
            _ = stop.wait_for(|stopping| *stopping) => return None,
            m = self.next_message() => m,
        };
        self.stop = Some(stop);
        next
    }

    async fn next_message(&mut self) -> Option<serde_json::Value> {
        if self.first {
            // The page learns the stream is up (and shows it live) at once.
            self.first = false;
            return Some(json!({ "type": "hello" }));
        }
        loop {
            self.app.sessions.peek(&self.session_id)?;
            let received = if self.kiosk {
                match tokio::time::timeout(IDLE_CHECK, self.rx.recv()).await {
                    Ok(r) => r,
                    Err(_) => {
                        if self.app.sessions.kiosk_idle_expired(&self.session_id) {
                            return Some(json!({ "type": "kiosk_reset" }));
                        }
                        continue;
                    }
                }
            } else {
                self.rx.recv().await
            };
            let event = match received {
                Ok(e) => e,
                Err(RecvError::Lagged(_)) => return Some(json!({ "type": "resync" })),
                Err(RecvError::Closed) => return None,
            };
            if let Some(msg) = self.for_this_session(event) {
                return Some(msg);
            }
        }
    }

    fn for_this_session(&self, event: ScreenEvent) -> Option<serde_json::Value> {
        match event {
            ScreenEvent::Status { .. } => serde_json::to_value(&event).ok(),
            ScreenEvent::CustomerArrived { .. } | ScreenEvent::OrdersChanged if !self.kiosk => {
                serde_json::to_value(&event).ok()
            }
            ScreenEvent::Scan {
                screen: ScreenKind::Console,
                ..
            } if !self.kiosk => serde_json::to_value(&event).ok(),
            ScreenEvent::Scan {
                screen: ScreenKind::Kiosk,
                result,
                ..
            } if self.kiosk => self.kiosk_scan(*result),
            _ => None,
        }
    }

    fn kiosk_scan(&self, result: ScanResult) -> Option<serde_json::Value> {
        match result {
            ScanResult::Customer { customer } => {
                // The binding is what the kiosk API routes check: from now on this
                // session, and only it, may read this customer's masked view.
                if !self
                    .app
                    .sessions
                    .set_kiosk_customer(&self.session_id, Some(customer.profile.customer_id.clone()))
                {
                    return None;
                }
                Some(json!({ "type": "kiosk_customer", "customer": KioskCustomer::from_view(&customer) }))
            }
            // Order details are for staff; the kiosk learns only the check-in outcome.
            ScanResult::Order { .. } => None,
            other => Some(json!({ "type": "kiosk_scan", "result": other })),
        }
    }
}
