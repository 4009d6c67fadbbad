//! Fuzzes the magnetic-stripe reader path: `msr::parse_swipe` (ISO/IEC 7813 tracks 1
//! and 2), `msr::read_card` (the event the agent gets) and the payment-card guard
//! of `card` (`CardRules::classify`, `luhn_valid`), on the input as lossy UTF-8,
//! with the default card rules and with a store's rules (an allow-listed
//! private-label range, fixed loyalty lengths, Luhn required).
//!
//! Asserted besides "no panic":
//! * `read_card` is `parse_swipe` plus `CardRules::classify` of the swipe's number:
//!   a payment number always gives `PaymentCardRejected`, an error always gives
//!   `Invalid` with the error's kind and message;
//! * no card data leaks: for every outcome except a loyalty number's JSON (which
//!   hands the number over by design), the `Debug`, `Display` and JSON text holds no
//!   run of 12 or more digits (the longest a position or length could be is far
//!   shorter); a rejected payment card's text holds no digit at all; a loyalty
//!   number's `Debug` shows at most its last four digits; a swipe's `Debug` (and its
//!   tracks') shows no 3-digit run;
//! * a well-formed swipe's number is 1 to 19 digits and both tracks agree on it.
#![no_main]

use firmware_interfaces::card::{CardRules, NumberClass, luhn_valid};
use firmware_interfaces::msr::{CardRead, parse_swipe, read_card};
use libfuzzer_sys::fuzz_target;

fn longest_digit_run(text: &str) -> usize {
    text.split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

fn check(raw: &str, rules: &CardRules) {
    let read = read_card(raw, rules);
    assert_eq!(read, read_card(raw, rules), "read_card is not deterministic");
    let debug = format!("{read:?}");
    let json = serde_json::to_string(&read).expect("CardRead serialises");
    match &read {
        CardRead::Loyalty { number } => {
            assert!(
                longest_digit_run(&debug) <= 4,
                "loyalty Debug shows too much: {debug}"
            );
            assert!(!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()));
        }
        CardRead::PaymentCardRejected => {
            let all = format!("{debug} {json}");
            assert!(
                !all.chars().any(|c| c.is_ascii_digit()),
                "rejected card text: {all}"
            );
        }
        CardRead::Invalid { message, .. } => {
            let all = format!("{debug} {json} {message}");
            assert!(longest_digit_run(&all) < 12, "digits of the input leaked: {all}");
        }
        CardRead::Unrecognised => {
            assert!(longest_digit_run(&format!("{debug} {json}")) < 12);
        }
    }

    match parse_swipe(raw) {
        Ok(swipe) => {
            let text = format!("{swipe:?} {:?} {:?}", swipe.track1(), swipe.track2());
            assert!(longest_digit_run(&text) < 3, "swipe Debug shows digits: {text}");
            let pan = swipe.pan();
            assert!((1..=19).contains(&pan.len()), "PAN of {} digits", pan.len());
            assert!(pan.bytes().all(|b| b.is_ascii_digit()));
            if let (Some(t1), Some(t2)) = (swipe.track1(), swipe.track2()) {
                assert_eq!(t1.pan(), t2.pan());
            }
            assert_eq!(swipe.pan_luhn_valid(), luhn_valid(pan));
            let class = swipe.classify(rules);
            assert_eq!(class, rules.classify(pan));
            let expected = match class {
                NumberClass::Payment => CardRead::PaymentCardRejected,
                NumberClass::Loyalty => CardRead::Loyalty {
                    number: pan.to_owned(),
                },
                NumberClass::Other => CardRead::Unrecognised,
            };
            assert_eq!(read, expected);
        }
        Err(error) => {
            let text = format!("{error} {error:?}");
            assert!(longest_digit_run(&text) < 12, "error text leaks digits: {text}");
            assert_eq!(
                read,
                CardRead::Invalid {
                    kind: error.kind(),
                    message: error.to_string()
                }
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let store_rules = CardRules {
        allowed_payment_prefixes: vec!["6012".into()],
        loyalty_prefixes: vec!["9".into(), "60120".into()],
        loyalty_lengths: vec![16, 19],
        loyalty_requires_luhn: true,
    };
    for rules in [CardRules::default(), store_rules] {
        check(&raw, &rules);
    }
    // The guard on its own, as the scan decoder and the loyalty screens call it.
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let class = CardRules::default().classify(&digits);
    if digits
        .as_bytes()
        .first()
        .is_some_and(|b| (b'1'..=b'6').contains(b))
    {
        assert_eq!(class, NumberClass::Payment);
    }
    let _ = luhn_valid(&raw);
});
