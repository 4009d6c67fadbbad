//! The MSR corpus (`shared/corpora/msr/tracks.jsonl`) through `parse_swipe` and
//! `read_card`, and property tests of the parser and of the payment-card guard.
//!
//! Failure messages name the case and the field but never print a card number.

mod common;

use firmware_interfaces::card::{CardRules, NumberClass};
use firmware_interfaces::msr::{CardRead, Swipe, parse_swipe, read_card};
use proptest::prelude::*;
use serde_json::Value;

/// The corpus cases, or `None` (after `common::corpus` printed why) when the corpus
/// is not there.
fn cases() -> Option<Vec<Value>> {
    let dir = common::corpus("msr")?;
    Some(common::jsonl(&dir.join("tracks.jsonl")))
}

fn id(case: &Value) -> &str {
    case["id"].as_str().expect("every case has an id")
}

fn raw(case: &Value) -> &str {
    case["raw"].as_str().expect("every case has a raw swipe")
}

fn is_malformed(case: &Value) -> bool {
    case["expect_error"].as_bool() == Some(true)
}

/// The six-digit windows of every run of at least six digits in `text`: none of
/// them may appear in anything derived from a swipe of `text`.
fn six_digit_windows(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() >= 6)
        .flat_map(|run| (0..=run.len() - 6).map(move |i| &run[i..i + 6]))
        .collect()
}

/// The window of `secret` that `text` contains, if any.
fn leaked<'a>(text: &str, secret: &'a str) -> Option<&'a str> {
    six_digit_windows(secret).into_iter().find(|w| text.contains(w))
}

/// Compares one field, recording a mismatch. Card numbers and names are withheld
/// from the message.
fn check_field(failures: &mut Vec<String>, case: &str, field: &str, got: Option<&str>, want: &Value) {
    let want = want.as_str();
    if got != want {
        if field.ends_with("pan") || field.ends_with("name") || field == "loyalty_number" {
            failures.push(format!("{case}: {field} differs (values withheld)"));
        } else {
            failures.push(format!("{case}: {field} is {got:?}, expected {want:?}"));
        }
    }
}

/// Every field of `expect` against the swipe and the card read; returns the mismatches.
fn check_valid(case: &str, raw: &str, expect: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    let swipe = match parse_swipe(raw) {
        Ok(swipe) => swipe,
        Err(e) => return vec![format!("{case}: rejected as {}: {e}", e.kind())],
    };
    match (swipe.track1(), &expect["track1"]) {
        (None, Value::Null) => {}
        (Some(t1), want @ Value::Object(_)) => {
            let code = t1.format_code().to_string();
            check_field(
                &mut failures,
                case,
                "track1.format_code",
                Some(&code),
                &want["format_code"],
            );
            check_field(&mut failures, case, "track1.pan", Some(t1.pan()), &want["pan"]);
            check_field(&mut failures, case, "track1.name", Some(t1.name()), &want["name"]);
            check_field(
                &mut failures,
                case,
                "track1.expiry_yymm",
                Some(t1.expiry_yymm()),
                &want["expiry_yymm"],
            );
            let service = Some(t1.service_code());
            check_field(
                &mut failures,
                case,
                "track1.service_code",
                service,
                &want["service_code"],
            );
            let data = Some(t1.discretionary_data());
            check_field(
                &mut failures,
                case,
                "track1.discretionary_data",
                data,
                &want["discretionary_data"],
            );
        }
        (got, _) => failures.push(format!("{case}: track1 present is {}", got.is_some())),
    }
    match (swipe.track2(), &expect["track2"]) {
        (None, Value::Null) => {}
        (Some(t2), want @ Value::Object(_)) => {
            check_field(&mut failures, case, "track2.pan", Some(t2.pan()), &want["pan"]);
            check_field(
                &mut failures,
                case,
                "track2.expiry_yymm",
                t2.expiry_yymm(),
                &want["expiry_yymm"],
            );
            let service = t2.service_code();
            check_field(
                &mut failures,
                case,
                "track2.service_code",
                service,
                &want["service_code"],
            );
            let data = t2.discretionary_data();
            check_field(
                &mut failures,
                case,
                "track2.discretionary_data",
                data,
                &want["discretionary_data"],
            );
        }
        (got, _) => failures.push(format!("{case}: track2 present is {}", got.is_some())),
    }
    if Some(swipe.pan_luhn_valid()) != expect["pan_luhn_valid"].as_bool() {
        failures.push(format!("{case}: pan_luhn_valid is {}", swipe.pan_luhn_valid()));
    }
    let rules = CardRules::default();
    let read = read_card(raw, &rules);
    let is_payment = read == CardRead::PaymentCardRejected;
    if Some(is_payment) != expect["is_payment_card"].as_bool() {
        failures.push(format!("{case}: is_payment_card is {is_payment}"));
    }
    if is_payment != (swipe.classify(&rules) == NumberClass::Payment) {
        failures.push(format!("{case}: read_card and Swipe::classify disagree"));
    }
    let loyalty = match &read {
        CardRead::Loyalty { number } => Some(number.as_str()),
        _ => None,
    };
    check_field(
        &mut failures,
        case,
        "loyalty_number",
        loyalty,
        &expect["loyalty_number"],
    );
    failures
}

/// The kind and, for digits, the text of the rejection; returns the mismatches.
fn check_malformed(case: &str, raw: &str, want_kind: &str) -> Vec<String> {
    let error = match parse_swipe(raw) {
        Ok(_) => return vec![format!("{case}: accepted, expected {want_kind}")],
        Err(error) => error,
    };
    let mut failures = Vec::new();
    if error.kind() != want_kind {
        failures.push(format!(
            "{case}: rejected as {}, expected {want_kind}: {error}",
            error.kind()
        ));
    }
    match read_card(raw, &CardRules::default()) {
        CardRead::Invalid { kind, message } if kind == error.kind() && message == error.to_string() => {}
        other => failures.push(format!("{case}: read_card gave {other:?}")),
    }
    failures
}

#[test]
fn corpus_cases_parse_as_expected() {
    let Some(cases) = cases() else { return };
    assert_eq!(cases.len(), 53, "the README promises 53 cases");
    let (mut valid, mut valid_passed, mut malformed, mut malformed_passed) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for case in &cases {
        let case_failures = if is_malformed(case) {
            malformed += 1;
            let want = case["error_kind"]
                .as_str()
                .expect("a malformed case has an error_kind");
            check_malformed(id(case), raw(case), want)
        } else {
            valid += 1;
            check_valid(id(case), raw(case), &case["expect"])
        };
        if case_failures.is_empty() {
            if is_malformed(case) {
                malformed_passed += 1;
            } else {
                valid_passed += 1;
            }
        }
        failures.extend(case_failures);
    }
    eprintln!(
        "msr corpus: {valid_passed}/{valid} valid, {malformed_passed}/{malformed} malformed cases pass"
    );
    assert_eq!(
        (valid, malformed),
        (27, 26),
        "the README promises 27 valid and 26 malformed"
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Everything a payment swipe gives the program, rendered as a log line would.
fn renderings(swipe: &Swipe, read: &CardRead, rules: &CardRules) -> Vec<String> {
    vec![
        format!("{swipe:?}"),
        format!("{:?}", swipe.track1()),
        format!("{:?}", swipe.track2()),
        format!("{read:?}"),
        serde_json::to_string(read).expect("a CardRead serializes"),
        format!("{:?}", swipe.classify(rules)),
    ]
}

#[test]
fn payment_cards_are_rejected_and_never_rendered() {
    let Some(cases) = cases() else { return };
    let rules = CardRules::default();
    let mut checked = 0;
    for case in cases
        .iter()
        .filter(|c| c["expect"]["is_payment_card"] == Value::Bool(true))
    {
        let (case_id, raw) = (id(case), raw(case));
        let read = read_card(raw, &rules);
        assert_eq!(read, CardRead::PaymentCardRejected, "{case_id}");
        let swipe = parse_swipe(raw).unwrap_or_else(|e| panic!("{case_id}: {e}"));
        for text in renderings(&swipe, &read, &rules) {
            assert!(
                leaked(&text, swipe.pan()).is_none(),
                "{case_id}: a rendering shows PAN digits"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 18, "the README promises 18 payment cards");
}

#[test]
fn malformed_swipes_never_quote_their_digits() {
    let Some(cases) = cases() else { return };
    let mut checked = 0;
    for case in cases.iter().filter(|c| is_malformed(c)) {
        let (case_id, raw) = (id(case), raw(case));
        let error = parse_swipe(raw).expect_err(case_id);
        let read = read_card(raw, &CardRules::default());
        let texts = [
            error.to_string(),
            format!("{error:?}"),
            format!("{read:?}"),
            serde_json::to_string(&read).expect("a CardRead serializes"),
        ];
        for text in texts {
            assert!(
                leaked(&text, raw).is_none(),
                "{case_id}: the error quotes digits of the input"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 26);
}

/// True when `text` holds a run of `n` or more ASCII digits.
fn has_digit_run(text: &str, n: usize) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|run| run.len() >= n)
}

/// A swipe terminator as readers send them.
fn terminator() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just("\r"), Just("\n"), Just("\r\n")]
}

/// `=YYMMSSS` plus discretionary data of up to `max_data` digits, with a valid month.
fn track2_details(max_data: usize) -> impl Strategy<Value = String> {
    (
        "[0-9]{2}",
        1u8..=12,
        "[0-9]{3}",
        proptest::collection::vec(0u8..=9, 0..=max_data),
    )
        .prop_map(|(yy, mm, sss, data)| {
            let data: String = data.iter().map(|d| char::from(b'0' + d)).collect();
            format!("={yy}{mm:02}{sss}{data}")
        })
}

/// A well-formed track 2 for `pan` (at most 19 digits), with or without details.
fn track2_for(pan: String) -> impl Strategy<Value = String> {
    proptest::option::of(track2_details(10))
        .prop_map(move |details| format!(";{pan}{}?", details.unwrap_or_default()))
}

/// A well-formed track 1 for `pan` (at most 19 digits): padded name, expiry, service
/// code and up to 21 characters of discretionary data, which keeps it within 78.
fn track1_for(pan: String) -> impl Strategy<Value = String> {
    (
        "[A-Z][A-Z0-9 /.\\-]{0,23}[A-Z.]",
        0usize..=26,
        "[0-9]{2}",
        1u8..=12,
        "[0-9]{3}",
        "[0-9A-Z ]{0,21}",
    )
        .prop_map(move |(name, pad, yy, mm, sss, data)| {
            let pad = " ".repeat(pad.min(26 - name.len()));
            format!("%B{pan}^{name}{pad}^{yy}{mm:02}{sss}{data}?")
        })
}

/// A well-formed swipe for `pan`: track 1, track 2 or both.
fn swipe_for(pan: String) -> impl Strategy<Value = String> {
    (track1_for(pan.clone()), track2_for(pan), 0u8..3, terminator()).prop_map(|(t1, t2, which, end)| {
        match which {
            0 => format!("{t1}{end}"),
            1 => format!("{t2}{end}"),
            _ => format!("{t1}{t2}{end}"),
        }
    })
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC*") {
        let _ = parse_swipe(&s);
        let _ = read_card(&s, &CardRules::default());
    }

    #[test]
    fn track_like_strings_never_panic_nor_quote_digits(s in "[%;?=^EB0-9A-Z /\r\n\u{7}é]{0,90}") {
        if let Err(error) = parse_swipe(&s) {
            // Inputs under 100 characters give positions and lengths of at most two
            // digits; a longer run could only come from the input.
            let text = format!("{error} {error:?}");
            prop_assert!(!has_digit_run(&text, 3), "{}", text);
        }
        let _ = read_card(&s, &CardRules::default());
    }

    #[test]
    fn loyalty_track2_round_trips(
        (number, raw) in "[79][0-9]{5,18}".prop_flat_map(|n| {
            (Just(n.clone()), track2_for(n), terminator())
                .prop_map(|(n, t2, end)| (n, format!("{t2}{end}")))
        })
    ) {
        prop_assert_eq!(read_card(&raw, &CardRules::default()), CardRead::Loyalty { number });
    }

    #[test]
    fn any_payment_number_is_rejected(
        (pan, raw) in "[1-6][0-9]{0,18}".prop_flat_map(|pan| (Just(pan.clone()), swipe_for(pan)))
    ) {
        let rules = CardRules::default();
        let read = read_card(&raw, &rules);
        prop_assert_eq!(&read, &CardRead::PaymentCardRejected);
        let swipe = parse_swipe(&raw).expect("a generated swipe is well formed");
        for text in renderings(&swipe, &read, &rules) {
            prop_assert!(leaked(&text, &pan).is_none(), "{}", text);
        }
    }
}
