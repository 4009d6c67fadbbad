//! Card numbers: the Luhn check, the payment-card guard and loyalty-number rules.
//!
//! **Invariant:** a number in a payment-card range is never treated as a loyalty
//! number, whether or not its Luhn check passes — a misread payment card is still a
//! payment card (PCI DSS: it must not be stored or logged). By default every number
//! whose first digit is 1–6 (ISO/IEC 7812 major industry identifiers for airlines,
//! travel and entertainment, banking and merchandising) is a payment number; a
//! retailer may allow-list its own private-label prefixes in those ranges.

use serde::{Deserialize, Serialize};

/// The Luhn mod-10 check digit for `payload` (the number without its last digit);
/// `None` when `payload` is empty or holds a non-digit.
pub fn luhn_check_digit(payload: &str) -> Option<u8> {
    if payload.is_empty() || !payload.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // From the right, every first digit of the payload is doubled (it will be the
    // second once the check digit is appended).
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    Some(((10 - sum % 10) % 10) as u8)
}

/// True when `digits` (ASCII digits only, at least two) passes the Luhn mod-10 check.
pub fn luhn_valid(digits: &str) -> bool {
    match digits
        .len()
        .checked_sub(1)
        .and_then(|n| digits.get(..n).zip(digits.get(n..)))
    {
        Some((payload, last)) if !payload.is_empty() => {
            luhn_check_digit(payload).is_some_and(|d| last.as_bytes()[0] == b'0' + d)
        }
        _ => false,
    }
}

/// The store's rules for card numbers, from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CardRules {
    /// Prefixes of the retailer's own cards inside the payment ranges (private-label
    /// cards starting with 6, say) that are loyalty numbers after all. Default: none.
    pub allowed_payment_prefixes: Vec<String>,
    /// Prefixes a loyalty number starts with. Empty accepts any non-payment number.
    /// Default: `["7", "9"]`.
    pub loyalty_prefixes: Vec<String>,
    /// Lengths a loyalty number may have. Empty accepts any length from 6 to 19.
    /// Default: empty.
    pub loyalty_lengths: Vec<usize>,
    /// Whether a loyalty number must pass the Luhn check. Default: false.
    pub loyalty_requires_luhn: bool,
}

impl Default for CardRules {
    fn default() -> Self {
        CardRules {
            allowed_payment_prefixes: Vec::new(),
            loyalty_prefixes: vec!["7".into(), "9".into()],
            loyalty_lengths: Vec::new(),
            loyalty_requires_luhn: false,
        }
    }
}

/// What a number read from a card or a barcode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberClass {
    /// In a payment-card range: drop it at once, keep no digit of it.
    Payment,
    /// A loyalty number by the store's rules.
    Loyalty,
    /// Neither (wrong prefix or length, not digits, or empty).
    Other,
}

impl CardRules {
    /// Classifies `digits`. Anything that is not all ASCII digits is `Other`.
    pub fn classify(&self, digits: &str) -> NumberClass {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return NumberClass::Other;
        }
        let allow_listed = self
            .allowed_payment_prefixes
            .iter()
            .any(|p| digits.starts_with(p.as_str()));
        if matches!(digits.as_bytes()[0], b'1'..=b'6') && !allow_listed {
            return NumberClass::Payment;
        }
        let prefix_ok = allow_listed
            || self.loyalty_prefixes.is_empty()
            || self
                .loyalty_prefixes
                .iter()
                .any(|p| digits.starts_with(p.as_str()));
        let length_ok = if self.loyalty_lengths.is_empty() {
            (6..=19).contains(&digits.len())
        } else {
            self.loyalty_lengths.contains(&digits.len())
        };
        let luhn_ok = !self.loyalty_requires_luhn || luhn_valid(digits);
        if prefix_ok && length_ok && luhn_ok {
            NumberClass::Loyalty
        } else {
            NumberClass::Other
        }
    }
}

/// Which digit runs [`card_number_spans`] leaves alone although they are 13 or 14
/// digits long and start with 1–6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductCodes {
    /// Every candidate that looks like a card number is a card number (printed
    /// receipts: a product code is not printed as a bare 13-digit run).
    AreCardNumbers,
    /// A lone run of 13 or 14 digits with a valid GS1 check digit is a product code
    /// (GTIN-13 or GTIN-14), as the scan guard judges it: documents such as POSLog
    /// carry item ids like `4006381333931`, which is a product, not a card.
    AreKept,
}

/// The byte ranges of the payment card numbers in `text`, in order, not
/// overlapping.
///
/// A candidate is a run of ASCII digits in which single spaces or dashes may
/// separate groups of digits (`4111 1111 1111 1111`, `4111-1111-1111-1111`). It is a
/// card number when it, or any part of it made of whole consecutive groups, has 13
/// to 19 digits and passes the Luhn check or starts with 1–6 (the issuer ranges of
/// payment cards), erring on the side of masking: a card number written next to
/// other digits (`7 4111111111111111`) makes the whole candidate a span. With
/// [`ProductCodes::AreKept`], a part that is one whole group of 13 or 14 digits
/// with a valid GS1 check digit does not count. Only ASCII bytes are looked at, so
/// this works on UTF-8 text and on bytes of any ASCII-compatible encoding alike.
pub fn card_number_spans(text: &[u8], products: ProductCodes) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = Vec::new();
        // Where each group of consecutive digits ends in `digits`.
        let mut group_ends = Vec::new();
        let mut j = i;
        let mut end = i;
        loop {
            match text.get(j) {
                Some(c) if c.is_ascii_digit() => {
                    digits.push(*c);
                    j += 1;
                    end = j;
                }
                Some(b' ' | b'-') if text.get(j + 1).is_some_and(u8::is_ascii_digit) => {
                    group_ends.push(digits.len());
                    j += 1;
                }
                _ => break,
            }
        }
        group_ends.push(digits.len());
        if holds_card_number(&digits, &group_ends, products) {
            spans.push(start..end);
        }
        i = end;
    }
    spans
}

/// Whether whole consecutive groups of a candidate (`digits`, its groups ending at
/// `group_ends`) look like a card number. Only parts of 13 to 19 digits can, so
/// each start tries at most 19 digits.
fn holds_card_number(digits: &[u8], group_ends: &[usize], products: ProductCodes) -> bool {
    let mut first = 0;
    for (i, &first_end) in group_ends.iter().enumerate() {
        for (k, &last_end) in group_ends[i..].iter().enumerate() {
            if last_end - first > 19 {
                break;
            }
            let part = &digits[first..last_end];
            let product =
                products == ProductCodes::AreKept && k == 0 && matches!(part.len(), 13 | 14) && is_gtin(part);
            if !product && looks_like_card_number(part) {
                return true;
            }
        }
        first = first_end;
    }
    false
}

fn looks_like_card_number(digits: &[u8]) -> bool {
    (13..=19).contains(&digits.len())
        && (matches!(digits[0], b'1'..=b'6') || std::str::from_utf8(digits).is_ok_and(luhn_valid))
}

fn is_gtin(digits: &[u8]) -> bool {
    let Some((last, payload)) = digits.split_last() else {
        return false;
    };
    std::str::from_utf8(payload)
        .ok()
        .and_then(crate::gtin::check_digit)
        .is_some_and(|d| *last == b'0' + d)
}

/// Overwrites every card number in `bytes` (see [`card_number_spans`]) with
/// asterisks, all but its last four digits, separators included:
/// `4111 1111 1111 1111` becomes `***************1111`. The length never changes,
/// so a file can be masked where it lies.
pub fn mask_card_numbers(bytes: &mut [u8], products: ProductCodes) {
    for span in card_number_spans(bytes, products) {
        mask_keeping_last_four(&mut bytes[span]);
    }
}

/// Overwrites every byte of `region` with `*` except its last four ASCII digits
/// (and anything between them).
pub fn mask_keeping_last_four(region: &mut [u8]) {
    let mut kept = 0;
    let mut keep_from = region.len();
    for (i, b) in region.iter().enumerate().rev() {
        if kept == 4 {
            break;
        }
        if b.is_ascii_digit() {
            kept += 1;
            keep_from = i;
        }
    }
    for b in &mut region[..keep_from] {
        if b.is_ascii_digit() || matches!(b, b' ' | b'-') {
            *b = b'*';
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_the_networks_test_numbers() {
        for n in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
        ] {
            assert!(luhn_valid(n), "{n}");
        }
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("4"));
        assert!(!luhn_valid("41x1"));
        assert!(!luhn_valid("411111111111111x"));
        assert_eq!(luhn_check_digit("411111111111111"), Some(1));
        assert_eq!(luhn_check_digit(""), None);
    }

    #[test]
    fn payment_ranges_win_whatever_the_luhn_check_says() {
        let rules = CardRules::default();
        assert_eq!(rules.classify("4111111111111111"), NumberClass::Payment);
        assert_eq!(rules.classify("4111111111111112"), NumberClass::Payment);
        assert_eq!(rules.classify("1234567"), NumberClass::Payment);
        assert_eq!(rules.classify("9800000000000018"), NumberClass::Loyalty);
        assert_eq!(rules.classify("7012345678"), NumberClass::Loyalty);
        assert_eq!(
            rules.classify("8012345678"),
            NumberClass::Other,
            "not a loyalty prefix"
        );
        assert_eq!(rules.classify("98765"), NumberClass::Other, "too short");
        assert_eq!(rules.classify(""), NumberClass::Other);
        assert_eq!(rules.classify("98a"), NumberClass::Other);
    }

    #[test]
    fn allow_listed_private_label_prefix_is_loyalty() {
        let rules = CardRules {
            allowed_payment_prefixes: vec!["6012".into()],
            ..CardRules::default()
        };
        assert_eq!(rules.classify("6012000000000001"), NumberClass::Loyalty);
        assert_eq!(rules.classify("6011111111111117"), NumberClass::Payment);
    }

    #[test]
    fn strict_rules_check_length_and_luhn() {
        let rules = CardRules {
            loyalty_lengths: vec![16],
            loyalty_requires_luhn: true,
            ..CardRules::default()
        };
        assert_eq!(rules.classify("9800000000000011"), NumberClass::Loyalty);
        assert_eq!(
            rules.classify("9800000000000018"),
            NumberClass::Other,
            "fails Luhn"
        );
        assert_eq!(rules.classify("980000000000001"), NumberClass::Other, "15 digits");
    }

    proptest::proptest! {
        #[test]
        fn classify_never_panics(s in "\\PC{0,30}") {
            let _ = CardRules::default().classify(&s);
        }

        #[test]
        fn every_number_starting_1_to_6_is_payment(first in 1u8..=6, rest in "[0-9]{5,18}") {
            let n = format!("{first}{rest}");
            proptest::prop_assert_eq!(CardRules::default().classify(&n), NumberClass::Payment);
        }
    }
}
