//! Money as whole minor units (cents, yen, fils) tagged with an ISO 4217 currency.
//!
//! Prices, refunds and totals cross the POS, the cloud and the screens; a rounding
//! difference of one cent between them is a support call. So this module has one job:
//! hold amounts exactly and refuse anything that would make them inexact.
//!
//! Invariants:
//! - An amount is an `i64` count of minor units. There are no floats anywhere; decimal
//!   text is parsed digit by digit ([`Money::parse_decimal`]).
//! - A [`Currency`] always holds exactly three ASCII uppercase letters; the only ways to
//!   make one ([`Currency::new`], [`FromStr`], deserialization) check that.
//! - Arithmetic never wraps and never mixes currencies: it returns a [`MoneyError`]
//!   instead.
//! - [`Display`](fmt::Display) writes exactly the digits the currency's minor unit allows
//!   ("12.34 EUR", "1500 JPY", "1.250 KWD"), and [`Money::parse_decimal`] reads that text
//!   back to the same amount.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Why an amount or a currency code was rejected, or why arithmetic on money failed.
///
/// Callers branch on the variant (a mismatch is a data bug, a bad amount is bad input);
/// the message is written for the associate or developer who reads it in a log or on
/// a screen.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MoneyError {
    /// Two amounts in different currencies were added, subtracted or summed. The agent
    /// never converts currencies, so this always points at inconsistent data.
    #[error(
        "cannot combine an amount in {left} with an amount in {right}; \
         amounts in different currencies are never added or subtracted"
    )]
    CurrencyMismatch {
        /// The currency of the left-hand (or expected) amount.
        left: Currency,
        /// The currency of the right-hand (or offending) amount.
        right: Currency,
    },
    /// The result does not fit in a signed 64-bit count of minor units.
    #[error(
        "the amount is too large to calculate with: it does not fit in a signed \
         64-bit count of minor units"
    )]
    Overflow,
    /// The text is not an ISO 4217 alphabetic code (three uppercase ASCII letters).
    #[error(
        "{0:?} is not a currency code: expected three uppercase letters \
         (ISO 4217), such as EUR or USD"
    )]
    BadCurrency(String),
    /// The text is not a decimal amount this currency can hold exactly.
    #[error("{text:?} is not a valid amount: {reason}")]
    BadAmount {
        /// The rejected text, exactly as given.
        text: String,
        /// What is wrong with it, as a clause that completes the sentence.
        reason: String,
    },
}

/// An ISO 4217 alphabetic currency code such as `EUR`.
///
/// It exists so that a currency is checked once, where it enters the agent, and is a
/// cheap `Copy` value afterwards. It serializes as the plain code string (`"EUR"`), and
/// deserializing validates the code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Checks and wraps a currency code.
    ///
    /// The code must be exactly three ASCII uppercase letters. It is not checked against
    /// the ISO 4217 list, so a code ISO adds later still works; the minor unit of an
    /// unknown code is 2 (see [`Currency::minor_unit_exponent`]).
    pub fn new(code: &str) -> Result<Currency, MoneyError> {
        match code.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(MoneyError::BadCurrency(code.to_owned())),
        }
    }

    /// The three-letter code, for display, storage and the wire.
    pub fn as_str(&self) -> &str {
        // Every constructor checks for ASCII uppercase letters, so the bytes are UTF-8.
        std::str::from_utf8(&self.0).expect("a Currency holds only ASCII uppercase letters")
    }

    /// How many decimal digits the currency's minor unit has: 0 for currencies without
    /// a minor unit in use (JPY, KRW, …), 3 for the dinar-style currencies (KWD, BHD, …)
    /// and 2 for everything else.
    ///
    /// It decides how decimal text maps to minor units, so the POS, the cloud and the
    /// screens must agree on it; the table follows ISO 4217.
    pub fn minor_unit_exponent(&self) -> u8 {
        match &self.0 {
            b"BIF" | b"CLP" | b"DJF" | b"GNF" | b"ISK" | b"JPY" | b"KMF" | b"KRW" | b"PYG" | b"RWF"
            | b"UGX" | b"UYI" | b"VND" | b"VUV" | b"XAF" | b"XOF" | b"XPF" => 0,
            b"BHD" | b"IQD" | b"JOD" | b"KWD" | b"LYD" | b"OMR" | b"TND" => 3,
            _ => 2,
        }
    }
}

/// Shows the code as text (`Currency("EUR")`) rather than as three byte values.
impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Currency").field(&self.as_str()).finish()
    }
}

/// Writes the bare code, e.g. `EUR`.
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses with the same checks as [`Currency::new`].
impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::new(s)
    }
}

/// Serializes as the plain code string, `"EUR"`.
impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Deserializes from the plain code string and rejects anything [`Currency::new`]
/// rejects, so a bad code in a payload is caught at the boundary.
impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::new(&code).map_err(serde::de::Error::custom)
    }
}

/// An exact amount of money: a signed count of minor units in one currency.
///
/// `Money { minor: 1234, currency: EUR }` is 12.34 EUR. Negative amounts are allowed
/// (refunds, discounts). Arithmetic goes through the `checked_*` methods, which refuse
/// to mix currencies or overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// The amount in minor units of `currency` (cents for EUR, yen for JPY, fils for KWD).
    pub minor: i64,
    /// The currency the minor units belong to.
    pub currency: Currency,
}

impl Money {
    /// Wraps a count of minor units; exists so call sites read as `Money::new(1234, eur)`.
    pub const fn new(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    /// Zero in `currency`: the starting point of every total.
    pub const fn zero(currency: Currency) -> Money {
        Money { minor: 0, currency }
    }

    /// `self + other`, or an error when the currencies differ or the sum overflows.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    /// `self - other`, or an error when the currencies differ or the difference overflows.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self.minor.checked_sub(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    /// `self × qty` (a line total from a unit price), or [`MoneyError::Overflow`].
    pub fn checked_mul(self, qty: i64) -> Result<Money, MoneyError> {
        let minor = self.minor.checked_mul(qty).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    /// Adds up amounts that must all be in `currency`; an empty iterator gives zero.
    ///
    /// The currency is passed in rather than taken from the first item so that an empty
    /// total still has a currency and a stray item in another currency is always caught.
    pub fn sum<I: IntoIterator<Item = Money>>(currency: Currency, iter: I) -> Result<Money, MoneyError> {
        iter.into_iter()
            .try_fold(Money::zero(currency), Money::checked_add)
    }

    /// Parses decimal text such as `"79.990"`, `"-2.99"`, `"12"` or `"0.5"` exactly into
    /// minor units of `currency`.
    ///
    /// Accepted: an optional leading `-`, at least one digit, and optionally a `.`
    /// followed by at least one digit. Digits beyond the currency's minor unit are
    /// allowed only when they are zeros (`"79.990"` is 7999 cents; `"1.005"` EUR is an
    /// error, never a rounded value). Rejected with a [`MoneyError::BadAmount`] naming the
    /// text: empty text, spaces, `+`, exponents, commas (`"1,00"`), thousands separators,
    /// and amounts outside the `i64` range of minor units.
    pub fn parse_decimal(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let bad = |reason: String| MoneyError::BadAmount {
            text: text.to_owned(),
            reason,
        };
        let only_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());

        if text.is_empty() {
            return Err(bad("the text is empty".to_owned()));
        }
        if text.trim() != text {
            return Err(bad("it has spaces before or after the number".to_owned()));
        }
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int_part, frac_part) = match unsigned.split_once('.') {
            Some((int_part, frac_part)) => (int_part, Some(frac_part)),
            None => (unsigned, None),
        };
        if unsigned.contains(',') {
            return Err(bad(
                "use a dot as the decimal separator and no thousands separators".to_owned(),
            ));
        }
        if !only_digits(int_part) || !frac_part.is_none_or(only_digits) {
            return Err(bad(
                "it may contain only digits, one decimal point and a leading minus sign".to_owned(),
            ));
        }
        if int_part.is_empty() {
            return Err(bad(
                "it needs at least one digit before the decimal point".to_owned()
            ));
        }
        if frac_part == Some("") {
            return Err(bad(
                "it needs at least one digit after the decimal point".to_owned()
            ));
        }
        let frac_part = frac_part.unwrap_or_default();

        let exponent = usize::from(currency.minor_unit_exponent());
        let (kept, extra) = frac_part.split_at(frac_part.len().min(exponent));
        if extra.bytes().any(|b| b != b'0') {
            return Err(bad(format!(
                "it has more decimal places than {currency} allows ({exponent})"
            )));
        }

        // Integer digits, then the kept fraction digits, then zeros up to the exponent:
        // "0.5" EUR reads as the digits 0, 5, 0 = 50 cents.
        let padding = std::iter::repeat_n(b'0', exponent - kept.len());
        let too_large = || bad("it is too large to store as a count of minor units".to_owned());
        let mut magnitude: i128 = 0;
        for byte in int_part.bytes().chain(kept.bytes()).chain(padding) {
            magnitude = magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(byte - b'0')))
                .ok_or_else(too_large)?;
        }
        let signed = if negative { -magnitude } else { magnitude };
        let minor = i64::try_from(signed).map_err(|_| too_large())?;
        Ok(Money::new(minor, currency))
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

/// Writes the amount with exactly the currency's minor-unit digits and the code:
/// "12.34 EUR", "-2.99 EUR", "1500 JPY", "1.250 KWD".
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = u32::from(self.currency.minor_unit_exponent());
        let sign = if self.minor < 0 { "-" } else { "" };
        // unsigned_abs so that i64::MIN prints instead of overflowing.
        let magnitude = self.minor.unsigned_abs();
        if exponent == 0 {
            return write!(f, "{sign}{magnitude} {}", self.currency);
        }
        let scale = 10u64.pow(exponent);
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            magnitude / scale,
            magnitude % scale,
            self.currency,
            width = exponent as usize,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cur(code: &str) -> Currency {
        Currency::new(code).expect("test currency codes are valid")
    }

    fn eur(minor: i64) -> Money {
        Money::new(minor, cur("EUR"))
    }

    #[test]
    fn currency_new_accepts_three_uppercase_letters_only() {
        let cases: &[(&str, bool)] = &[
            ("EUR", true),
            ("JPY", true),
            ("XYZ", true),
            ("eur", false),
            ("Eur", false),
            ("EU", false),
            ("EURO", false),
            ("", false),
            ("E1R", false),
            ("ÉUR", false),
            (" EU", false),
        ];
        for &(code, ok) in cases {
            let result = Currency::new(code);
            assert_eq!(result.is_ok(), ok, "{code:?}: {result:?}");
            match result {
                Ok(c) => assert_eq!(c.as_str(), code),
                Err(e) => assert_eq!(e, MoneyError::BadCurrency(code.to_owned())),
            }
        }
    }

    #[test]
    fn bad_currency_message_names_the_value() {
        let message = Currency::new("eur").unwrap_err().to_string();
        assert!(message.contains("\"eur\""), "{message}");
        assert!(message.contains("three uppercase letters"), "{message}");
    }

    #[test]
    fn minor_unit_exponents_follow_iso_4217() {
        let zero = [
            "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
            "XAF", "XOF", "XPF",
        ];
        let three = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
        for code in zero {
            assert_eq!(cur(code).minor_unit_exponent(), 0, "{code}");
        }
        for code in three {
            assert_eq!(cur(code).minor_unit_exponent(), 3, "{code}");
        }
        for code in ["EUR", "USD", "GBP", "CHF", "SEK", "ZZZ"] {
            assert_eq!(cur(code).minor_unit_exponent(), 2, "{code}");
        }
    }

    #[test]
    fn currency_display_debug_and_from_str() {
        let c: Currency = "GBP".parse().expect("valid code");
        assert_eq!(c.to_string(), "GBP");
        assert_eq!(format!("{c:?}"), "Currency(\"GBP\")");
        assert!("gbp".parse::<Currency>().is_err());
    }

    #[test]
    fn currency_serde_is_the_plain_string_and_validates() {
        assert_eq!(serde_json::to_string(&cur("USD")).expect("serializes"), "\"USD\"");
        let back: Currency = serde_json::from_str("\"USD\"").expect("deserializes");
        assert_eq!(back, cur("USD"));
        let err = serde_json::from_str::<Currency>("\"usd\"").unwrap_err();
        assert!(err.to_string().contains("\"usd\""), "{err}");
        assert!(serde_json::from_str::<Currency>("12").is_err());
    }

    #[test]
    fn money_serde_round_trips_with_code_string() {
        let m = Money::new(-299, cur("EUR"));
        let json = serde_json::to_string(&m).expect("serializes");
        assert_eq!(json, r#"{"minor":-299,"currency":"EUR"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).expect("deserializes"), m);
        assert!(serde_json::from_str::<Money>(r#"{"minor":1,"currency":"E"}"#).is_err());
    }

    #[test]
    fn display_uses_the_currency_exponent() {
        let cases: &[(i64, &str, &str)] = &[
            (1234, "EUR", "12.34 EUR"),
            (-299, "EUR", "-2.99 EUR"),
            (5, "EUR", "0.05 EUR"),
            (-5, "EUR", "-0.05 EUR"),
            (0, "EUR", "0.00 EUR"),
            (100, "USD", "1.00 USD"),
            (1500, "JPY", "1500 JPY"),
            (-1500, "JPY", "-1500 JPY"),
            (1250, "KWD", "1.250 KWD"),
            (7, "KWD", "0.007 KWD"),
            (i64::MIN, "EUR", "-92233720368547758.08 EUR"),
            (i64::MAX, "JPY", "9223372036854775807 JPY"),
        ];
        for &(minor, code, expected) in cases {
            assert_eq!(Money::new(minor, cur(code)).to_string(), expected);
        }
    }

    #[test]
    fn parse_decimal_accepts_exact_amounts() {
        let cases: &[(&str, &str, i64)] = &[
            ("79.990", "EUR", 7999),
            ("-2.99", "EUR", -299),
            ("12", "EUR", 1200),
            ("0.5", "EUR", 50),
            ("0.05", "EUR", 5),
            ("-0.05", "EUR", -5),
            ("-0", "EUR", 0),
            ("007.10", "EUR", 710),
            ("1.0000", "EUR", 100),
            ("1500", "JPY", 1500),
            ("1500.00", "JPY", 1500),
            ("1.25", "KWD", 1250),
            ("1.250", "KWD", 1250),
            ("0.001", "KWD", 1),
            ("92233720368547758.07", "EUR", i64::MAX),
            ("-92233720368547758.08", "EUR", i64::MIN),
        ];
        for &(text, code, minor) in cases {
            let parsed = Money::parse_decimal(text, cur(code));
            assert_eq!(parsed, Ok(Money::new(minor, cur(code))), "{text} {code}");
        }
    }

    #[test]
    fn parse_decimal_rejects_with_a_reason_naming_the_text() {
        let cases: &[(&str, &str, &str)] = &[
            ("1.005", "EUR", "more decimal places than EUR allows (2)"),
            ("12.5", "JPY", "more decimal places than JPY allows (0)"),
            ("1.0001", "KWD", "more decimal places than KWD allows (3)"),
            ("1,00", "EUR", "decimal separator"),
            ("1,000.00", "EUR", "thousands separators"),
            ("abc", "EUR", "only digits"),
            ("", "EUR", "empty"),
            (" 12", "EUR", "spaces"),
            ("12 ", "EUR", "spaces"),
            ("+12", "EUR", "only digits"),
            ("1e3", "EUR", "only digits"),
            ("1.2.3", "EUR", "only digits"),
            ("--1", "EUR", "only digits"),
            ("١٢", "EUR", "only digits"),
            ("-", "EUR", "before the decimal point"),
            (".5", "EUR", "before the decimal point"),
            ("5.", "EUR", "after the decimal point"),
            ("92233720368547758.08", "EUR", "too large"),
            ("-92233720368547758.09", "EUR", "too large"),
            ("99999999999999999999999999999999999999999999", "EUR", "too large"),
        ];
        for &(text, code, reason_part) in cases {
            let err = Money::parse_decimal(text, cur(code)).unwrap_err();
            let MoneyError::BadAmount { text: got, reason } = &err else {
                panic!("{text:?}: expected BadAmount, got {err:?}");
            };
            assert_eq!(got, text);
            assert!(reason.contains(reason_part), "{text:?}: {reason}");
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn add_and_sub_check_currency_and_overflow() {
        assert_eq!(eur(150).checked_add(eur(-50)), Ok(eur(100)));
        assert_eq!(eur(150).checked_sub(eur(200)), Ok(eur(-50)));
        let mismatch = MoneyError::CurrencyMismatch {
            left: cur("EUR"),
            right: cur("USD"),
        };
        let usd = Money::new(1, cur("USD"));
        assert_eq!(eur(1).checked_add(usd), Err(mismatch.clone()));
        assert_eq!(eur(1).checked_sub(usd), Err(mismatch.clone()));
        let message = mismatch.to_string();
        assert!(message.contains("EUR") && message.contains("USD"), "{message}");
        assert_eq!(eur(i64::MAX).checked_add(eur(1)), Err(MoneyError::Overflow));
        assert_eq!(eur(i64::MIN).checked_sub(eur(1)), Err(MoneyError::Overflow));
    }

    #[test]
    fn mul_keeps_currency_and_checks_overflow() {
        assert_eq!(eur(1999).checked_mul(3), Ok(eur(5997)));
        assert_eq!(eur(1999).checked_mul(-1), Ok(eur(-1999)));
        assert_eq!(eur(1999).checked_mul(0), Ok(eur(0)));
        assert_eq!(
            Money::new(7, cur("JPY")).checked_mul(2),
            Ok(Money::new(14, cur("JPY")))
        );
        assert_eq!(eur(i64::MAX / 2 + 1).checked_mul(2), Err(MoneyError::Overflow));
        assert_eq!(eur(i64::MIN).checked_mul(-1), Err(MoneyError::Overflow));
    }

    #[test]
    fn sum_totals_one_currency() {
        let total = Money::sum(cur("EUR"), [eur(100), eur(250), eur(-50)]);
        assert_eq!(total, Ok(eur(300)));
        assert_eq!(Money::sum(cur("JPY"), []), Ok(Money::zero(cur("JPY"))));
        assert_eq!(
            Money::sum(cur("EUR"), [eur(1), Money::new(1, cur("USD"))]),
            Err(MoneyError::CurrencyMismatch {
                left: cur("EUR"),
                right: cur("USD"),
            })
        );
        // Even a lone item must match the currency the caller asked for.
        assert!(Money::sum(cur("USD"), [eur(1)]).is_err());
        assert_eq!(
            Money::sum(cur("EUR"), [eur(i64::MAX), eur(1)]),
            Err(MoneyError::Overflow)
        );
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        prop::sample::select(vec!["EUR", "JPY", "KWD", "USD", "CLP", "BHD"]).prop_map(cur)
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(minor in any::<i64>(), currency in any_currency()) {
            let money = Money::new(minor, currency);
            let shown = money.to_string();
            let suffix = format!(" {currency}");
            let amount = shown.strip_suffix(&suffix).expect("Display ends with the code");
            prop_assert_eq!(Money::parse_decimal(amount, currency), Ok(money));
        }

        #[test]
        fn trailing_zeros_do_not_change_the_amount(
            minor in any::<i64>(),
            currency in any_currency(),
            zeros in 1usize..6,
        ) {
            let money = Money::new(minor, currency);
            let shown = money.to_string();
            let amount = shown.strip_suffix(&format!(" {currency}")).expect("ends with code");
            let padded = if amount.contains('.') {
                format!("{amount}{}", "0".repeat(zeros))
            } else {
                format!("{amount}.{}", "0".repeat(zeros))
            };
            prop_assert_eq!(Money::parse_decimal(&padded, currency), Ok(money));
        }

        #[test]
        fn add_then_sub_is_identity(a in any::<i64>(), b in any::<i64>()) {
            if let Ok(sum) = eur(a).checked_add(eur(b)) {
                prop_assert_eq!(sum.checked_sub(eur(b)), Ok(eur(a)));
            } else {
                prop_assert!(a.checked_add(b).is_none());
            }
            if let Ok(difference) = eur(a).checked_sub(eur(b)) {
                prop_assert_eq!(difference.checked_add(eur(b)), Ok(eur(a)));
            } else {
                prop_assert!(a.checked_sub(b).is_none());
            }
        }
    }
}
