//! UPC-A and UPC-E: parsing, zero-suppression expansion (UPC-E → UPC-A) and
//! suppression (UPC-A → UPC-E), per GS1 General Specifications 5.2.2.4.2.
//!
//! UPC-E comes as 6 digits (number system 0 implied, no check digit), 7 digits
//! (number system + 6) or 8 digits (number system + 6 + check digit). Only number
//! systems 0 and 1 exist for UPC-E.

use serde::Serialize;

use super::ScanError;
use super::product::{gs1_check_digit, require_digits};

/// UPC-A or UPC-E.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum UpcFormat {
    /// 12 digits.
    #[serde(rename = "UPC-A")]
    UpcA,
    /// 6, 7 or 8 digits, zero-suppressed.
    #[serde(rename = "UPC-E")]
    UpcE,
}

/// A parsed UPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upc {
    /// The digits as given (trimmed).
    pub value: String,
    /// UPC-A or UPC-E.
    pub format: UpcFormat,
    /// The number system digit (first digit of the UPC-A form).
    pub number_system_digit: u8,
    /// UPC-A: the 11 digits before the check digit; UPC-E: number system + 6 digits.
    pub payload: String,
    /// The check digit (computed for UPC-E given without one).
    pub check_digit: u8,
}

/// Expands the six UPC-E data digits with number system `ns` to an 11-digit UPC-A
/// payload.
fn expand(ns: char, six: &str) -> String {
    let d: Vec<char> = six.chars().collect();
    let body: String = match d[5] {
        '0' | '1' | '2' => [d[0], d[1], d[5], '0', '0', '0', '0', d[2], d[3], d[4]]
            .iter()
            .collect(),
        '3' => [d[0], d[1], d[2], '0', '0', '0', '0', '0', d[3], d[4]]
            .iter()
            .collect(),
        '4' => [d[0], d[1], d[2], d[3], '0', '0', '0', '0', '0', d[4]]
            .iter()
            .collect(),
        _ => [d[0], d[1], d[2], d[3], d[4], '0', '0', '0', '0', d[5]]
            .iter()
            .collect(),
    };
    format!("{ns}{body}")
}

/// Parses a UPC-A (12 digits) or UPC-E (6, 7 or 8 digits).
pub fn parse(value: &str) -> Result<Upc, ScanError> {
    let value = value.trim();
    require_digits(value, "UPC")?;
    let bad_check = |found: u8, expected: u8, position: usize| ScanError::BadCheckDigit {
        what: "UPC".into(),
        position,
        found,
        expected,
    };
    match value.len() {
        12 => {
            let expected = gs1_check_digit(&value[..11])?;
            let found = value.as_bytes()[11] - b'0';
            if found != expected {
                return Err(bad_check(found, expected, 12));
            }
            Ok(Upc {
                value: value.into(),
                format: UpcFormat::UpcA,
                number_system_digit: value.as_bytes()[0] - b'0',
                payload: value[..11].into(),
                check_digit: found,
            })
        }
        6..=8 => {
            let (ns, six) = if value.len() == 6 {
                ('0', value)
            } else {
                (value.as_bytes()[0] as char, &value[1..7])
            };
            if !matches!(ns, '0' | '1') {
                return Err(ScanError::Upc(format!(
                    "UPC-E number system must be 0 or 1, got {ns}"
                )));
            }
            let expected = gs1_check_digit(&expand(ns, six))?;
            if value.len() == 8 {
                let found = value.as_bytes()[7] - b'0';
                if found != expected {
                    return Err(bad_check(found, expected, 8));
                }
            }
            Ok(Upc {
                value: value.into(),
                format: UpcFormat::UpcE,
                number_system_digit: ns as u8 - b'0',
                payload: format!("{ns}{six}"),
                check_digit: expected,
            })
        }
        n => Err(ScanError::BadLength {
            what: "UPC".into(),
            expected: "6, 7, 8 or 12".into(),
            found: n,
        }),
    }
}

impl Upc {
    /// The 12-digit UPC-A form (expanding a UPC-E).
    pub fn as_upc_a(&self) -> String {
        match self.format {
            UpcFormat::UpcA => self.value.clone(),
            UpcFormat::UpcE => {
                let ns = self.payload.chars().next().unwrap_or('0');
                format!("{}{}", expand(ns, &self.payload[1..7]), self.check_digit)
            }
        }
    }

    /// The 8-digit UPC-E form; an error when the UPC-A cannot be zero-suppressed.
    pub fn as_upc_e(&self) -> Result<String, ScanError> {
        if self.format == UpcFormat::UpcE {
            return Ok(format!("{}{}", self.payload, self.check_digit));
        }
        let a = &self.value;
        let ns = &a[..1];
        let m = &a[1..6];
        let p = &a[6..11];
        let cannot = || ScanError::Upc(format!("UPC-A {a} cannot be represented as UPC-E"));
        if !matches!(ns, "0" | "1") {
            return Err(cannot());
        }
        let six = if matches!(&m[2..], "000" | "100" | "200") && p.starts_with("00") {
            format!("{}{}{}", &m[..2], &p[2..], &m[2..3])
        } else if &m[3..] == "00" && p.starts_with("000") {
            format!("{}{}3", &m[..3], &p[3..])
        } else if &m[4..] == "0" && p.starts_with("0000") {
            format!("{}{}4", &m[..4], &p[4..])
        } else if p.starts_with("0000") && p.as_bytes()[4] >= b'5' {
            format!("{m}{}", &p[4..])
        } else {
            return Err(cannot());
        };
        Ok(format!("{ns}{six}{}", self.check_digit))
    }

    /// The UPC as a zero-padded GTIN of `width` digits (12, 13 or 14).
    pub fn as_gtin(&self, width: usize) -> String {
        format!("{:0>width$}", self.as_upc_a())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upc_e_expands_and_suppresses() {
        assert_eq!(parse("425261").unwrap().as_upc_a(), "042100005264");
        for (e, a) in [
            ("02345673", "023456000073"),
            ("02345147", "023450000017"),
            ("06397126", "063200009716"),
            ("08679339", "086700000939"),
        ] {
            assert_eq!(parse(e).unwrap().as_upc_a(), a);
            assert_eq!(parse(a).unwrap().as_upc_e().unwrap(), e);
        }
        assert!(parse("123456789012").unwrap().as_upc_e().is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse("2425261").is_err());
        assert!(parse("04252613").is_err());
        assert!(parse("042100005263").is_err());
        assert!(parse("123").is_err());
    }
}
