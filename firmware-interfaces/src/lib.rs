//! Device-facing code of store-agent: bytes in, typed events out.
//!
//! **Invariant:** this crate knows nothing of SQLite, MQTT or HTTP. It turns what
//! scanners, card readers and POS systems send into typed values, and typed values
//! into what displays and printers expect. The agent wires those values to its store
//! and its screens.
//!
//! * [`gtin`] — GTIN check digits and forms.
//! * [`card`] — the Luhn check, the payment-card guard, loyalty-number rules.
//! * [`scan`] — barcode scan decoding: AIM symbology identifiers, EAN/UPC, GS1
//!   element strings and Digital Link URIs, variable-measure codes, classification.
//! * [`msr`] — magnetic-stripe tracks 1 and 2 and the payment-card guard.
//! * [`poslog`] — ARTS POSLog transactions.
//! * [`escpos`] — the ESC/POS journal tap, line displays and receipt printers.
//! * [`drivers`] — serial, TCP and keyboard-wedge device drivers: messages and
//!   connection state as [`drivers::status::DeviceEvent`]s.

pub mod card;
pub mod drivers;
pub mod escpos;
pub mod gtin;
pub mod msr;
pub mod poslog;
pub mod scan;
