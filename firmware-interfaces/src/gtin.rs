//! GTIN check digits (GS1 General Specifications, section 7.9.1).
//!
//! The same mod-10 algorithm serves GTIN-8, GTIN-12 (UPC-A), GTIN-13 (EAN-13) and
//! GTIN-14: from the right, digits are weighted 3, 1, 3, 1, …, excluding the check
//! digit itself, and the check digit brings the weighted sum to a multiple of ten.

use thiserror::Error;

/// Why a GTIN was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GtinError {
    /// The value holds something other than the digits 0–9.
    #[error("GTIN contains a non-digit character {found:?} at position {position}")]
    NonDigit {
        /// 1-based position of the offending character.
        position: usize,
        /// The character found there.
        found: char,
    },
    /// GTINs have 8, 12, 13 or 14 digits.
    #[error("GTIN has {0} digits; expected 8, 12, 13 or 14")]
    BadLength(usize),
    /// The last digit does not match the computed one.
    #[error("bad check digit at position {position}: found {found}, expected {expected}")]
    BadCheckDigit {
        /// 1-based position of the check digit (the last one).
        position: usize,
        /// The digit in the input.
        found: u8,
        /// The digit the algorithm gives.
        expected: u8,
    },
}

/// Computes the check digit for `payload`, the GTIN digits without their check digit.
///
/// Returns `None` when `payload` holds a non-digit. Any length is accepted, so this
/// also serves SSCC and GLN payloads.
pub fn check_digit(payload: &str) -> Option<u8> {
    let mut sum = 0u32;
    for (i, b) in payload.bytes().rev().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = u32::from(b - b'0');
        sum += if i % 2 == 0 { d * 3 } else { d };
    }
    Some(((10 - sum % 10) % 10) as u8)
}

/// Checks a complete GTIN (8, 12, 13 or 14 digits, check digit last).
pub fn validate(gtin: &str) -> Result<(), GtinError> {
    if let Some((i, c)) = gtin.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(GtinError::NonDigit {
            position: i + 1,
            found: c,
        });
    }
    let len = gtin.len();
    if !matches!(len, 8 | 12 | 13 | 14) {
        return Err(GtinError::BadLength(len));
    }
    let expected = check_digit(&gtin[..len - 1]).expect("digits were checked above");
    let found = gtin.as_bytes()[len - 1] - b'0';
    if found != expected {
        return Err(GtinError::BadCheckDigit {
            position: len,
            found,
            expected,
        });
    }
    Ok(())
}

/// Appends the check digit to a payload of digits. `None` for a non-digit.
pub fn with_check_digit(payload: &str) -> Option<String> {
    let d = check_digit(payload)?;
    Some(format!("{payload}{d}"))
}

/// The 14-digit form of a valid GTIN, zero-padded on the left.
pub fn to_gtin14(gtin: &str) -> Result<String, GtinError> {
    validate(gtin)?;
    Ok(format!("{gtin:0>14}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_gtins_validate() {
        // EAN-13 from a real product, a UPC-A, an EAN-8 and an ITF-14 (GS1 examples).
        for g in ["4006381333931", "036000291452", "96385074", "10614141000415"] {
            assert_eq!(validate(g), Ok(()), "{g}");
        }
    }

    #[test]
    fn check_digit_is_computed_from_the_right() {
        assert_eq!(check_digit("400638133393"), Some(1));
        assert_eq!(check_digit("03600029145"), Some(2));
        assert_eq!(check_digit("9638507"), Some(4));
        assert_eq!(
            with_check_digit("1061414100041").as_deref(),
            Some("10614141000415")
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            validate("4006381333932"),
            Err(GtinError::BadCheckDigit {
                position: 13,
                found: 2,
                expected: 1
            })
        );
        assert_eq!(validate("40063813339"), Err(GtinError::BadLength(11)));
        assert_eq!(
            validate("40063x1333931"),
            Err(GtinError::NonDigit {
                position: 6,
                found: 'x'
            })
        );
        assert_eq!(
            validate("4006381333932").unwrap_err().to_string(),
            "bad check digit at position 13: found 2, expected 1"
        );
    }

    #[test]
    fn gtin14_pads_with_zeros() {
        assert_eq!(to_gtin14("036000291452").unwrap(), "00036000291452");
        assert_eq!(to_gtin14("96385074").unwrap(), "00000096385074");
    }

    proptest::proptest! {
        #[test]
        fn any_payload_with_its_check_digit_validates(payload in "[0-9]{12}") {
            let full = with_check_digit(&payload).unwrap();
            proptest::prop_assert_eq!(validate(&full), Ok(()));
        }

        #[test]
        fn validate_never_panics(s in "\\PC{0,20}") {
            let _ = validate(&s);
        }
    }
}
