//! Fuzzes barcode scan decoding: `scan::decode` (the classifier the agent calls) and
//! `scan::parse_all::parse_all` (every reading side by side) on the input as lossy
//! UTF-8, with the default `ScanConfig` and with a store's configuration (loyalty
//! prefixes and lengths with the Luhn rule, an allow-listed private-label range,
//! order-code and receipt-code prefixes, an extra FNC1 separator, a
//! variable-measure region picked by the input's length).
//!
//! Asserted besides "no panic":
//! * determinism: decoding the same input twice gives equal results (`PartialEq`);
//! * the PCI DSS invariant of `classify`: a `PaymentCardRejected` scan holds no
//!   digit of the scan (`raw`, `symbology`, `gtin`, `gtin14`, `ais` empty, no digit
//!   in its message);
//! * a product without element strings decodes again from its 14-digit GTIN to the
//!   same GTIN (`Scan::canonical_form`).
#![no_main]

use firmware_interfaces::card::CardRules;
use firmware_interfaces::scan::parse_all::parse_all;
use firmware_interfaces::scan::{RcnRegion, Scan, ScanConfig, ScanKind, decode};
use libfuzzer_sys::fuzz_target;

const REGIONS: [RcnRegion; 9] = [
    RcnRegion::Dk,
    RcnRegion::Ee,
    RcnRegion::Fi,
    RcnRegion::De,
    RcnRegion::Gb,
    RcnRegion::Lv,
    RcnRegion::Lt,
    RcnRegion::No,
    RcnRegion::Se,
];

/// A store's configuration; which region and which checks depend on `n`, so that
/// the fuzzer reaches every region by changing the input's length.
fn store_config(n: usize) -> ScanConfig {
    ScanConfig {
        card_rules: CardRules {
            allowed_payment_prefixes: vec!["6012".into()],
            loyalty_prefixes: vec!["98".into(), "7".into(), "2".into()],
            loyalty_lengths: vec![10, 13, 16],
            loyalty_requires_luhn: n % 2 == 0,
        },
        separator_chars: vec!['\u{1d}', '|'],
        rcn_region: Some(REGIONS[n % REGIONS.len()]),
        rcn_verify_variable_measure: n % 3 != 0,
        verify_dates: n % 5 != 0,
        reference_year: Some(2026),
        strip_prefix: String::new(),
        strip_suffix: "\r".into(),
        order_code_prefixes: vec!["https://shop.example/pickup/".into(), "BOPIS-".into()],
        receipt_code_prefixes: vec!["RCPT".into()],
    }
}

fn check(raw: &str, config: &ScanConfig) {
    let scan = decode(raw, config);
    assert_eq!(
        scan,
        decode(raw, config),
        "decode is not deterministic for {raw:?}"
    );
    assert_eq!(
        parse_all(raw, config),
        parse_all(raw, config),
        "parse_all is not deterministic for {raw:?}"
    );
    if scan.kind == ScanKind::PaymentCardRejected {
        assert_no_card_digit(&scan);
    }
    if scan.kind == ScanKind::Product
        && scan.ais.is_empty()
        && let Some(gtin14) = &scan.gtin14
    {
        let again = decode(gtin14, config);
        assert_eq!(
            again.kind,
            ScanKind::Product,
            "{raw:?} -> {gtin14:?} -> {again:?}"
        );
        assert_eq!(again.gtin14.as_ref(), Some(gtin14), "{raw:?} -> {again:?}");
    }
}

fn assert_no_card_digit(scan: &Scan) {
    assert!(scan.raw.is_empty(), "rejected card keeps raw: {scan:?}");
    assert!(scan.symbology.is_none(), "{scan:?}");
    assert!(scan.gtin.is_none() && scan.gtin14.is_none(), "{scan:?}");
    assert!(scan.ais.is_empty() && scan.variable_measure.is_none(), "{scan:?}");
    let message = scan.error.as_deref().unwrap_or("");
    assert!(!message.chars().any(|c| c.is_ascii_digit()), "{scan:?}");
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    check(&raw, &ScanConfig::default());
    check(&raw, &store_config(data.len()));
});
