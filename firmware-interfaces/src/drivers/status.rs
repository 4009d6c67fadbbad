//! What drivers report: a device's connection state and its messages.
//!
//! The states follow UnifiedPOS device status (online, off, offline, failure) as
//! far as a store agent needs them. Every event names its device, so all drivers
//! can share one bounded channel to the agent.
//!
//! **Invariant:** the `Debug` of an event never shows message bytes (a swipe holds
//! a card number); only their length.

use std::fmt;

use serde::Serialize;

/// The connection state of a device, as shown on the health screen.
///
/// Serialized with a `state` tag: `{"state": "disconnected", "reason": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeviceState {
    /// The device is open and its messages are being read.
    Connected,
    /// The device is not there (unplugged, powered off, not yet reachable); the
    /// driver keeps trying to reopen it.
    Disconnected {
        /// Why, for a person: the OS error or what was observed.
        reason: String,
    },
    /// The device is there but something it sent had to be dropped, or the driver
    /// itself failed; the connection state is unchanged.
    Error {
        /// What went wrong, for a person; never message content.
        reason: String,
    },
}

/// One thing a driver reports about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvent {
    /// The device's id from the configuration.
    pub device_id: String,
    /// What happened.
    pub kind: DeviceEventKind,
}

/// What a [`DeviceEvent`] reports.
#[derive(Clone, PartialEq, Eq)]
pub enum DeviceEventKind {
    /// The device's state changed.
    Status(DeviceState),
    /// One complete message (a scan line or a swipe), terminator removed; or, for a
    /// device read in raw framing (a printer tap), one read of the byte stream.
    Data(Vec<u8>),
}

/// Shows only the length of a message: it may hold a card number.
impl fmt::Debug for DeviceEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceEventKind::Status(state) => f.debug_tuple("Status").field(state).finish(),
            DeviceEventKind::Data(bytes) => write!(f, "Data(<{} bytes>)", bytes.len()),
        }
    }
}

impl DeviceEvent {
    /// A state change of `device_id`.
    pub fn status(device_id: &str, state: DeviceState) -> DeviceEvent {
        DeviceEvent {
            device_id: device_id.to_owned(),
            kind: DeviceEventKind::Status(state),
        }
    }

    /// A message from `device_id`.
    pub fn data(device_id: &str, message: Vec<u8>) -> DeviceEvent {
        DeviceEvent {
            device_id: device_id.to_owned(),
            kind: DeviceEventKind::Data(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_serializes_with_a_snake_case_tag() {
        let json = serde_json::to_string(&DeviceState::Disconnected {
            reason: "gone".into(),
        })
        .unwrap();
        assert_eq!(json, r#"{"state":"disconnected","reason":"gone"}"#);
        let json = serde_json::to_string(&DeviceState::Connected).unwrap();
        assert_eq!(json, r#"{"state":"connected"}"#);
    }

    #[test]
    fn debug_hides_message_bytes() {
        let event = DeviceEvent::data("msr", b"%B4111111111111111^X/Y^2812?".to_vec());
        let shown = format!("{event:?}");
        assert!(!shown.contains("4111"), "{shown}");
        assert!(shown.contains("28 bytes"), "{shown}");
    }
}
