//! [`decode`]: one scan in, one [`Scan`] out — what the agent shows and records.
//!
//! The order of the tests is the policy:
//!
//! 1. configured prefix/suffix stripped, whitespace trimmed, AIM identifier read;
//! 2. card-number-like data (digits, optionally grouped by spaces or dashes) in a
//!    payment range (`CardRules`) that is no product barcode is rejected and
//!    **dropped** at once — a valid GTIN stays a product even when it starts with
//!    a payment-range digit (`4006381333931` is an EAN-13), and so does a valid GS1
//!    message read from a GS1 symbology;
//! 3. configured order-code and receipt-code prefixes (BOPIS pickup QR, receipts);
//! 4. URIs: a GS1 Digital Link is a product, any other URI is unknown;
//! 5. GS1 messages (`(AI)` form, a GS1 symbology, or a separator in the data);
//! 6. digits: GTIN (UPC-E first under `]E0`), UPC-E, a GS1 message with a GTIN;
//!    then the loyalty rules; what looked like a GTIN but failed is invalid, with
//!    the reason.
//!
//! **Invariant (PCI DSS):** a [`Scan`] of kind [`ScanKind::PaymentCardRejected`]
//! holds no digit of the scanned number: `raw`, `symbology`, `gtin`, `gtin14` and
//! `ais` are empty and the message names no digit.

use serde::Serialize;

use super::element::{self, Gs1Message};

use super::product::{self, Gtin};
use super::rcn::Rcn;
use super::symbology;
use super::upc;
use super::{ScanConfig, ScanError, digital_link};
use crate::card::NumberClass;

/// What a scan is, for the screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanKind {
    /// A trade item: a valid GTIN from EAN/UPC/ITF, or AI (01)/(02) in a GS1
    /// message or Digital Link.
    Product,
    /// A loyalty-card number by the store's card rules.
    LoyaltyCard,
    /// A payment-card number: dropped, nothing of it kept.
    PaymentCardRejected,
    /// A BOPIS order code (configured prefix).
    OrderCode,
    /// A receipt code (configured prefix).
    ReceiptCode,
    /// Something else.
    Unknown,
    /// Looked like a GTIN or GS1 data but failed validation; `error` says why.
    Invalid,
}

/// One AI and its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ai {
    /// The Application Identifier, e.g. `17`.
    pub ai: String,
    /// Its data, e.g. `271231`.
    pub value: String,
}

/// The decoded scan (printed by `store-agent scan decode` as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scan {
    /// The scan after prefix/suffix stripping and trimming, with its AIM identifier
    /// (empty for a rejected payment card).
    pub raw: String,
    /// The AIM symbology identifier, e.g. `]E0`.
    pub symbology: Option<String>,
    /// What the scan is.
    pub kind: ScanKind,
    /// The GTIN as the barcode carries it (8, 12, 13 or 14 digits; a UPC-E gives its
    /// 12-digit UPC-A).
    pub gtin: Option<String>,
    /// The GTIN on 14 digits, the form the catalogue is keyed by.
    pub gtin14: Option<String>,
    /// The GS1 element strings, in order.
    pub ais: Vec<Ai>,
    /// Price, weight or count of a variable-measure item.
    pub variable_measure: Option<Rcn>,
    /// Why the scan is invalid or was rejected.
    pub error: Option<String>,
}

impl Scan {
    fn new(raw: &str, symbology: Option<String>, kind: ScanKind) -> Scan {
        Scan {
            raw: raw.into(),
            symbology,
            kind,
            gtin: None,
            gtin14: None,
            ais: Vec::new(),
            variable_measure: None,
            error: None,
        }
    }

    fn invalid(raw: &str, symbology: Option<String>, error: &ScanError) -> Scan {
        Scan {
            error: Some(error.to_string()),
            ..Scan::new(raw, symbology, ScanKind::Invalid)
        }
    }

    fn with_gtin(mut self, gtin: &Gtin, encoded: String) -> Scan {
        self.gtin = Some(encoded);
        self.gtin14 = Some(gtin.as_gtin_14());
        self.variable_measure = gtin.rcn.clone().filter(Rcn::has_variable_measure);
        self
    }

    /// The scanned data without its AIM symbology identifier, trimmed: a loyalty
    /// number, a pickup code or a receipt code as printed.
    pub fn data(&self) -> &str {
        self.raw
            .strip_prefix(self.symbology.as_deref().unwrap_or(""))
            .unwrap_or(&self.raw)
            .trim()
    }

    /// The text that decodes to the same product again: the 14-digit GTIN, or the
    /// `(AI)data` form of the element strings.
    pub fn canonical_form(&self) -> Option<String> {
        if !self.ais.is_empty() {
            return Some(
                self.ais
                    .iter()
                    .map(|a| format!("({}){}", a.ai, a.value))
                    .collect(),
            );
        }
        self.gtin14.clone()
    }
}

/// A message without a digit: what a rejected payment card leaves behind.
const PAYMENT_REJECTED: &str = "a payment card number was scanned; it was dropped and is not kept anywhere";

fn rejected_payment_card() -> Scan {
    Scan {
        error: Some(PAYMENT_REJECTED.into()),
        ..Scan::new("", None, ScanKind::PaymentCardRejected)
    }
}

/// The digits of `s` when it is a card-number-like string (digits with optional
/// spaces or dashes between groups), else `None`.
fn card_digits(s: &str) -> Option<String> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit() || c == ' ' || c == '-') {
        return None;
    }
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

fn message_scan(raw: &str, sym: Option<String>, message: &Gs1Message) -> Scan {
    let ais = message
        .element_strings
        .iter()
        .map(|e| Ai {
            ai: e.ai.clone(),
            value: e.value.clone(),
        })
        .collect();
    if let Some(err) = message.element_strings.iter().find_map(|e| e.check_error()) {
        return Scan {
            ais,
            error: Some(err.to_string()),
            ..Scan::new(raw, sym, ScanKind::Invalid)
        };
    }
    let mut scan = Scan {
        ais,
        ..Scan::new(raw, sym, ScanKind::Unknown)
    };
    if let Some(gtin) = message.gtin_element().and_then(|e| e.gtin.as_ref()) {
        scan = scan.with_gtin(gtin, gtin.value.clone());
        scan.kind = ScanKind::Product;
    }
    scan
}

fn starts_with_any(s: &str, prefixes: &[String]) -> bool {
    prefixes
        .iter()
        .any(|p| !p.is_empty() && s.starts_with(p.as_str()))
}

/// Decodes one scan. Never panics; bad data gives kind `invalid` with the reason.
pub fn decode(raw: &str, config: &ScanConfig) -> Scan {
    let mut text = raw.trim();
    if !config.strip_prefix.is_empty() {
        text = text.strip_prefix(config.strip_prefix.as_str()).unwrap_or(text);
    }
    if !config.strip_suffix.is_empty() {
        text = text.strip_suffix(config.strip_suffix.as_str()).unwrap_or(text);
    }
    let text = text.trim();
    let (sym, data) = match symbology::extract(text) {
        Ok(id) if text.starts_with(']') => {
            let rest = &text[id.value.len()..];
            (Some(id), rest)
        }
        _ => (None, text),
    };
    let caps = sym.as_ref().and_then(|s| s.capabilities());
    let sym_text = sym.as_ref().map(|s| s.value.clone());

    // A payment-range number that is no product is dropped before anything else
    // can copy it into the output.
    if let Some(digits) = card_digits(data)
        && config.card_rules.classify(&digits) == NumberClass::Payment
        && !(digits == data
            && is_product_number(data, caps.is_some_and(|c| c.may_contain_gs1_message), config))
    {
        return rejected_payment_card();
    }

    if data.is_empty() {
        return Scan::new(text, sym_text, ScanKind::Unknown);
    }
    if starts_with_any(data, &config.order_code_prefixes) {
        return Scan::new(text, sym_text, ScanKind::OrderCode);
    }
    if starts_with_any(data, &config.receipt_code_prefixes) {
        return Scan::new(text, sym_text, ScanKind::ReceiptCode);
    }

    let lower = data.get(..8).unwrap_or(data).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return match digital_link::parse(data, config) {
            Ok(m) => message_scan(text, sym_text, &m),
            Err(ScanError::DigitalLink(_)) => Scan::new(text, sym_text, ScanKind::Unknown),
            Err(e) => Scan::invalid(text, sym_text, &e),
        };
    }

    let gs1_symbology = caps.is_some_and(|c| c.may_contain_gs1_message);
    let has_separator = data.contains(|c| config.separator_chars.contains(&c));
    if data.starts_with('(') {
        return match element::parse_hri(data, config) {
            Ok(m) => message_scan(text, sym_text, &m),
            Err(e) => Scan::invalid(text, sym_text, &e),
        };
    }
    if gs1_symbology || has_separator {
        return match element::parse(data, config) {
            Ok(m) => message_scan(text, sym_text, &m),
            Err(e) => Scan::invalid(text, sym_text, &e),
        };
    }

    if data.bytes().all(|b| b.is_ascii_digit()) {
        return decode_digits(text, sym_text, data, config);
    }
    Scan::new(text, sym_text, ScanKind::Unknown)
}

/// Whether all-digit `data` is a product barcode: a GTIN with a valid check digit,
/// a UPC-E, or a GS1 message with a valid GTIN — or, when the symbology says the
/// data is a GS1 message, any valid GS1 message.
fn is_product_number(data: &str, gs1_symbology: bool, config: &ScanConfig) -> bool {
    if matches!(data.len(), 8 | 12 | 13 | 14) && crate::gtin::validate(data).is_ok() {
        return true;
    }
    if matches!(data.len(), 6..=8) && upc::parse(data).is_ok() {
        return true;
    }
    match element::parse(data, config) {
        Ok(m) => gs1_symbology || m.gtin_element().is_some_and(|e| e.gtin.is_some()),
        Err(_) => false,
    }
}

fn upc_e_product(text: &str, sym: Option<String>, data: &str, config: &ScanConfig) -> Option<Scan> {
    if !matches!(data.len(), 6..=8) {
        return None;
    }
    let upc_a = upc::parse(data).ok()?.as_upc_a();
    let gtin = product::parse(&upc_a, config).ok()?;
    Some(Scan::new(text, sym, ScanKind::Product).with_gtin(&gtin, upc_a))
}

fn decode_digits(text: &str, sym: Option<String>, data: &str, config: &ScanConfig) -> Scan {
    // `]E0` is also what UPC-E scans carry; an 8-digit UPC-E may pass the EAN-8
    // check by chance, so the symbology decides.
    if sym.as_deref() == Some("]E0")
        && let Some(scan) = upc_e_product(text, sym.clone(), data, config)
    {
        return scan;
    }
    let gtin_result = if matches!(data.len(), 8 | 12 | 13 | 14) {
        Some(product::parse(data, config))
    } else {
        None
    };
    match &gtin_result {
        Some(Ok(g)) => {
            // Restricted-circulation numbers are the store's own: a loyalty card may
            // use them, and the retailer's loyalty prefixes then decide.
            let rules = &config.card_rules;
            let own_loyalty = g.rcn.as_ref().is_some_and(|r| !r.has_variable_measure())
                && !rules.loyalty_prefixes.is_empty()
                && rules.classify(data) == NumberClass::Loyalty;
            if own_loyalty {
                return Scan::new(text, sym, ScanKind::LoyaltyCard);
            }
            return Scan::new(text, sym, ScanKind::Product).with_gtin(g, data.into());
        }
        // A valid GTIN whose variable measure fails its check digit is invalid.
        Some(Err(e @ ScanError::BadCheckDigit { what, .. })) if what == "price/weight" => {
            return Scan::invalid(text, sym, e);
        }
        _ => {}
    }
    if let Some(scan) = upc_e_product(text, sym.clone(), data, config) {
        return scan;
    }
    let message = element::parse(data, config).ok();
    if let Some(m) = &message
        && m.gtin_element().is_some()
    {
        return message_scan(text, sym, m);
    }
    match config.card_rules.classify(data) {
        NumberClass::Loyalty => return Scan::new(text, sym, ScanKind::LoyaltyCard),
        NumberClass::Payment => return rejected_payment_card(),
        NumberClass::Other => {}
    }
    if let Some(Err(e)) = gtin_result {
        return Scan::invalid(text, sym, &e);
    }
    match &message {
        Some(m) => message_scan(text, sym, m),
        None => Scan::new(text, sym, ScanKind::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ScanConfig {
        ScanConfig::default()
    }

    #[test]
    fn ean13_starting_with_4_is_a_product() {
        let s = decode("4006381333931", &cfg());
        assert_eq!(s.kind, ScanKind::Product);
        assert_eq!(s.gtin14.as_deref(), Some("04006381333931"));
    }

    #[test]
    fn payment_card_is_rejected_without_a_digit() {
        for raw in ["4111111111111111", "]E04111111111111111", "4111 1111 1111 1111"] {
            let s = decode(raw, &cfg());
            assert_eq!(s.kind, ScanKind::PaymentCardRejected, "{raw}");
            let json = serde_json::to_string(&s).unwrap();
            assert!(!json.contains("4111"), "{json}");
            // The only digits allowed are those of the field name `gtin14`.
            let without_key = json.replace("\"gtin14\"", "");
            assert!(!without_key.chars().any(|c| c.is_ascii_digit()), "{json}");
        }
    }

    #[test]
    fn loyalty_order_receipt_unknown() {
        let c = ScanConfig {
            order_code_prefixes: vec!["https://shop.example/pickup/".into()],
            receipt_code_prefixes: vec!["RCPT".into()],
            ..cfg()
        };
        assert_eq!(decode("9800000000000018", &c).kind, ScanKind::LoyaltyCard);
        assert_eq!(
            decode("]Q1https://shop.example/pickup/A123", &c).kind,
            ScanKind::OrderCode
        );
        assert_eq!(decode("RCPT-2026-0001", &c).kind, ScanKind::ReceiptCode);
        assert_eq!(decode("hello", &c).kind, ScanKind::Unknown);
        assert_eq!(decode("https://example.com/", &c).kind, ScanKind::Unknown);
        assert_eq!(decode("", &c).kind, ScanKind::Unknown);
    }

    #[test]
    fn gs1_messages_and_links_are_products() {
        let s = decode("]C1010590123412345715210526\u{1d}10ABC", &cfg());
        assert_eq!(s.kind, ScanKind::Product);
        assert_eq!(s.ais.len(), 3);
        let s = decode("https://example.com/01/09520123456788/10/ABC?17=271231", &cfg());
        assert_eq!(s.kind, ScanKind::Product);
        assert_eq!(s.ais[2].ai, "17");
        let s = decode("(01)09520123456788(17)271231", &cfg());
        assert_eq!(s.kind, ScanKind::Product);
    }

    #[test]
    fn invalid_scans_say_why() {
        let s = decode("0614141000037", &cfg());
        assert_eq!(s.kind, ScanKind::Invalid);
        assert!(s.error.unwrap().contains("position 13"));
        // Starting with 1-6 and failing the GTIN check, it is a payment-range number.
        let s = decode("5901234123458", &cfg());
        assert_eq!(s.kind, ScanKind::PaymentCardRejected);
        let s = decode("]C10105901234123458", &cfg());
        assert_eq!(s.kind, ScanKind::Invalid);
        let s = decode("]C19912", &cfg());
        assert_eq!(s.kind, ScanKind::Unknown);
        let s = decode("]C1ABC", &cfg());
        assert_eq!(s.kind, ScanKind::Invalid);
    }

    #[test]
    fn variable_measure_and_upc_e() {
        let c = ScanConfig {
            rcn_region: Some(super::super::RcnRegion::No),
            ..cfg()
        };
        let s = decode("2302148210869", &c);
        assert_eq!(s.kind, ScanKind::Product);
        assert_eq!(s.variable_measure.unwrap().weight.as_deref(), Some("1.086"));
        let s = decode("]E004252614", &cfg());
        assert_eq!(s.gtin.as_deref(), Some("042100005264"));
    }

    #[test]
    fn card_rules_meet_barcodes() {
        // A de price code whose price check digit fails starts with 2 (a payment
        // range) but is a GTIN: invalid, not a card.
        let de = ScanConfig {
            rcn_region: Some(super::super::RcnRegion::De),
            ..cfg()
        };
        assert_eq!(decode("2511118000120", &de).kind, ScanKind::Invalid);
        // A GS1-128 label without a GTIN that starts with 1 is no card.
        let s = decode("]C115210526100329", &cfg());
        assert_eq!((s.kind, s.ais.len()), (ScanKind::Unknown, 2));
        // Without a symbology, a payment-range number stays a payment number.
        assert_eq!(
            decode("378282246310005", &cfg()).kind,
            ScanKind::PaymentCardRejected
        );
        // The store's own RCN loyalty cards, when configured.
        let own = ScanConfig {
            card_rules: crate::card::CardRules {
                allowed_payment_prefixes: vec!["29".into()],
                loyalty_prefixes: vec!["29".into()],
                ..crate::card::CardRules::default()
            },
            ..cfg()
        };
        let card = crate::gtin::with_check_digit("290000012345").unwrap();
        assert_eq!(decode(&card, &own).kind, ScanKind::LoyaltyCard);
        assert_eq!(decode(&card, &cfg()).kind, ScanKind::Product);
    }

    #[test]
    fn strips_configured_prefix_and_suffix() {
        let c = ScanConfig {
            strip_prefix: "@".into(),
            strip_suffix: "#".into(),
            ..cfg()
        };
        assert_eq!(decode("@4006381333931#\r\n", &c).kind, ScanKind::Product);
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics_and_is_stable(s in "(\\PC|\u{1d}){0,40}") {
            let c = ScanConfig { reference_year: Some(2026), ..cfg() };
            let a = decode(&s, &c);
            proptest::prop_assert_eq!(&a, &decode(&s, &c));
            if a.kind == ScanKind::Product
                && let Some(form) = a.canonical_form()
            {
                let b = decode(&form, &c);
                proptest::prop_assert_eq!(b.kind, ScanKind::Product);
                proptest::prop_assert_eq!(&b.gtin14, &a.gtin14);
                if !a.ais.is_empty() {
                    proptest::prop_assert_eq!(&b.ais, &a.ais);
                }
            }
        }

        #[test]
        fn decode_never_panics_on_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = decode(&s, &cfg());
            let _ = super::super::parse_all::parse_all(&s, &cfg());
        }

        #[test]
        fn digit_strings_are_stable_and_never_leak_a_card(digits in "[0-9]{1,20}") {
            let c = ScanConfig { reference_year: Some(2026), ..cfg() };
            let a = decode(&digits, &c);
            proptest::prop_assert_eq!(&a, &decode(&digits, &c));
            if a.kind == ScanKind::PaymentCardRejected {
                proptest::prop_assert!(a.raw.is_empty() && a.gtin.is_none() && a.ais.is_empty());
            }
            if a.kind == ScanKind::Product {
                let form = a.canonical_form().unwrap_or_default();
                proptest::prop_assert_eq!(decode(&form, &c).gtin14, a.gtin14);
            }
        }

        #[test]
        fn generated_gs1_messages_decode_and_round_trip(
            payload in "[0-9]{13}",
            batch in "[A-Za-z0-9]{1,20}",
            yy in 0u32..100, mm in 1u32..13, dd in 1u32..29,
            batch_first in proptest::bool::ANY,
        ) {
            let gtin = crate::gtin::with_check_digit(&payload).unwrap();
            let date = format!("{yy:02}{mm:02}{dd:02}");
            let raw = if batch_first {
                format!("]C101{gtin}10{batch}\u{1d}17{date}")
            } else {
                format!("]C101{gtin}17{date}10{batch}")
            };
            let c = ScanConfig { reference_year: Some(2026), ..cfg() };
            let a = decode(&raw, &c);
            proptest::prop_assert_eq!(a.kind, ScanKind::Product);
            proptest::prop_assert_eq!(a.ais.len(), 3);
            proptest::prop_assert_eq!(a.gtin14.as_deref(), Some(gtin.as_str()));
            let b = decode(&a.canonical_form().unwrap(), &c);
            proptest::prop_assert_eq!(&b.ais, &a.ais);
        }

        #[test]
        fn valid_gtins_round_trip(payload in "[0-9]{12}") {
            let full = crate::gtin::with_check_digit(&payload).unwrap();
            let c = ScanConfig { rcn_region: None, ..cfg() };
            let s = decode(&full, &c);
            proptest::prop_assert_eq!(s.kind, ScanKind::Product);
            proptest::prop_assert_eq!(s.gtin14, Some(format!("0{full}")));
        }
    }
}
