//! Network scanners: fixed-mount and presentation scanners that serve their scans
//! as lines on a TCP port.
//!
//! [`run_tcp`] connects to the scanner as a client, cuts what it sends into messages
//! at the terminator, and reports them with the connection's state as
//! [`DeviceEvent`]s. When the scanner closes the connection or cannot be reached it
//! reports `Disconnected` and connects again every
//! [`TcpScannerConfig::reconnect_interval_ms`].
//!
//! **Invariants:** one task per scanner; the socket is read with tokio, so nothing
//! blocks the runtime; events go out on the bounded channel, so a slow consumer
//! slows reading down (TCP flow control then slows the scanner) instead of growing
//! memory.

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::framing::{MAX_MESSAGE_LEN, MessageSplitter};
use super::status::{DeviceEvent, DeviceState};
use super::{ConfigError, check_terminator, default_terminator, deserialize_terminator, emit, frame_event};

/// One network scanner, from the agent's configuration (`[[devices.tcp]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpScannerConfig {
    /// The device's id in events and on the health screen. Required.
    pub device_id: String,
    /// The scanner's `host:port`, e.g. `192.168.1.40:51236`. Required.
    pub address: String,
    /// What ends a message: `"\r"`, `"\n"` or `"\r\n"`. Default: `"\r"`.
    #[serde(default = "default_terminator", deserialize_with = "deserialize_terminator")]
    pub terminator: Vec<u8>,
    /// Milliseconds between attempts to connect again after the connection was
    /// lost or refused. Default: 1000.
    #[serde(default = "default_reconnect_interval_ms")]
    pub reconnect_interval_ms: u64,
    /// Milliseconds one connection attempt may take before it is given up (an
    /// unplugged scanner does not refuse, it stays silent). Default: 5000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_reconnect_interval_ms() -> u64 {
    1000
}

fn default_connect_timeout_ms() -> u64 {
    5000
}

impl TcpScannerConfig {
    /// A configuration for `address` with every default, named `device_id`.
    pub fn new(device_id: impl Into<String>, address: impl Into<String>) -> TcpScannerConfig {
        TcpScannerConfig {
            device_id: device_id.into(),
            address: address.into(),
            terminator: default_terminator(),
            reconnect_interval_ms: default_reconnect_interval_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
        }
    }

    /// Checks the configuration; the error names the device and the bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let error = |key, message: &str| ConfigError {
            device_id: self.device_id.clone(),
            key,
            message: message.to_owned(),
        };
        if self.device_id.trim().is_empty() {
            return Err(error("device_id", "must not be empty"));
        }
        match self.address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => return Err(error("address", "must be host:port, e.g. 192.168.1.40:51236")),
        }
        check_terminator(&self.device_id, &self.terminator)?;
        if self.reconnect_interval_ms == 0 {
            return Err(error("reconnect_interval_ms", "must be more than 0, e.g. 1000"));
        }
        if self.connect_timeout_ms == 0 {
            return Err(error("connect_timeout_ms", "must be more than 0, e.g. 5000"));
        }
        Ok(())
    }
}

/// Reads the network scanner of `config` until `shutdown` completes, sending its
/// messages and state changes on `events`; see the module docs.
///
/// Reports `Connected` on each connection, `Disconnected` when it is lost or cannot
/// be made (once, not at every retry), and `Error` when a message longer than
/// [`MAX_MESSAGE_LEN`] bytes was dropped. Bytes without a terminator when the
/// connection drops are discarded: they are no complete message. Returns when
/// `shutdown` completes or the receiver of `events` is dropped; an invalid
/// configuration is reported as an `Error` status and the function returns.
pub async fn run_tcp(
    config: TcpScannerConfig,
    events: mpsc::Sender<DeviceEvent>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let id = config.device_id.as_str();
    if let Err(error) = config.validate() {
        let state = DeviceState::Error {
            reason: error.to_string(),
        };
        emit(&events, DeviceEvent::status(id, state), &mut shutdown).await;
        return;
    }
    let reconnect_interval = Duration::from_millis(config.reconnect_interval_ms);
    let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
    let mut reported_disconnected = false;

    loop {
        let connecting = tokio::time::timeout(connect_timeout, TcpStream::connect(&config.address));
        let connected = tokio::select! {
            () = &mut shutdown => return,
            connected = connecting => connected,
        };
        let lost = match connected {
            Ok(Ok(mut stream)) => {
                reported_disconnected = false;
                if !emit(
                    &events,
                    DeviceEvent::status(id, DeviceState::Connected),
                    &mut shutdown,
                )
                .await
                {
                    return;
                }
                let mut splitter = MessageSplitter::new(&config.terminator, MAX_MESSAGE_LEN);
                let mut frames = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    let read = tokio::select! {
                        () = &mut shutdown => return,
                        read = stream.read(&mut buf) => read,
                    };
                    match read {
                        Ok(0) => break "the scanner closed the connection".to_owned(),
                        Ok(n) => splitter.push(&buf[..n], &mut frames),
                        Err(error) => break format!("read failed: {error}"),
                    }
                    for frame in frames.drain(..) {
                        if !emit(&events, frame_event(id, frame), &mut shutdown).await {
                            return;
                        }
                    }
                }
            }
            Ok(Err(error)) => format!("cannot connect to {}: {error}", config.address),
            Err(_elapsed) => format!(
                "cannot connect to {}: no answer within {} ms",
                config.address, config.connect_timeout_ms
            ),
        };
        if !reported_disconnected {
            reported_disconnected = true;
            let state = DeviceState::Disconnected { reason: lost };
            if !emit(&events, DeviceEvent::status(id, state), &mut shutdown).await {
                return;
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(reconnect_interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let config: TcpScannerConfig =
            serde_json::from_str(r#"{"device_id": "t1", "address": "10.0.0.5:51236"}"#).unwrap();
        assert_eq!(config, TcpScannerConfig::new("t1", "10.0.0.5:51236"));
        config.validate().unwrap();
        let error = serde_json::from_str::<TcpScannerConfig>(
            r#"{"device_id": "t1", "address": "10.0.0.5:1", "port": 1}"#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("port"), "{error}");
    }

    #[test]
    fn validate_names_the_bad_key() {
        /// Makes one key of a valid configuration invalid.
        type Spoil = fn(&mut TcpScannerConfig);

        let cases: [(&str, Spoil); 6] = [
            ("device_id", |c| c.device_id.clear()),
            ("address", |c| c.address = "10.0.0.5".into()),
            ("address", |c| c.address = "10.0.0.5:http".into()),
            ("terminator", |c| c.terminator = Vec::new()),
            ("reconnect_interval_ms", |c| c.reconnect_interval_ms = 0),
            ("connect_timeout_ms", |c| c.connect_timeout_ms = 0),
        ];
        for (key, spoil) in cases {
            let mut config = TcpScannerConfig::new("t1", "10.0.0.5:51236");
            spoil(&mut config);
            assert_eq!(config.validate().unwrap_err().key, key);
        }
    }
}
