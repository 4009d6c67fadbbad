//! Decimal text: the check that a POSLog amount or quantity is a plain decimal
//! number, and its exact conversion to an integer count of minor units.
//!
//! Money never passes through a float in this crate: amounts stay as the text the
//! POS wrote (`"26.990"`), and [`to_minor_units`] turns that text into an integer
//! only when the caller knows the currency's exponent.

use super::PosLogError;

/// The largest exponent [`to_minor_units`] accepts: 10^18 is the largest power of
/// ten an `i64` holds.
const MAX_EXPONENT: u8 = 18;

/// Why a text is not a plain decimal number.
const NOT_DECIMAL: &str = "is not a decimal number (digits with an optional sign and decimal point)";

/// The parts of a plain decimal number: `[+-]digits[.digits]` or `[+-].digits`.
struct DecimalParts<'a> {
    negative: bool,
    integer: &'a str,
    fraction: &'a str,
}

/// Splits `text` (already trimmed) into sign, integer digits and fraction digits,
/// or says why it is not a plain decimal number. Exponents (`1e3`), grouping
/// separators and decimal commas are refused: POSLog amounts are `xs:decimal`.
fn split_decimal(text: &str) -> Result<DecimalParts<'_>, &'static str> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (integer, fraction) = match unsigned.split_once('.') {
        Some((integer, fraction)) => (integer, fraction),
        None => (unsigned, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if integer.is_empty() && fraction.is_empty() || !all_digits(integer) || !all_digits(fraction) {
        return Err(NOT_DECIMAL);
    }
    Ok(DecimalParts {
        negative,
        integer,
        fraction,
    })
}

/// Checks that `text` is a plain decimal number; the reason when it is not.
pub(crate) fn check_decimal(text: &str) -> Result<(), &'static str> {
    split_decimal(text).map(|_| ())
}

/// Converts the decimal `text` to an integer number of minor units, exactly.
///
/// `exponent` is the number of decimal places of the unit: 2 for euro cents, 3
/// for thousandths of a quantity. Decimal places beyond the exponent are
/// accepted only when they are zeros (`"26.990"` with exponent 2 is 2699), so no
/// value is ever rounded. Surrounding whitespace is ignored.
///
/// # Errors
///
/// [`PosLogError::InvalidAmount`] when the text is not a plain decimal number,
/// has significant digits beyond the exponent, does not fit an `i64`, or the
/// exponent is above 18.
///
/// ```
/// use firmware_interfaces::poslog::to_minor_units;
/// assert_eq!(to_minor_units("26.990", 2).unwrap(), 2699);
/// assert_eq!(to_minor_units("-1.0000", 3).unwrap(), -1000);
/// assert!(to_minor_units("0.125", 2).is_err());
/// ```
pub fn to_minor_units(text: &str, exponent: u8) -> Result<i64, PosLogError> {
    let invalid = |problem: String| PosLogError::InvalidAmount {
        text: text.to_owned(),
        problem,
    };
    if exponent > MAX_EXPONENT {
        return Err(invalid(format!(
            "exponent {exponent} is above the largest supported exponent {MAX_EXPONENT}"
        )));
    }
    let parts = split_decimal(text.trim()).map_err(|problem| invalid(problem.to_owned()))?;
    let places = usize::from(exponent);
    let (kept, dropped) = parts.fraction.split_at(parts.fraction.len().min(places));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(invalid(format!(
            "has significant digits beyond {exponent} decimal places; it cannot be converted \
             without rounding"
        )));
    }
    let overflow = || invalid("does not fit in a 64-bit count of minor units".to_owned());
    // Accumulate as a negative number when the value is negative, so that
    // i64::MIN itself converts.
    let sign: i64 = if parts.negative { -1 } else { 1 };
    let padding = places - kept.len();
    let digits = parts
        .integer
        .bytes()
        .chain(kept.bytes())
        .chain(std::iter::repeat_n(b'0', padding));
    let mut value: i64 = 0;
    for digit in digits {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(sign * i64::from(digit - b'0')))
            .ok_or_else(overflow)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_exactly() {
        let cases: &[(&str, u8, i64)] = &[
            ("26.990", 2, 2699),
            ("26.99", 2, 2699),
            ("-2.990", 2, -299),
            ("0", 2, 0),
            ("1", 0, 1),
            ("1.0000", 3, 1000),
            ("0.42", 3, 420),
            ("+5.5", 2, 550),
            (".5", 2, 50),
            ("7.", 2, 700),
            (" 130.47 ", 2, 13047),
            ("-9223372036854775808", 0, i64::MIN),
            ("9223372036854775807", 0, i64::MAX),
        ];
        for &(text, exponent, expected) in cases {
            assert_eq!(to_minor_units(text, exponent).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn refuses_rounding_garbage_and_overflow() {
        for (text, exponent) in [
            ("0.125", 2),
            ("1.0001", 3),
            ("", 2),
            ("-", 2),
            (".", 2),
            ("1,50", 2),
            ("1e3", 2),
            ("1.2.3", 2),
            ("--1", 2),
            ("9223372036854775808", 0),
            ("92233720368547758.08", 3),
            ("1", 19),
        ] {
            let err = to_minor_units(text, exponent).unwrap_err();
            assert!(matches!(err, PosLogError::InvalidAmount { .. }), "{text}: {err}");
        }
    }
}
