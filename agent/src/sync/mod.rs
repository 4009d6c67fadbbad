//! Cloud sync over MQTT: the protocol, the client task, uplink and downlink.

pub mod protocol;
pub mod tls;
