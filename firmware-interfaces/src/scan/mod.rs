//! Barcode scan decoding: what a scanner sent, as typed values.
//!
//! A scan is decoded in layers, each usable on its own:
//!
//! * [`symbology`] — the AIM identifier (`]E0`, `]C1`, `]Q3`…) at the start;
//! * [`product`] and [`upc`] — GTIN-8/12/13/14 and UPC-A/UPC-E with check digits;
//! * [`rcn`] — restricted-circulation and variable-measure (price/weight) numbers;
//! * [`ai_table`], [`element`] — GS1 element strings and messages, GS-separated or
//!   in `(AI)data` form;
//! * [`digital_link`] — GS1 Digital Link URIs;
//! * [`parse_all`] — every reading of one scan side by side (GTIN, UPC, SSCC, GS1
//!   message, Digital Link), each with its error;
//! * [`classify`] — [`decode`]: one answer for the agent, a [`Scan`] with its
//!   [`ScanKind`] (product, loyalty card, order code, …).
//!
//! **Invariants:** every function here is pure (the only outside input is the
//! clock's year, and only when [`ScanConfig::reference_year`] is unset), never
//! panics, and answers bad input with a [`ScanError`] that says why. A scanned
//! payment-card number never leaves [`decode`]: the [`Scan`] then holds no digit
//! of it.

pub mod ai_table;
pub mod classify;
pub mod digital_link;
pub mod element;
pub mod parse_all;
pub mod product;
pub mod rcn;
pub mod symbology;
pub mod upc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use classify::{Ai, Scan, ScanKind, decode};
pub use rcn::RcnRegion;

/// Options of scan decoding, from the agent's configuration (`[scan]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// Rules that tell loyalty numbers from payment-card numbers. Default: the
    /// card module's defaults (loyalty numbers start with 7 or 9).
    pub card_rules: crate::card::CardRules,
    /// Characters that stand for FNC1 between GS1 element strings. Scanners send
    /// GS (0x1D); some are configured to send another character. Default: `["\u001d"]`.
    pub separator_chars: Vec<char>,
    /// The region whose variable-measure rules apply to EAN-13s starting 20–29
    /// (`dk ee fi de gb lv lt no se`). Default: none (prices and weights are not
    /// decoded).
    pub rcn_region: Option<RcnRegion>,
    /// Whether the price/weight check digit of a variable-measure code is verified
    /// (regions that have one: de, gb). Default: true.
    pub rcn_verify_variable_measure: bool,
    /// Whether GS1 dates must be real dates. Default: true.
    pub verify_dates: bool,
    /// The year the GS1 two-digit-year window is centred on. Default: none, the
    /// system clock's year. Tests set it.
    pub reference_year: Option<i32>,
    /// A prefix the scanner is configured to add, removed before decoding.
    /// Default: empty.
    pub strip_prefix: String,
    /// A suffix the scanner is configured to add (often `\r` or `\n`), removed
    /// before decoding. Default: empty (surrounding whitespace is trimmed anyway).
    pub strip_suffix: String,
    /// Prefixes of BOPIS order codes (e.g. the pickup QR's URL
    /// `https://shop.example/pickup/`). Default: none.
    pub order_code_prefixes: Vec<String>,
    /// Prefixes of receipt barcodes (for BORIS returns). Default: none.
    pub receipt_code_prefixes: Vec<String>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            card_rules: crate::card::CardRules::default(),
            separator_chars: vec![element::GS],
            rcn_region: None,
            rcn_verify_variable_measure: true,
            verify_dates: true,
            reference_year: None,
            strip_prefix: String::new(),
            strip_suffix: String::new(),
            order_code_prefixes: Vec::new(),
            receipt_code_prefixes: Vec::new(),
        }
    }
}

impl ScanConfig {
    /// Checks the configuration; the error names the bad key.
    pub fn validate(&self) -> Result<(), String> {
        if self.separator_chars.is_empty() {
            return Err("scan.separator_chars: at least one separator is needed".into());
        }
        if let Some(c) = self.separator_chars.iter().find(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "scan.separator_chars: {c:?} can occur in GS1 data; use GS or a symbol"
            ));
        }
        if self.order_code_prefixes.iter().any(String::is_empty) {
            return Err("scan.order_code_prefixes: empty prefix matches everything".into());
        }
        if self.receipt_code_prefixes.iter().any(String::is_empty) {
            return Err("scan.receipt_code_prefixes: empty prefix matches everything".into());
        }
        Ok(())
    }
}

/// Why a scan, or part of it, was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScanError {
    /// A character other than 0–9 where only digits may be.
    #[error("{what} must be digits only: found {found:?} at position {position}")]
    NotNumeric {
        /// What was being read.
        what: String,
        /// 1-based position.
        position: usize,
        /// The character found.
        found: char,
    },
    /// Wrong number of digits.
    #[error("{what} must have {expected} digits, got {found}")]
    BadLength {
        /// What was being read.
        what: String,
        /// The lengths allowed.
        expected: String,
        /// The length found.
        found: usize,
    },
    /// A check digit does not match.
    #[error("bad {what} check digit at position {position}: found {found}, expected {expected}")]
    BadCheckDigit {
        /// Which check digit (GTIN, UPC, SSCC, GLN, price/weight).
        what: String,
        /// 1-based position of the check digit.
        position: usize,
        /// The digit in the input.
        found: u8,
        /// The digit the algorithm gives.
        expected: u8,
    },
    /// A GTIN does not fit the width asked for.
    #[error("GTIN {value} does not fit in {width} digits")]
    DoesNotFit {
        /// The GTIN.
        value: String,
        /// The width asked for.
        width: usize,
    },
    /// UPC-specific problem (number system, suppression).
    #[error("{0}")]
    Upc(String),
    /// The AIM symbology identifier is malformed.
    #[error("symbology identifier: {0}")]
    Symbology(String),
    /// No known AI at this point of a GS1 message.
    #[error("unknown AI at {at:?} (position {position})")]
    UnknownAi {
        /// The first characters where an AI was expected.
        at: String,
        /// 1-based character position in the data.
        position: usize,
    },
    /// The data does not fit its AI's format.
    #[error("value for AI {ai}: {reason}")]
    BadValue {
        /// The AI.
        ai: String,
        /// What is wrong.
        reason: String,
    },
    /// A date AI holds no real date.
    #[error("date for AI {ai}: {reason}")]
    BadDate {
        /// The AI.
        ai: String,
        /// What is wrong.
        reason: String,
    },
    /// A GS1 message without any element string.
    #[error("GS1 message has no element strings")]
    NoElements,
    /// The `(AI)data` form is malformed.
    #[error("GS1 HRI: {0}")]
    Hri(String),
    /// A Digital Link URI problem.
    #[error("GS1 Digital Link: {0}")]
    DigitalLink(String),
    /// A Restricted Circulation Number problem.
    #[error("RCN: {0}")]
    Rcn(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_with_defaults_and_refuses_unknown_keys() {
        let c: ScanConfig =
            serde_json::from_str(r#"{"rcn_region": "se", "separator_chars": ["|"]}"#).unwrap();
        assert_eq!(c.rcn_region, Some(RcnRegion::Se));
        assert!(c.rcn_verify_variable_measure && c.verify_dates);
        assert_eq!(c.validate(), Ok(()));
        assert!(serde_json::from_str::<ScanConfig>(r#"{"rcn_regio": "se"}"#).is_err());
        assert!(serde_json::from_str::<ScanConfig>(r#"{"rcn_region": "foo"}"#).is_err());
        assert!(serde_json::from_str::<ScanConfig>(r#"{"separator_chars": ["--"]}"#).is_err());
        let bad = ScanConfig {
            separator_chars: vec!['A'],
            ..ScanConfig::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("scan.separator_chars"));
        assert_eq!(ScanConfig::default().validate(), Ok(()));
    }
}
