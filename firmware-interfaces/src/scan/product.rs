//! GTIN parsing for scans: trimming, check digit, the GTIN-8/12/13/14 format, the
//! zero-padded forms, and whether the number is a Restricted Circulation Number.
//!
//! **Invariant:** a [`Gtin`] always has a verified check digit; the format is decided
//! after leading zeros are stripped, so `0614141000036` is a GTIN-12 written on 13
//! digits.

use serde::Serialize;

use super::rcn::{self, Rcn};
use super::{ScanConfig, ScanError};

/// The GTIN family a number belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GtinFormat {
    /// EAN-8.
    #[serde(rename = "GTIN-8")]
    Gtin8,
    /// UPC-A (and UPC-E, expanded).
    #[serde(rename = "GTIN-12")]
    Gtin12,
    /// EAN-13.
    #[serde(rename = "GTIN-13")]
    Gtin13,
    /// ITF-14 and AI (01) trade items above the consumer unit.
    #[serde(rename = "GTIN-14")]
    Gtin14,
}

impl GtinFormat {
    /// Number of digits of this format.
    pub fn digits(self) -> usize {
        match self {
            GtinFormat::Gtin8 => 8,
            GtinFormat::Gtin12 => 12,
            GtinFormat::Gtin13 => 13,
            GtinFormat::Gtin14 => 14,
        }
    }

    /// The format's name, e.g. `GTIN-13`.
    pub fn name(self) -> &'static str {
        match self {
            GtinFormat::Gtin8 => "GTIN-8",
            GtinFormat::Gtin12 => "GTIN-12",
            GtinFormat::Gtin13 => "GTIN-13",
            GtinFormat::Gtin14 => "GTIN-14",
        }
    }

    fn for_significant_digits(n: usize) -> GtinFormat {
        match n {
            0..=8 => GtinFormat::Gtin8,
            9..=12 => GtinFormat::Gtin12,
            13 => GtinFormat::Gtin13,
            _ => GtinFormat::Gtin14,
        }
    }
}

/// A parsed, check-digit-verified GTIN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gtin {
    /// The digits as given (whitespace trimmed, leading zeros kept).
    pub value: String,
    /// The format, decided after stripping leading zeros.
    pub format: GtinFormat,
    /// The digits of the format's width without the check digit.
    pub payload: String,
    /// The check digit.
    pub check_digit: u8,
    /// The GTIN-14 indicator digit (packaging level); `None` for other formats.
    pub packaging_level: Option<u8>,
    /// Restricted Circulation Number details, `None` for an ordinary GTIN.
    pub rcn: Option<Rcn>,
}

/// Checks that `value` is ASCII digits only.
pub(crate) fn require_digits(value: &str, what: &str) -> Result<(), ScanError> {
    if let Some((i, c)) = value.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(ScanError::NotNumeric {
            what: what.into(),
            position: i + 1,
            found: c,
        });
    }
    Ok(())
}

/// The GS1 mod-10 check digit of `payload` (digits only, any length).
pub fn gs1_check_digit(payload: &str) -> Result<u8, ScanError> {
    require_digits(payload, "check digit payload")?;
    crate::gtin::check_digit(payload).ok_or_else(|| ScanError::NotNumeric {
        what: "check digit payload".into(),
        position: 1,
        found: '?',
    })
}

/// Verifies the last digit of `digits` (all ASCII digits, at least 2) as a GS1 mod-10
/// check digit.
pub(crate) fn verify_check_digit(digits: &str, what: &str) -> Result<u8, ScanError> {
    let len = digits.len();
    let expected = gs1_check_digit(&digits[..len - 1])?;
    let found = digits.as_bytes()[len - 1] - b'0';
    if found != expected {
        return Err(ScanError::BadCheckDigit {
            what: what.into(),
            position: len,
            found,
            expected,
        });
    }
    Ok(found)
}

/// Parses a GTIN-8, -12, -13 or -14 (leading zeros allowed, whitespace trimmed) and
/// applies the configured RCN region rules.
pub fn parse(value: &str, config: &ScanConfig) -> Result<Gtin, ScanError> {
    let value = value.trim();
    require_digits(value, "GTIN")?;
    let len = value.len();
    if !matches!(len, 8 | 12 | 13 | 14) {
        return Err(ScanError::BadLength {
            what: "GTIN".into(),
            expected: "8, 12, 13 or 14".into(),
            found: len,
        });
    }
    let check_digit = verify_check_digit(value, "GTIN")?;
    let significant = value.trim_start_matches('0').len();
    let format = GtinFormat::for_significant_digits(significant);
    let padded = &value[len - format.digits()..];
    let mut gtin = Gtin {
        value: value.to_string(),
        format,
        payload: padded[..padded.len() - 1].to_string(),
        check_digit,
        packaging_level: (format == GtinFormat::Gtin14).then(|| padded.as_bytes()[0] - b'0'),
        rcn: None,
    };
    gtin.rcn = rcn::classify(&gtin, config)?;
    Ok(gtin)
}

impl Gtin {
    /// The GTIN zero-padded (or shortened, dropping leading zeros) to `width` digits
    /// (8, 12, 13 or 14); an error when the significant digits do not fit.
    pub fn as_width(&self, width: usize) -> Result<String, ScanError> {
        let significant = self.value.trim_start_matches('0');
        if !matches!(width, 8 | 12 | 13 | 14) || significant.len() > width {
            return Err(ScanError::DoesNotFit {
                value: self.value.clone(),
                width,
            });
        }
        Ok(format!("{significant:0>width$}"))
    }

    /// The 14-digit form.
    pub fn as_gtin_14(&self) -> String {
        format!("{:0>14}", self.value.trim_start_matches('0'))
    }

    /// The digits in the format's own width (13 digits for a GTIN-13, …).
    pub fn as_format_width(&self) -> String {
        let v = &self.value;
        v[v.len() - self.format.digits()..].to_string()
    }
}

/// Parses `value` as a GTIN and re-encodes it at `width` digits (8, 12, 13, 14).
pub fn as_gtin_n(value: &str, width: usize, config: &ScanConfig) -> Result<String, ScanError> {
    parse(value, config)?.as_width(width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_significant_digits() {
        let c = ScanConfig::default();
        assert_eq!(parse("96385074", &c).unwrap().format, GtinFormat::Gtin8);
        assert_eq!(parse("0614141000036", &c).unwrap().format, GtinFormat::Gtin12);
        assert_eq!(parse(" 5901234123457\n", &c).unwrap().format, GtinFormat::Gtin13);
        let g = parse("98765432109213", &c).unwrap();
        assert_eq!((g.format, g.packaging_level), (GtinFormat::Gtin14, Some(9)));
        assert_eq!(g.as_width(13).ok(), None);
    }

    #[test]
    fn errors_say_why() {
        let c = ScanConfig::default();
        assert_eq!(
            parse("5901234123458", &c).unwrap_err().to_string(),
            "bad GTIN check digit at position 13: found 8, expected 7"
        );
        assert!(parse("123", &c).is_err());
        assert!(parse("0123456789\u{2070}\u{2070}\u{2070}", &c).is_err());
    }

    #[test]
    fn re_encodes_widths() {
        let c = ScanConfig::default();
        assert_eq!(as_gtin_n("96385074", 14, &c).unwrap(), "00000096385074");
        assert_eq!(as_gtin_n("00123601057072", 12, &c).unwrap(), "123601057072");
        assert!(as_gtin_n("5901234123457", 12, &c).is_err());
    }
}
