//! GS1 element strings and messages: an AI followed by its data, back to back, with
//! FNC1 (sent by scanners as GS, 0x1D, or a configured separator) after every
//! variable-length field that is not last; and the human-readable `(AI)data` form.
//!
//! Each element is checked against the AI table ([`super::ai_table`]): length, data
//! type, real dates (with the GS1 century rule), and the check digits of GTIN, GLN
//! and SSCC. A bad check digit does not stop the parse: it is reported on the
//! element (`gtin_error`…) so that the caller decides; everything else is an error.

use serde::Serialize;

use super::ai_table::{self, AiDef};
use super::product::{self, Gtin, require_digits, verify_check_digit};
use super::rcn::{Money, decimal_string};
use super::{ScanConfig, ScanError};

/// The FNC1 character as scanners transmit it.
pub const GS: char = '\u{1d}';

/// A Global Location Number (AIs 410–417).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gln {
    /// The 13 digits.
    pub value: String,
    /// The 12 digits before the check digit.
    pub payload: String,
    /// The check digit.
    pub check_digit: u8,
}

/// A Serial Shipping Container Code (AI 00).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sscc {
    /// The 18 digits.
    pub value: String,
    /// The extension digit (first digit).
    pub extension_digit: u8,
    /// The 17 digits before the check digit.
    pub payload: String,
    /// The check digit.
    pub check_digit: u8,
}

/// Parses an 18-digit SSCC with its check digit.
pub fn parse_sscc(value: &str) -> Result<Sscc, ScanError> {
    let value = value.trim();
    require_digits(value, "SSCC")?;
    if value.len() != 18 {
        return Err(ScanError::BadLength {
            what: "SSCC".into(),
            expected: "18".into(),
            found: value.len(),
        });
    }
    let check_digit = verify_check_digit(value, "SSCC")?;
    Ok(Sscc {
        value: value.into(),
        extension_digit: value.as_bytes()[0] - b'0',
        payload: value[..17].into(),
        check_digit,
    })
}

fn parse_gln(value: &str) -> Result<Gln, ScanError> {
    require_digits(value, "GLN")?;
    if value.len() != 13 {
        return Err(ScanError::BadLength {
            what: "GLN".into(),
            expected: "13".into(),
            found: value.len(),
        });
    }
    let check_digit = verify_check_digit(value, "GLN")?;
    Ok(Gln {
        value: value.into(),
        payload: value[..12].into(),
        check_digit,
    })
}

/// One AI with its data, and what the data means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElementString {
    /// The Application Identifier.
    pub ai: String,
    /// The data after the AI.
    pub value: String,
    /// The data split by the AI's format components.
    pub pattern_groups: Vec<String>,
    /// The GLN of AIs 410–417.
    pub gln: Option<Gln>,
    /// Why the GLN is invalid.
    pub gln_error: Option<String>,
    /// The GTIN of AIs 01, 02, 03.
    pub gtin: Option<Gtin>,
    /// Why the GTIN is invalid.
    pub gtin_error: Option<String>,
    /// The SSCC of AI 00.
    pub sscc: Option<Sscc>,
    /// Why the SSCC is invalid.
    pub sscc_error: Option<String>,
    /// The date of date AIs, `YYYY-MM-DD`.
    pub date: Option<String>,
    /// The date and time of date-time AIs, `YYYY-MM-DDTHH:MM:SS`.
    pub datetime: Option<String>,
    /// The decimal value of measure and amount AIs.
    pub decimal: Option<String>,
    /// Amount with ISO currency (AIs 391n, 393n).
    pub money: Option<Money>,
}

impl ElementString {
    /// The element as `(AI)data`.
    pub fn as_hri(&self) -> String {
        format!("({}){}", self.ai, self.value)
    }

    /// The first check-digit problem of the element, if any.
    pub fn check_error(&self) -> Option<&str> {
        self.gtin_error
            .as_deref()
            .or(self.gln_error.as_deref())
            .or(self.sscc_error.as_deref())
    }

    /// The AI's data title from the AI table.
    pub fn data_title(&self) -> String {
        ai_table::lookup(&self.ai).map(|d| d.title).unwrap_or_default()
    }
}

/// The year of the system clock, for the two-digit-year window when the
/// configuration names no reference year.
fn current_year() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

fn two(s: &str) -> u32 {
    s.parse().unwrap_or(99)
}

/// A GS1 `YYMMDD` date: century by the sliding window of GenSpecs 7.12 (49 years
/// back, 50 ahead of the reference year), day `00` = last day of the month.
fn gs1_date(yymmdd: &str, config: &ScanConfig) -> Option<String> {
    let reference = config.reference_year.map(i64::from).unwrap_or_else(current_year);
    let yy = i64::from(two(&yymmdd[..2]));
    let month = two(&yymmdd[2..4]);
    let mut day = two(&yymmdd[4..6]);
    let diff = yy - reference.rem_euclid(100);
    let century = reference - reference.rem_euclid(100)
        + if diff >= 51 {
            -100
        } else if diff <= -50 {
            100
        } else {
            0
        };
    let year = century + yy;
    let last = days_in_month(year, month);
    if last == 0 || day > last {
        return None;
    }
    if day == 0 {
        day = last;
    }
    Some(format!("{year:04}-{month:02}-{day:02}"))
}

fn time_of(hh: &str, mm: &str, ss: &str) -> Option<String> {
    let (h, m, s) = (two(hh), two(mm), two(ss));
    (h < 24 && m < 60 && s < 60).then(|| format!("{h:02}:{m:02}:{s:02}"))
}

/// Date and date-time of the AIs that carry them: `(date, datetime)`, or an error
/// text when the date or time is not real.
fn dates(ai: &str, value: &str, config: &ScanConfig) -> Result<(Option<String>, Option<String>), String> {
    let date_len_time: Option<(usize, &str)> = match ai {
        "11" | "12" | "13" | "15" | "16" | "17" | "7006" | "4326" | "7007" => Some((6, "")),
        "4324" | "4325" | "7003" | "7011" => Some((6, value.get(6..).unwrap_or(""))),
        "8008" => Some((6, value.get(6..).unwrap_or(""))),
        _ => None,
    };
    let Some((n, time)) = date_len_time else {
        return Ok((None, None));
    };
    let Some(date) = value.get(..n).and_then(|d| gs1_date(d, config)) else {
        return Err(format!(
            "{:?} is not a real date",
            value.get(..n).unwrap_or(value)
        ));
    };
    if ai == "7007"
        && let Some(end) = value.get(6..12)
        && gs1_date(end, config).is_none()
    {
        return Err(format!("{end:?} is not a real date"));
    }
    let time = match (ai, time.len()) {
        (_, 0) => None,
        ("4324" | "4325", _) if time == "9999" => None,
        ("8008", 2) => Some(time_of(time, "00", "00")),
        ("8008", 4) => Some(time_of(&time[..2], &time[2..], "00")),
        ("8008", 6) => Some(time_of(&time[..2], &time[2..4], &time[4..])),
        (_, 4) => Some(time_of(&time[..2], &time[2..], "00")),
        _ => Some(None),
    };
    match time {
        None => Ok((Some(date), None)),
        Some(Some(t)) => Ok((Some(date.clone()), Some(format!("{date}T{t}")))),
        Some(None) => Err(format!("{time:?} is not a real time")),
    }
}

/// ISO 4217 numeric → alphabetic codes for the currencies of our markets and
/// their neighbours.
const CURRENCIES: &[(&str, &str)] = &[
    ("036", "AUD"),
    ("124", "CAD"),
    ("156", "CNY"),
    ("203", "CZK"),
    ("208", "DKK"),
    ("348", "HUF"),
    ("352", "ISK"),
    ("392", "JPY"),
    ("554", "NZD"),
    ("578", "NOK"),
    ("710", "ZAR"),
    ("752", "SEK"),
    ("756", "CHF"),
    ("826", "GBP"),
    ("840", "USD"),
    ("946", "RON"),
    ("949", "TRY"),
    ("975", "BGN"),
    ("978", "EUR"),
    ("985", "PLN"),
];

fn decimals(ai: &str, value: &str) -> (Option<String>, Option<Money>) {
    if ai.len() != 4 {
        return (None, None);
    }
    let n = usize::from(ai.as_bytes()[3] - b'0');
    let family = &ai[..3];
    let measure = matches!(family.as_bytes()[..2], [b'3', b'1'..=b'6']);
    if measure || matches!(family, "390" | "392" | "394" | "395") {
        return (Some(decimal_string(value, n)), None);
    }
    if matches!(family, "391" | "393") && value.len() > 3 {
        let amount = decimal_string(&value[3..], n);
        let money = CURRENCIES
            .iter()
            .find(|(num, _)| *num == &value[..3])
            .map(|(_, alpha)| Money {
                amount: amount.clone(),
                currency: (*alpha).into(),
            });
        return (Some(amount), money);
    }
    (None, None)
}

/// Matches `def`'s format greedily against `data` (which ends at the next
/// separator); returns the pattern groups.
fn match_format(def: &AiDef, data: &str) -> Result<Vec<String>, ScanError> {
    let chars: Vec<char> = data.chars().collect();
    let mut pos = 0;
    let mut groups = Vec::new();
    for comp in ai_table::components(def.format) {
        let avail = chars[pos..]
            .iter()
            .take(comp.max)
            .take_while(|c| {
                if comp.numeric {
                    c.is_ascii_digit()
                } else {
                    ai_table::is_cset82(**c)
                }
            })
            .count();
        if avail < comp.min {
            if comp.optional && avail < comp.min {
                break;
            }
            let expected = if comp.min == comp.max {
                format!(
                    "{} {}",
                    comp.min,
                    if comp.numeric { "digits" } else { "characters" }
                )
            } else {
                format!(
                    "{} to {} {}",
                    comp.min,
                    comp.max,
                    if comp.numeric { "digits" } else { "characters" }
                )
            };
            return Err(ScanError::BadValue {
                ai: def.ai.clone(),
                reason: format!("expected {expected} at data position {}", pos + 1),
            });
        }
        groups.push(chars[pos..pos + avail].iter().collect());
        pos += avail;
    }
    Ok(groups)
}

/// Reads the element string at the start of `data`; returns it and the number of
/// bytes it used (the following separator is not included).
fn extract_at(data: &str, config: &ScanConfig) -> Result<(ElementString, usize), ScanError> {
    let end = data
        .find(|c| config.separator_chars.contains(&c))
        .unwrap_or(data.len());
    let field = &data[..end];
    let def = ai_table::lookup_prefix(field).ok_or_else(|| ScanError::UnknownAi {
        at: field.chars().take(4).collect(),
        position: 1,
    })?;
    let groups = match_format(&def, &field[def.ai.len()..])?;
    let value: String = groups.concat();
    let used = def.ai.len() + value.len();
    let ai = def.ai;
    let (date, datetime) = match dates(&ai, &value, config) {
        Ok(d) => d,
        Err(reason) if config.verify_dates => return Err(ScanError::BadDate { ai, reason }),
        Err(_) => (None, None),
    };
    let (decimal, money) = decimals(&ai, &value);
    let mut element = ElementString {
        ai,
        value,
        pattern_groups: groups,
        gln: None,
        gln_error: None,
        gtin: None,
        gtin_error: None,
        sscc: None,
        sscc_error: None,
        date,
        datetime,
        decimal,
        money,
    };
    match element.ai.as_str() {
        "00" => match parse_sscc(&element.value) {
            Ok(s) => element.sscc = Some(s),
            Err(e) => element.sscc_error = Some(e.to_string()),
        },
        "01" | "02" | "03" => match product::parse(&element.value, config) {
            Ok(g) => element.gtin = Some(g),
            Err(e) => element.gtin_error = Some(e.to_string()),
        },
        "410" | "411" | "412" | "413" | "414" | "415" | "416" | "417" => match parse_gln(&element.value) {
            Ok(g) => element.gln = Some(g),
            Err(e) => element.gln_error = Some(e.to_string()),
        },
        _ => {}
    }
    Ok((element, used))
}

/// Reads the first element string of `data` (anything after it is ignored).
pub fn extract(data: &str, config: &ScanConfig) -> Result<ElementString, ScanError> {
    extract_at(data.trim(), config).map(|(e, _)| e)
}

/// A GS1 message: its text and its element strings in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gs1Message {
    /// The message as read (trimmed), or for HRI input the encoded message with GS
    /// separators, or for a Digital Link the URI.
    pub value: String,
    /// The element strings in order.
    pub element_strings: Vec<ElementString>,
}

/// Parses a GS1 message as a scanner sends it.
pub fn parse(value: &str, config: &ScanConfig) -> Result<Gs1Message, ScanError> {
    let value = value.trim();
    let mut rest = value;
    let mut element_strings: Vec<ElementString> = Vec::new();
    // Whether the previous element ended without a separator after it.
    let mut previous_unterminated = false;
    loop {
        let trimmed = rest.trim_start_matches(|c| config.separator_chars.contains(&c));
        if trimmed.len() != rest.len() {
            previous_unterminated = false;
        }
        rest = trimmed;
        if rest.is_empty() {
            break;
        }
        let position = value[..value.len() - rest.len()].chars().count() + 1;
        let (element, used) = match extract_at(rest, config) {
            Ok(found) => found,
            Err(ScanError::UnknownAi { at, .. }) => {
                // A variable-length field that ran to its maximum and goes on is
                // too long (or lost its separator); say so rather than "unknown AI".
                if let Some(prev) = element_strings.last()
                    && previous_unterminated
                    && !ai_table::has_predefined_length(&prev.ai)
                {
                    return Err(ScanError::BadValue {
                        ai: prev.ai.clone(),
                        reason: format!(
                            "value too long, or a separator is missing before position {position}"
                        ),
                    });
                }
                return Err(ScanError::UnknownAi { at, position });
            }
            Err(e) => return Err(e),
        };
        element_strings.push(element);
        rest = &rest[used..];
        previous_unterminated = true;
    }
    if element_strings.is_empty() {
        return Err(ScanError::NoElements);
    }
    Ok(Gs1Message {
        value: value.into(),
        element_strings,
    })
}

/// Encodes (AI, value) pairs as a message: GS after each variable-length field that
/// is not last.
fn encode(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (ai, value)) in pairs.iter().enumerate() {
        out.push_str(ai);
        out.push_str(value);
        if i + 1 < pairs.len() && !ai_table::has_predefined_length(ai) {
            out.push(GS);
        }
    }
    out
}

/// Builds a message from (AI, value) pairs, checking every element.
pub fn from_element_strings(
    pairs: &[(String, String)],
    config: &ScanConfig,
) -> Result<Gs1Message, ScanError> {
    for (ai, value) in pairs {
        if ai_table::lookup(ai).is_none() {
            return Err(ScanError::UnknownAi {
                at: ai.clone(),
                position: 1,
            });
        }
        let element = extract(&format!("{ai}{value}"), config)?;
        if &element.value != value {
            return Err(ScanError::BadValue {
                ai: ai.clone(),
                reason: format!("value {value:?} does not fit the AI's format"),
            });
        }
    }
    let gs_config = ScanConfig {
        separator_chars: vec![GS],
        ..config.clone()
    };
    parse(&encode(pairs), &gs_config)
}

/// Parses the human-readable form `(01)09520123456788(17)271231(10)ABC`.
pub fn parse_hri(value: &str, config: &ScanConfig) -> Result<Gs1Message, ScanError> {
    let value = value.trim();
    if !value.starts_with('(') {
        return Err(ScanError::Hri("must start with '('".into()));
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut rest = value;
    while let Some(after) = rest.strip_prefix('(') {
        let close = after
            .find(')')
            .ok_or_else(|| ScanError::Hri("an AI is missing its ')'".into()))?;
        let ai = &after[..close];
        if ai_table::lookup(ai).is_none() {
            return Err(ScanError::UnknownAi {
                at: ai.into(),
                position: 1,
            });
        }
        let data = &after[close + 1..];
        // The value runs to the next "(AI)" with a known AI; other parentheses are data.
        let mut end = data.len();
        for (i, _) in data.match_indices('(') {
            if let Some(c) = data[i + 1..].find(')')
                && ai_table::lookup(&data[i + 1..i + 1 + c]).is_some()
            {
                end = i;
                break;
            }
        }
        if end == 0 {
            return Err(ScanError::Hri(format!("AI ({ai}) has no data")));
        }
        pairs.push((ai.into(), data[..end].into()));
        rest = &data[end..];
    }
    from_element_strings(&pairs, config)
}

impl Gs1Message {
    /// The message as `(AI)data(AI)data…`.
    pub fn as_hri(&self) -> String {
        self.element_strings.iter().map(ElementString::as_hri).collect()
    }

    /// The elements whose AI starts with `ai_prefix`.
    pub fn filter_by_ai<'a>(&'a self, ai_prefix: &'a str) -> impl Iterator<Item = &'a ElementString> {
        self.element_strings
            .iter()
            .filter(move |e| e.ai.starts_with(ai_prefix))
    }

    /// The elements whose data title contains `title`.
    pub fn filter_by_title<'a>(&'a self, title: &'a str) -> impl Iterator<Item = &'a ElementString> {
        self.element_strings
            .iter()
            .filter(move |e| e.data_title().contains(title))
    }

    /// The GTIN element (AI 01, else 02), if any.
    pub fn gtin_element(&self) -> Option<&ElementString> {
        self.filter_by_ai("01")
            .next()
            .or_else(|| self.filter_by_ai("02").next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ScanConfig {
        ScanConfig {
            reference_year: Some(2026),
            ..ScanConfig::default()
        }
    }

    #[test]
    fn splits_messages() {
        let m = parse("0107032069804988100329\u{1d}15210526", &cfg()).unwrap();
        assert_eq!(m.as_hri(), "(01)07032069804988(10)0329(15)210526");
        let m = parse("010703206980498815210526100329", &cfg()).unwrap();
        assert_eq!(m.element_strings[1].date.as_deref(), Some("2021-05-26"));
        assert!(parse("701103020185", &cfg()).is_err());
        let long = format!("10{}\u{1d}17221231", "A".repeat(21));
        assert_eq!(
            parse(&long, &cfg()).unwrap_err().to_string(),
            "value for AI 10: value too long, or a separator is missing before position 23"
        );
        assert_eq!(
            parse("0107032069804988\u{1d}99x", &cfg())
                .map(|m| m.element_strings.len())
                .ok(),
            Some(2)
        );
        assert_eq!(
            parse("01070320698049885x", &cfg()).unwrap_err().to_string(),
            "unknown AI at \"5x\" (position 17)"
        );
    }

    #[test]
    fn validates_dates_and_lengths() {
        assert!(extract("11120230", &cfg()).is_err());
        assert!(extract("01123", &cfg()).is_err());
        assert_eq!(
            extract("15200200", &cfg()).unwrap().date.as_deref(),
            Some("2020-02-29")
        );
        assert_eq!(
            extract("15770526", &cfg()).unwrap().date.as_deref(),
            Some("1977-05-26")
        );
        assert_eq!(
            extract("15760526", &cfg()).unwrap().date.as_deref(),
            Some("2076-05-26")
        );
        let e = extract("0107032069804987", &cfg()).unwrap();
        assert!(e.gtin_error.is_some());
    }

    #[test]
    fn reads_hri() {
        let m = parse_hri("(10)123(17)221231", &cfg()).unwrap();
        assert_eq!(m.value, "10123\u{1d}17221231");
        assert!(parse_hri("(15)", &cfg()).is_err());
        assert!(parse_hri("(1)15210526", &cfg()).is_err());
        assert!(parse_hri("17221231", &cfg()).is_err());
    }

    #[test]
    fn decimals_and_money() {
        let e = extract("39127101230", &cfg()).unwrap();
        assert_eq!(e.decimal.as_deref(), Some("12.30"));
        assert_eq!(e.money.unwrap().currency, "ZAR");
        assert_eq!(
            extract("3105123456", &cfg()).unwrap().decimal.as_deref(),
            Some("1.23456")
        );
    }
}
