//! Device-facing code of store-agent: bytes in, typed events out.
//!
//! **Invariant:** this crate knows nothing of SQLite, MQTT or HTTP. It turns what
//! scanners, card readers and POS systems send into typed values, and typed values
//! into what displays and printers expect. The agent wires those values to its store
//! and its screens.
//!
//! What is here today: GTIN check digits, used by the agent's sample-data generator
//! and, later, by scan decoding.

pub mod gtin;
