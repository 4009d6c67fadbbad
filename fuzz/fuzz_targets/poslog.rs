//! Fuzzes the ARTS POSLog XML parser, `poslog::parse_poslog`, on raw bytes (any
//! encoding, any nesting), and `poslog::to_minor_units` on every amount it returns.
//!
//! Asserted besides "no panic" (every input gives `Ok` or `Err`):
//! * determinism: parsing twice gives equal results, and an error's `Display` works;
//! * a transaction's `SequenceNumber` is digits only, and not empty;
//! * every amount and quantity is a plain decimal number (`[+-]digits[.digits]`),
//!   and `quantity_thousandths` is `to_minor_units(quantity, 3)`;
//! * "no card data": no kept vendor element (or child, or attribute) is a
//!   `PrimaryAccountNumber`;
//! * a parsed transaction survives a serde JSON round trip unchanged;
//! * `poslog::redact` (the masking of kept spool files and dead letters) keeps the
//!   length, changes only digits, spaces and dashes and only to `*`, changes
//!   nothing the second time, and leaves no card number (`card_number_spans` with
//!   product codes kept finds none).
#![no_main]

use firmware_interfaces::card::{ProductCodes, card_number_spans};
use firmware_interfaces::poslog::{ExtensionElement, PosLogTransaction, parse_poslog, redact, to_minor_units};
use libfuzzer_sys::fuzz_target;

fn is_plain_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    !(integer.is_empty() && fraction.is_empty()) && digits(integer) && digits(fraction)
}

fn local_name(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

fn assert_no_card_number(e: &ExtensionElement) {
    assert_ne!(
        local_name(&e.name),
        "PrimaryAccountNumber",
        "card number kept: {e:?}"
    );
    for (name, _) in &e.attributes {
        assert_ne!(
            local_name(name),
            "PrimaryAccountNumber",
            "card number kept: {e:?}"
        );
    }
    e.children.iter().for_each(assert_no_card_number);
}

fn check_amount(text: &str) {
    assert!(is_plain_decimal(text), "amount {text:?} is not a plain decimal");
    for exponent in [0, 2, 3, 18, 19] {
        let _ = to_minor_units(text, exponent);
    }
}

fn check_transaction(t: &PosLogTransaction) {
    assert!(!t.sequence_number.is_empty() && t.sequence_number.bytes().all(|b| b.is_ascii_digit()));
    for total in &t.totals {
        check_amount(&total.amount);
    }
    if let Some(g) = &t.grand_total {
        check_amount(g);
    }
    for item in &t.line_items {
        let amounts = [
            &item.regular_unit_price,
            &item.actual_unit_price,
            &item.extended_amount,
            &item.tender_amount,
        ];
        amounts.into_iter().flatten().for_each(|a| check_amount(a));
        item.tax_amounts.iter().for_each(|a| check_amount(a));
        if let Some(q) = &item.quantity {
            check_amount(q);
            assert_eq!(item.quantity_thousandths, to_minor_units(q, 3).ok(), "{q:?}");
        }
        item.extensions.iter().for_each(assert_no_card_number);
    }
    t.extensions.iter().for_each(assert_no_card_number);
    let json = serde_json::to_vec(t).expect("a transaction serialises");
    let back: PosLogTransaction = serde_json::from_slice(&json).expect("and reads back");
    assert_eq!(&back, t);
}

fuzz_target!(|data: &[u8]| {
    let result = parse_poslog(data);
    assert_eq!(result, parse_poslog(data), "parse_poslog is not deterministic");
    match &result {
        Ok(transactions) => transactions.iter().for_each(check_transaction),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let mut masked = data.to_vec();
    redact(&mut masked);
    assert_eq!(masked.len(), data.len());
    for (a, b) in data.iter().zip(&masked) {
        assert!(a == b || (*b == b'*' && (a.is_ascii_digit() || matches!(a, b' ' | b'-'))));
    }
    let mut twice = masked.clone();
    redact(&mut twice);
    assert!(twice == masked, "redact is not idempotent");
    assert!(
        card_number_spans(&masked, ProductCodes::AreKept).is_empty(),
        "a card number survived redact"
    );
    // The decimal conversion on its own, on whatever text the input is.
    let text = String::from_utf8_lossy(data);
    for exponent in [0, 2, 3, 18] {
        if let Ok(v) = to_minor_units(&text, exponent) {
            assert!(is_plain_decimal(text.trim()), "{text:?} -> {v}");
        }
    }
});
