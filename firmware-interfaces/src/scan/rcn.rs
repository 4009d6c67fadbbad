//! Restricted Circulation Numbers (GS1 General Specifications 2.1.11): GTINs that
//! only mean something inside a company or a geographic region, and the
//! variable-measure items (price or weight in the barcode) of the regions we support.
//!
//! The regional rules are data ([`REGION_RULES`]): which two-digit prefix carries
//! what, where the value sits in the 13 digits, how many decimals, and whether a
//! price/weight check digit guards it.

use serde::{Deserialize, Serialize};

use super::product::{Gtin, GtinFormat, require_digits};
use super::{ScanConfig, ScanError};

/// Who may assign the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RcnUsage {
    /// Within a geographic region (EAN-13 prefixes 02, 20–29), by its GS1 member
    /// organisation's rules.
    Geo,
    /// Within one company (GTIN-8 starting 0 or 2, GTIN-12 starting 4).
    Company,
}

/// The regions whose variable-measure rules we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RcnRegion {
    /// Denmark.
    Dk,
    /// Estonia.
    Ee,
    /// Finland.
    Fi,
    /// Germany.
    De,
    /// Great Britain.
    Gb,
    /// Latvia.
    Lv,
    /// Lithuania.
    Lt,
    /// Norway.
    No,
    /// Sweden.
    Se,
}

impl RcnRegion {
    fn currency(self) -> &'static str {
        match self {
            RcnRegion::Dk => "DKK",
            RcnRegion::Gb => "GBP",
            RcnRegion::No => "NOK",
            RcnRegion::Se => "SEK",
            RcnRegion::Ee | RcnRegion::Fi | RcnRegion::De | RcnRegion::Lv | RcnRegion::Lt => "EUR",
        }
    }
}

/// An amount of money: decimal string and ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Money {
    /// The amount, e.g. `12.34`.
    pub amount: String,
    /// ISO 4217 alphabetic code, e.g. `EUR`.
    pub currency: String,
}

/// What a Restricted Circulation Number says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rcn {
    /// Geographic or company-internal.
    pub usage: RcnUsage,
    /// The region whose rules were applied (geographic RCNs only, when configured).
    pub region: Option<RcnRegion>,
    /// Weight in kilograms, as a decimal string.
    pub weight: Option<String>,
    /// Number of pieces.
    pub count: Option<u32>,
    /// Price in the region's currency, as a decimal string.
    pub price: Option<String>,
    /// The price with its currency.
    pub money: Option<Money>,
}

/// What the variable part of an RCN measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// A price in the region's currency.
    Price,
    /// A weight in kilograms.
    Weight,
    /// A count of pieces.
    Count,
}

/// One rule: EAN-13s starting with `prefix` carry `measure` in digits
/// `start..start + len` (0-based) with `decimals` decimals, guarded by a
/// price/weight check digit at `check_at` when given.
#[derive(Debug, Clone, Copy)]
pub struct MeasureRule {
    /// The two-digit prefix.
    pub prefix: &'static str,
    /// What the value is.
    pub measure: Measure,
    /// First digit of the value (0-based).
    pub start: usize,
    /// Number of digits of the value (4 or 5).
    pub len: usize,
    /// Implied decimals.
    pub decimals: usize,
    /// Position of the price/weight check digit, if the region uses one.
    pub check_at: Option<usize>,
}

const fn rule(
    prefix: &'static str,
    measure: Measure,
    start: usize,
    len: usize,
    decimals: usize,
    check_at: Option<usize>,
) -> MeasureRule {
    MeasureRule {
        prefix,
        measure,
        start,
        len,
        decimals,
        check_at,
    }
}

use Measure::{Count, Price, Weight};

/// Denmark: prefix, 5-digit item, 5-digit value, check digit; no price check digit.
const DK: &[MeasureRule] = &[
    rule("21", Price, 7, 5, 2, None),
    rule("22", Price, 7, 5, 2, None),
    rule("23", Price, 7, 5, 2, None),
    rule("24", Price, 7, 5, 2, None),
    rule("26", Weight, 7, 5, 3, None),
    rule("27", Weight, 7, 5, 3, None),
    rule("28", Weight, 7, 5, 3, None),
];
/// Germany: prefix, 4-digit item, price/weight check digit, 5-digit value.
const DE: &[MeasureRule] = &[
    rule("22", Price, 7, 5, 2, Some(6)),
    rule("23", Price, 7, 5, 2, Some(6)),
    rule("25", Count, 7, 5, 0, Some(6)),
    rule("26", Count, 7, 5, 0, Some(6)),
    rule("28", Weight, 7, 5, 3, Some(6)),
    rule("29", Weight, 7, 5, 3, Some(6)),
];
/// Baltic states and Finland: prefix, 6-digit item, 4-digit weight.
const BALTIC_FI: &[MeasureRule] = &[
    rule("23", Weight, 8, 4, 3, None),
    rule("24", Weight, 8, 4, 2, None),
    rule("25", Weight, 8, 4, 1, None),
];
/// Sweden and Norway: prefix, 6-digit item, 4-digit price or weight.
const SE_NO: &[MeasureRule] = &[
    rule("20", Price, 8, 4, 2, None),
    rule("21", Price, 8, 4, 1, None),
    rule("22", Price, 8, 4, 0, None),
    rule("23", Weight, 8, 4, 3, None),
    rule("24", Weight, 8, 4, 2, None),
    rule("25", Weight, 8, 4, 1, None),
];
/// Great Britain: prefix, 5-digit item, price check digit, 4-digit price.
const GB: &[MeasureRule] = &[rule("20", Price, 8, 4, 2, Some(7))];

/// The variable-measure rules of each region.
pub const REGION_RULES: &[(RcnRegion, &[MeasureRule])] = &[
    (RcnRegion::Dk, DK),
    (RcnRegion::De, DE),
    (RcnRegion::Ee, BALTIC_FI),
    (RcnRegion::Fi, BALTIC_FI),
    (RcnRegion::Lv, BALTIC_FI),
    (RcnRegion::Lt, BALTIC_FI),
    (RcnRegion::No, SE_NO),
    (RcnRegion::Se, SE_NO),
    (RcnRegion::Gb, GB),
];

fn rule_for(region: RcnRegion, digits13: &str) -> Option<&'static MeasureRule> {
    REGION_RULES
        .iter()
        .find(|(r, _)| *r == region)
        .and_then(|(_, rules)| rules.iter().find(|m| digits13.starts_with(m.prefix)))
}

/// Weighted products of the price/weight check digit (GS1 GenSpecs 7.9.3).
fn weight_2_minus(d: u32) -> u32 {
    [0, 2, 4, 6, 8, 9, 1, 3, 5, 7][d as usize]
}
fn weight_3(d: u32) -> u32 {
    (d * 3) % 10
}
fn weight_5_plus(d: u32) -> u32 {
    [0, 5, 1, 6, 2, 7, 3, 8, 4, 9][d as usize]
}
const WEIGHT_5_MINUS: [u32; 10] = [0, 5, 9, 4, 8, 3, 7, 2, 6, 1];

/// The check digit of a 4- or 5-digit price/weight field.
pub fn price_weight_check_digit(value: &str) -> Result<u8, ScanError> {
    require_digits(value, "price/weight field")?;
    let d: Vec<u32> = value.bytes().map(|b| u32::from(b - b'0')).collect();
    match d.len() {
        4 => {
            let sum =
                weight_2_minus(d[0]) + weight_2_minus(d[1]) + weight_3(d[2]) + WEIGHT_5_MINUS[d[3] as usize];
            Ok(((sum * 3) % 10) as u8)
        }
        5 => {
            let sum = weight_5_plus(d[0])
                + weight_2_minus(d[1])
                + WEIGHT_5_MINUS[d[2] as usize]
                + weight_5_plus(d[3])
                + weight_2_minus(d[4]);
            let target = (10 - sum % 10) % 10;
            let digit = WEIGHT_5_MINUS.iter().position(|&p| p == target).unwrap_or(0);
            Ok(digit as u8)
        }
        n => Err(ScanError::BadLength {
            what: "price/weight field".into(),
            expected: "4 or 5".into(),
            found: n,
        }),
    }
}

/// `digits` with a decimal point `decimals` places from the right, leading zeros
/// of the integer part removed (`"00150"`, 3 → `"0.150"`).
pub(crate) fn decimal_string(digits: &str, decimals: usize) -> String {
    let (int, frac) = if decimals >= digits.len() {
        ("", digits)
    } else {
        digits.split_at(digits.len() - decimals)
    };
    let frac = if decimals > digits.len() {
        format!("{frac:0>decimals$}")
    } else {
        frac.to_string()
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if decimals == 0 {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

/// Decides whether `gtin` is an RCN and, for a geographic one in a configured
/// region, decodes its variable measure (verifying the price/weight check digit
/// when the region has one and `rcn_verify_variable_measure` is on).
pub(crate) fn classify(gtin: &Gtin, config: &ScanConfig) -> Result<Option<Rcn>, ScanError> {
    let digits = gtin.as_format_width();
    let usage = match gtin.format {
        GtinFormat::Gtin8 if digits.starts_with(['0', '2']) => RcnUsage::Company,
        GtinFormat::Gtin12 if digits.starts_with('2') => RcnUsage::Geo,
        GtinFormat::Gtin12 if digits.starts_with('4') => RcnUsage::Company,
        GtinFormat::Gtin13 if digits.starts_with('2') => RcnUsage::Geo,
        _ => return Ok(None),
    };
    let mut rcn = Rcn {
        usage,
        region: None,
        weight: None,
        count: None,
        price: None,
        money: None,
    };
    if usage == RcnUsage::Company {
        return Ok(Some(rcn));
    }
    let Some(region) = config.rcn_region else {
        return Ok(Some(rcn));
    };
    rcn.region = Some(region);
    if gtin.format != GtinFormat::Gtin13 {
        return Ok(Some(rcn));
    }
    let Some(rule) = rule_for(region, &digits) else {
        return Ok(Some(rcn));
    };
    let value = &digits[rule.start..rule.start + rule.len];
    if let Some(at) = rule.check_at
        && config.rcn_verify_variable_measure
    {
        let expected = price_weight_check_digit(value)?;
        let found = digits.as_bytes()[at] - b'0';
        if found != expected {
            return Err(ScanError::BadCheckDigit {
                what: "price/weight".into(),
                position: at + 1 + (gtin.value.len() - 13),
                found,
                expected,
            });
        }
    }
    let amount = decimal_string(value, rule.decimals);
    match rule.measure {
        Measure::Weight => rcn.weight = Some(amount),
        Measure::Price => {
            rcn.money = Some(Money {
                amount: amount.clone(),
                currency: region.currency().into(),
            });
            rcn.price = Some(amount);
        }
        Measure::Count => rcn.count = value.parse().ok(),
    }
    Ok(Some(rcn))
}

impl Rcn {
    /// True when the barcode carries a price, weight or count.
    pub fn has_variable_measure(&self) -> bool {
        self.weight.is_some() || self.price.is_some() || self.count.is_some()
    }
}

/// The GTIN with its variable part (and its price/weight check digit) zeroed, so
/// every package of the same item gives the same number. Unchanged for ordinary
/// GTINs, company RCNs and prefixes without a rule; an error for a geographic RCN
/// when no region is configured.
pub fn without_variable_measure(value: &str, config: &ScanConfig) -> Result<Gtin, ScanError> {
    let gtin = super::product::parse(value, config)?;
    let Some(rcn) = &gtin.rcn else {
        return Ok(gtin);
    };
    if rcn.usage == RcnUsage::Company {
        return Ok(gtin);
    }
    let Some(region) = config.rcn_region else {
        return Err(ScanError::Rcn(
            "cannot zero the variable measure: no RCN region is configured".into(),
        ));
    };
    if gtin.format != GtinFormat::Gtin13 {
        return Ok(gtin);
    }
    let digits = gtin.as_format_width();
    let Some(rule) = rule_for(region, &digits) else {
        return Ok(gtin);
    };
    let from = rule.check_at.unwrap_or(rule.start).min(rule.start);
    let to = rule.start + rule.len;
    let mut payload: String = digits[..12].to_string();
    payload.replace_range(from..to, &"0".repeat(to - from));
    let full = crate::gtin::with_check_digit(&payload)
        .ok_or_else(|| ScanError::Rcn("zeroed RCN is not numeric".into()))?;
    super::product::parse(&full, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(region: RcnRegion) -> ScanConfig {
        ScanConfig {
            rcn_region: Some(region),
            ..ScanConfig::default()
        }
    }

    #[test]
    fn price_weight_check_digits() {
        assert_eq!(price_weight_check_digit("2875").unwrap(), 9);
        assert_eq!(price_weight_check_digit("14685").unwrap(), 6);
        assert!(price_weight_check_digit("123").is_err());
        assert!(price_weight_check_digit("abcd").is_err());
    }

    #[test]
    fn regional_measures() {
        let g = super::super::product::parse("2302148210869", &cfg(RcnRegion::No)).unwrap();
        assert_eq!(g.rcn.unwrap().weight.as_deref(), Some("1.086"));
        let g = super::super::product::parse("2011122912346", &cfg(RcnRegion::Gb)).unwrap();
        assert_eq!(g.rcn.unwrap().money.unwrap().currency, "GBP");
        assert!(super::super::product::parse("2011122812349", &cfg(RcnRegion::Gb)).is_err());
    }

    #[test]
    fn zeroing() {
        let g = without_variable_measure("2811111068708", &cfg(RcnRegion::De)).unwrap();
        assert_eq!(g.value, "2811110000006");
        assert!(without_variable_measure("2302148210869", &ScanConfig::default()).is_err());
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal_string("00150", 3), "0.150");
        assert_eq!(decimal_string("1234", 0), "1234");
        assert_eq!(decimal_string("0010", 0), "10");
        assert_eq!(decimal_string("5", 3), "0.005");
    }
}
