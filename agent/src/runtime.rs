//! The long-running agent (`store-agent run`).
//!
//! The agent opens and migrates the local store, starts the device drivers, the
//! spool reader, the cloud sync and the HTTP server, and shuts down cleanly: on SIGTERM or SIGINT it stops,
//! lets the writer finish queued work, checkpoints the WAL into the database file
//! and exits 0. Device drivers, the cloud sync and the screens are started here
//! as they are built (see ARCHITECTURE.md).

use crate::config::Config;
use crate::devices::{self, AgentEvent};
use crate::domain::returns::ReturnPolicy;
use crate::store::{KeyedHasher, Store, StoreOptions};
use anyhow::{Context, Result};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How long the parts get to finish after a stop request before they are cancelled
/// (systemd's stop timeout is longer; the store still closes cleanly after this).
const STOP_DEADLINE: Duration = Duration::from_secs(3);

/// Builds the store options from the configuration.
pub fn store_options(config: &Config) -> Result<StoreOptions> {
    let key = config
        .loyalty
        .hash_key_bytes()
        .context("loyalty.hash_key is not set (config check explains how to set it)")?;
    let hasher = KeyedHasher::new(&key).context("loyalty.hash_key is shorter than 32 bytes")?;
    // What the configuration does not set keeps `StoreOptions::new`'s default.
    Ok(StoreOptions {
        read_connections: config.database.read_connections,
        busy_timeout: Duration::from_millis(config.database.busy_timeout_ms),
        return_policy: ReturnPolicy {
            window_days: config.returns.window_days,
        },
        min_free_bytes: config.database.min_free_bytes,
        ..StoreOptions::new(config.database.path.clone(), hasher)
    })
}

/// Runs the agent until `shutdown` completes, then stops cleanly.
///
/// Takes its shutdown signal as a future (as mini-redis's `run` does) so tests can
/// stop it without sending signals. `on_ready` is called once the store is open.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>, on_ready: impl FnOnce()) -> Result<()> {
    let options = store_options(&config)?;
    let path = options.path.clone();
    // Opening migrates the schema: file I/O, off the async runtime.
    let store = tokio::task::spawn_blocking(move || Store::open(options))
        .await
        .context("the store opening task failed")?
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    let store = Arc::new(store);

    // Parts that run until shutdown: each gets the stop signal and is awaited,
    // with a deadline, before the store is closed.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (agent_events, _) = broadcast::channel::<AgentEvent>(256);
    let (screen_events, _) = broadcast::channel::<kiosk_ui::model::ScreenEvent>(256);
    // Without the HTTP server there are no screens: scans are not looked up for
    // them and nothing watches for changes to push.
    let serve_screens = config.http.listen.is_some();
    let (inject_tx, inject_rx) = if serve_screens && config.screens.scan_injection {
        let (tx, rx) = tokio::sync::mpsc::channel::<crate::screens::Injected>(64);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    // Set up first: a bad certificate stops the start before anything runs.
    let (nearby_tx, nearby_rx) = tokio::sync::mpsc::channel(16);
    let sync = crate::sync::start_with_lookups(&config, store.clone(), nearby_rx, stop_rx.clone())?;
    let mut parts = tokio::task::JoinSet::new();
    parts.spawn(devices::run(
        config.devices.clone(),
        config.scan.clone(),
        store.clone(),
        agent_events.clone(),
        stop_rx.clone(),
        inject_rx,
    ));
    if serve_screens {
        parts.spawn(crate::screens::route_scans(
            agent_events.subscribe(),
            store.clone(),
            screen_events.clone(),
            crate::screens::ScanRouting {
                kiosk_devices: config.screens.kiosk_devices.iter().cloned().collect(),
                receipt_prefixes: config.scan.receipt_code_prefixes.clone(),
            },
            stop_rx.clone(),
        ));
        parts.spawn(crate::screens::watch_changes(
            store.clone(),
            screen_events.clone(),
            stop_rx.clone(),
        ));
    }
    parts.spawn(crate::displays::run(
        config.devices.displays.clone(),
        store.clone(),
        agent_events.subscribe(),
        stop_rx.clone(),
    ));
    let (printer, printing) =
        crate::printers::start(&config.devices.printers, store.clone(), stop_rx.clone());
    if let Some(printing) = printing {
        parts.spawn(printing);
    }
    if config.spool.path.is_some() {
        let spool = crate::spool::run_spool(
            store.clone(),
            config.spool.clone(),
            config.store.store_id.clone(),
            config.store.currency.clone(),
            devices::stopped(stop_rx.clone()),
        );
        parts.spawn(async move {
            if let Err(e) = spool.await {
                tracing::error!(error = %format!("{e:#}"), "The spool folder reader stopped.");
            }
        });
    }

    if let Some(sync) = sync {
        parts.spawn(sync);
    }

    if let Some(addr) = config.http.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on http.listen = {addr}"))?;
        let bound = listener
            .local_addr()
            .context("cannot read the HTTP server's address")?;
        tracing::info!(addr = %bound, "HTTP server listening.");
        let counter = crate::counter::CounterOptions {
            printer: printer.clone(),
            offline_limit_minor: config.returns.offline_limit_minor,
        };
        let app = screens_router(
            &config,
            store.clone(),
            screen_events.clone(),
            inject_tx,
            counter,
            stop_rx.clone(),
            nearby_tx,
        );
        let shutdown = devices::stopped(stop_rx.clone());
        parts.spawn(async move {
            let served = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "The HTTP server stopped.");
            }
        });
    }

    // Told to systemd only now: the database is open and the HTTP server bound.
    let notifier = Arc::new(crate::notify::Notifier::from_env());
    notifier.ready(
        &service_status(&store)
            .await
            .unwrap_or_else(|| "starting".to_owned()),
    );
    if notifier.is_enabled() {
        parts.spawn(watchdog(notifier.clone(), store.clone(), stop_rx.clone()));
    }
    tracing::info!(
        store_id = %config.store.store_id,
        device_id = %config.store.device_id,
        database = %path.display(),
        "Agent ready."
    );
    on_ready();

    shutdown.await;
    tracing::info!("Shutting down.");
    notifier.stopping();
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(STOP_DEADLINE, async {
        while parts.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            deadline_s = STOP_DEADLINE.as_secs(),
            "Parts still running at the stop deadline were cancelled."
        );
        parts.abort_all();
        while parts.join_next().await.is_some() {}
    }
    drop(agent_events);
    let store = last_reference(store).await?;
    tokio::task::spawn_blocking(move || store.close())
        .await
        .context("the store closing task failed")?;
    tracing::info!("Stopped cleanly.");
    Ok(())
}

/// The store, once every other part has let go of it. A part that has ended can
/// still be dropping its clone on another worker thread (the HTTP server's
/// connection tasks release their router just after the server returns), so this
/// waits a short while for the count to fall before calling it a fault.
async fn last_reference(mut store: Arc<Store>) -> anyhow::Result<Store> {
    let deadline = tokio::time::Instant::now() + RELEASE_GRACE;
    loop {
        match Arc::try_unwrap(store) {
            Ok(store) => return Ok(store),
            Err(shared) if tokio::time::Instant::now() < deadline => {
                store = shared;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(shared) => {
                anyhow::bail!(
                    "the store is still in use at shutdown ({} other references)",
                    Arc::strong_count(&shared) - 1
                )
            }
        }
    }
}

/// How long [`last_reference`] waits for ended parts to drop their store clones.
const RELEASE_GRACE: Duration = Duration::from_secs(1);

/// How often the status line is refreshed when systemd set no watchdog.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// The status line for systemd, from one read of the database; `None` when the
/// read failed.
async fn service_status(store: &Store) -> Option<String> {
    match store.reads().read(crate::store::queries::status_bar).await {
        Ok(bar) => Some(crate::notify::status_line(
            bar.online,
            bar.since_ms,
            bar.events_waiting,
        )),
        Err(e) => {
            tracing::warn!(error = %e, "The status for systemd could not be read.");
            None
        }
    }
}

/// Pings systemd's watchdog at half its interval, but only after the database
/// answered a read: an agent whose store is wedged stops pinging and is restarted.
/// Refreshes the status line on the same beat.
async fn watchdog(
    notifier: Arc<crate::notify::Notifier>,
    store: Arc<Store>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = notifier
        .watchdog()
        .map(|w| (w / 2).max(Duration::from_millis(100)))
        .unwrap_or(STATUS_INTERVAL)
        .min(STATUS_INTERVAL);
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let Some(status) = service_status(&store).await else {
            continue;
        };
        if notifier.watchdog().is_some() {
            notifier.watchdog_ping();
        }
        if status != last {
            notifier.status(&status);
            last = status;
        }
    }
}

/// The screens, the JSON API and the POS intake, as one router.
fn screens_router(
    config: &Config,
    store: Arc<Store>,
    events: broadcast::Sender<kiosk_ui::model::ScreenEvent>,
    inject: Option<tokio::sync::mpsc::Sender<crate::screens::Injected>>,
    counter: crate::counter::CounterOptions,
    stop: watch::Receiver<bool>,
    nearby: tokio::sync::mpsc::Sender<crate::sync::engine::NearbyLookup>,
) -> axum::Router {
    let s = &config.screens;
    let options = kiosk_ui::UiOptions {
        console: s.console,
        kiosk: s.kiosk,
        default_lang: s.language,
        console_idle: Duration::from_secs(s.console_idle_s),
        kiosk_idle: Duration::from_secs(s.kiosk_idle_s),
        scan_injection: s.scan_injection,
        store_id: config.store.store_id.clone(),
        stop: Some(stop),
    };
    let pos = crate::pos_http::routes(crate::pos_http::PosIntake {
        store: store.clone(),
        store_id: config.store.store_id.clone(),
        currency: config.store.currency.clone(),
    });
    let data =
        Arc::new(crate::screens::AgentScreens::new(store, events, inject, counter).with_nearby(nearby));
    kiosk_ui::router(data, options, pos)
}

/// Registers for SIGTERM (systemd's stop) and SIGINT (Ctrl-C) now, and returns a
/// future that completes on the first of them. Registering before the slow parts of
/// start-up means a stop request during start-up is not lost. Call it inside the
/// runtime.
pub fn termination_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "Stop requested."),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "Stop requested."),
        }
    })
}
