//! The systemd service manager protocol (`sd_notify`), for `Type=notify` units.
//!
//! systemd passes a datagram socket in `NOTIFY_SOCKET` (a path, or `@name` in the
//! abstract namespace) and, with `WatchdogSec=`, the interval in `WATCHDOG_USEC`.
//! The agent sends:
//!
//! * `READY=1` once the database is open and the HTTP server is bound, so units
//!   ordered after it (the kiosk browser) start against a working page;
//! * `STATUS=…` with the cloud connection and the outbox depth, shown by
//!   `systemctl status store-agent`;
//! * `WATCHDOG=1` at half the interval, and only after a read of the database
//!   answered: a wedged agent stops pinging and systemd restarts it;
//! * `STOPPING=1` when a stop begins.
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every call does nothing. Sends never block:
//! the socket is non-blocking and a failed send is logged once and dropped.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A connection to the service manager, or nothing outside systemd.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    warned: AtomicBool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            match connect(&path) {
                Ok(pair) => Some(pair),
                Err(e) => {
                    tracing::warn!(socket = %path, error = %e, "Cannot use the systemd notification socket.");
                    None
                }
            }
        });
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Notifier {
            socket,
            watchdog,
            warned: AtomicBool::new(false),
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            socket: None,
            watchdog: None,
            warned: AtomicBool::new(false),
        }
    }

    /// The watchdog interval systemd expects pings within, if it set one.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Whether a service manager is listening.
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends one notification (newline-separated `KEY=value` assignments).
    pub fn send(&self, state: &str) {
        let Some((socket, addr)) = &self.socket else {
            return;
        };
        if let Err(e) = socket.send_to_addr(state.as_bytes(), addr)
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(error = %e, "A systemd notification could not be sent.");
        }
    }

    /// `READY=1` with a first status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=…`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// `WATCHDOG=1`.
    pub fn watchdog_ping(&self) {
        self.send("WATCHDOG=1");
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

fn connect(path: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())?
    } else if path.starts_with('/') {
        SocketAddr::from_pathname(path)?
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor @abstract",
        ));
    };
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    Ok((socket, addr))
}

/// The watchdog interval, when `WATCHDOG_USEC` is set and `WATCHDOG_PID` (if set)
/// names this process.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    Some(Duration::from_micros(usec))
}

/// A status line without newlines (each line of a notification is one assignment).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The status line: "online, 0 events waiting" or
/// "offline since 10:42, 37 events waiting" (local time of the device).
pub fn status_line(online: bool, since_ms: Option<i64>, events_waiting: i64) -> String {
    let waiting = match events_waiting {
        1 => "1 event waiting".to_owned(),
        n => format!("{n} events waiting"),
    };
    match (online, since_ms) {
        (true, _) => format!("online, {waiting}"),
        (false, Some(ms)) => format!("offline since {}, {waiting}", local_hh_mm(ms)),
        (false, None) => format!("offline, {waiting}"),
    }
}

/// `HH:MM` in the device's local time zone (`/etc/localtime` or `TZ`).
fn local_hh_mm(unix_ms: i64) -> String {
    let secs: libc::time_t = (unix_ms.div_euclid(1000)) as libc::time_t;
    // SAFETY: `tm` is plain data; localtime_r writes it and reads only `secs` and
    // the time zone, and the agent never changes TZ while running.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let converted = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if converted {
        format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
    } else {
        "?".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_needs_a_positive_value_and_our_pid() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn status_lines_say_connection_and_backlog() {
        assert_eq!(status_line(true, Some(0), 0), "online, 0 events waiting");
        assert_eq!(status_line(true, None, 1), "online, 1 event waiting");
        assert_eq!(status_line(false, None, 3), "offline, 3 events waiting");
        let line = status_line(false, Some(1_700_000_000_000), 37);
        let re_ok = line.starts_with("offline since ")
            && line.ends_with(", 37 events waiting")
            && line["offline since ".len().."offline since ".len() + 5]
                .chars()
                .enumerate()
                .all(|(i, c)| if i == 2 { c == ':' } else { c.is_ascii_digit() });
        assert!(re_ok, "{line}");
    }

    #[test]
    fn notifications_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let (socket, addr) = connect(path.to_str().unwrap()).unwrap();
        let n = Notifier {
            socket: Some((socket, addr)),
            watchdog: None,
            warned: AtomicBool::new(false),
        };
        n.ready("online, 0 events waiting");
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=online, 0 events waiting");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("store-agent-test-{}", std::process::id());
        let abstract_listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let (socket, addr) = connect(&format!("@{name}")).unwrap();
        let n = Notifier {
            socket: Some((socket, addr)),
            watchdog: None,
            warned: AtomicBool::new(false),
        };
        n.status("a\nb");
        let len = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=a b");
    }

    #[test]
    fn a_relative_socket_path_is_refused_and_a_disabled_notifier_sends_nothing() {
        assert!(connect("notify").is_err());
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        n.ready("x");
        n.watchdog_ping();
    }
}
