//! The GS1 Application Identifier table (GS1 General Specifications 3.2): each AI's
//! data format, data title and whether it has a predefined length.
//!
//! Formats use the specification's notation, extended with `?` for an optional
//! trailing component: `N14` (14 digits), `X..20` (1–20 characters of the GS1
//! character set 82), `N6+N4?` (six digits, optionally four more). AI families whose
//! last digit is a parameter (`310n` net weight with *n* decimals, `723s`
//! certification references) are listed once with a wildcard.

/// One Application Identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiDef {
    /// The AI digits, e.g. `01` or `3103`.
    pub ai: String,
    /// The data format in GS1 notation (see module docs).
    pub format: &'static str,
    /// The data title, e.g. `BATCH/LOT`.
    pub title: String,
}

/// Which last digits a wildcard family allows.
#[derive(Clone, Copy)]
enum Last {
    /// Decimal-point position 0–5 (the 31nn–36nn measures).
    Decimals0To5,
    /// Any digit.
    Any,
}

/// Exact AIs: (ai, format, title).
const EXACT: &[(&str, &str, &str)] = &[
    ("00", "N18", "SSCC"),
    ("01", "N14", "GTIN"),
    ("02", "N14", "CONTENT"),
    ("03", "N14", "MTO GTIN"),
    ("10", "X..20", "BATCH/LOT"),
    ("11", "N6", "PROD DATE"),
    ("12", "N6", "DUE DATE"),
    ("13", "N6", "PACK DATE"),
    ("15", "N6", "BEST BEFORE or BEST BY"),
    ("16", "N6", "SELL BY"),
    ("17", "N6", "USE BY or EXPIRY"),
    ("20", "N2", "VARIANT"),
    ("21", "X..20", "SERIAL"),
    ("22", "X..20", "CPV"),
    ("235", "X..28", "TPX"),
    ("240", "X..30", "ADDITIONAL ID"),
    ("241", "X..30", "CUST. PART No."),
    ("242", "N..6", "MTO VARIANT"),
    ("243", "X..20", "PCN"),
    ("250", "X..30", "SECONDARY SERIAL"),
    ("251", "X..30", "REF. TO SOURCE"),
    ("253", "N13+X..17?", "GDTI"),
    ("254", "X..20", "GLN EXTENSION COMPONENT"),
    ("255", "N13+N..12?", "GCN"),
    ("30", "N..8", "VAR. COUNT"),
    ("37", "N..8", "COUNT"),
    ("400", "X..30", "ORDER NUMBER"),
    ("401", "X..30", "GINC"),
    ("402", "N17", "GSIN"),
    ("403", "X..30", "ROUTE"),
    ("410", "N13", "SHIP TO LOC"),
    ("411", "N13", "BILL TO"),
    ("412", "N13", "PURCHASE FROM"),
    ("413", "N13", "SHIP FOR LOC"),
    ("414", "N13", "LOC No."),
    ("415", "N13", "PAY TO"),
    ("416", "N13", "PROD/SERV LOC"),
    ("417", "N13", "PARTY"),
    ("420", "X..20", "SHIP TO POST"),
    ("421", "N3+X..9", "SHIP TO POST"),
    ("422", "N3", "ORIGIN"),
    ("423", "N3+N..12?", "COUNTRY - INITIAL PROCESS."),
    ("424", "N3", "COUNTRY - PROCESS."),
    ("425", "N3+N..12?", "COUNTRY - DISASSEMBLY"),
    ("426", "N3", "COUNTRY - FULL PROCESS"),
    ("427", "X..3", "ORIGIN SUBDIVISION"),
    ("4300", "X..35", "SHIP TO COMP"),
    ("4301", "X..35", "SHIP TO NAME"),
    ("4302", "X..70", "SHIP TO ADD1"),
    ("4303", "X..70", "SHIP TO ADD2"),
    ("4304", "X..70", "SHIP TO SUB"),
    ("4305", "X..70", "SHIP TO LOC"),
    ("4306", "X..70", "SHIP TO REG"),
    ("4307", "X2", "SHIP TO COUNTRY"),
    ("4308", "X..30", "SHIP TO PHONE"),
    ("4309", "N20", "SHIP TO GEO"),
    ("4310", "X..35", "RTN TO COMP"),
    ("4311", "X..35", "RTN TO NAME"),
    ("4312", "X..70", "RTN TO ADD1"),
    ("4313", "X..70", "RTN TO ADD2"),
    ("4314", "X..70", "RTN TO SUB"),
    ("4315", "X..70", "RTN TO LOC"),
    ("4316", "X..70", "RTN TO REG"),
    ("4317", "X2", "RTN TO COUNTRY"),
    ("4318", "X..20", "RTN TO POST"),
    ("4319", "X..30", "RTN TO PHONE"),
    ("4320", "X..35", "SRV DESCRIPTION"),
    ("4321", "N1", "DANGEROUS GOODS"),
    ("4322", "N1", "AUTH LEAVE"),
    ("4323", "N1", "SIG REQUIRED"),
    ("4324", "N10", "NBEF DEL DT."),
    ("4325", "N10", "NAFT DEL DT."),
    ("4326", "N6", "REL DATE"),
    ("4330", "N6+X1?", "MAX TEMP F."),
    ("4331", "N6+X1?", "MAX TEMP C."),
    ("4332", "N6+X1?", "MIN TEMP F."),
    ("4333", "N6+X1?", "MIN TEMP C."),
    ("7001", "N13", "NSN"),
    ("7002", "X..30", "MEAT CUT"),
    ("7003", "N10", "EXPIRY TIME"),
    ("7004", "N..4", "ACTIVE POTENCY"),
    ("7005", "X..12", "CATCH AREA"),
    ("7006", "N6", "FIRST FREEZE DATE"),
    ("7007", "N6+N6?", "HARVEST DATE"),
    ("7008", "X..3", "AQUATIC SPECIES"),
    ("7009", "X..10", "FISHING GEAR TYPE"),
    ("7010", "X..2", "PROD METHOD"),
    ("7011", "N6+N4?", "TEST BY DATE"),
    ("7020", "X..20", "REFURB LOT"),
    ("7021", "X..20", "FUNC STAT"),
    ("7022", "X..20", "REV STAT"),
    ("7023", "X..30", "GIAI - ASSEMBLY"),
    ("7040", "N1+X3", "UIC+EXT"),
    ("710", "X..20", "NHRN PZN"),
    ("711", "X..20", "NHRN CIP"),
    ("712", "X..20", "NHRN CN"),
    ("713", "X..20", "NHRN DRN"),
    ("714", "X..20", "NHRN AIM"),
    ("715", "X..20", "NHRN NDC"),
    ("7240", "X..20", "PROTOCOL"),
    ("7241", "N2", "AIDC MEDIA TYPE"),
    ("7242", "X..25", "VCN"),
    ("7250", "N8", "DOB"),
    ("7251", "N12", "DOB TIME"),
    ("7252", "N1", "BIO SEX"),
    ("7253", "X..40", "FAMILY NAME"),
    ("7254", "X..40", "GIVEN NAME"),
    ("7255", "X..10", "SUFFIX"),
    ("7256", "X..90", "FULL NAME"),
    ("7257", "X..70", "PERSON ADDR"),
    ("7258", "N1+X1+N1", "BIRTH SEQUENCE"),
    ("7259", "X..40", "BABY"),
    ("8001", "N14", "DIMENSIONS"),
    ("8002", "X..20", "CMT No."),
    ("8003", "N1+N13+X..16?", "GRAI"),
    ("8004", "X..30", "GIAI"),
    ("8005", "N6", "PRICE PER UNIT"),
    ("8006", "N14+N2+N2", "ITIP"),
    ("8007", "X..34", "IBAN"),
    ("8008", "N8+N..4?", "PROD TIME"),
    ("8009", "X..50", "OPTSEN"),
    ("8010", "X..30", "CPID"),
    ("8011", "N..12", "CPID SERIAL"),
    ("8012", "X..20", "VERSION"),
    ("8013", "X..25", "GMN"),
    ("8014", "X..25", "MUDI"),
    ("8017", "N18", "GSRN - PROVIDER"),
    ("8018", "N18", "GSRN - RECIPIENT"),
    ("8019", "N..10", "SRIN"),
    ("8020", "X..25", "REF No."),
    ("8026", "N14+N2+N2", "ITIP CONTENT"),
    ("8030", "X..90", "DIGSIG"),
    ("8110", "X..70", "COUPON"),
    ("8111", "N4", "POINTS"),
    ("8112", "X..70", "PAPERLESS COUPON"),
    ("8200", "X..70", "PRODUCT URL"),
    ("90", "X..30", "INTERNAL"),
    ("91", "X..90", "INTERNAL"),
    ("92", "X..90", "INTERNAL"),
    ("93", "X..90", "INTERNAL"),
    ("94", "X..90", "INTERNAL"),
    ("95", "X..90", "INTERNAL"),
    ("96", "X..90", "INTERNAL"),
    ("97", "X..90", "INTERNAL"),
    ("98", "X..90", "INTERNAL"),
    ("99", "X..90", "INTERNAL"),
];

/// Four-digit families: (first three digits, allowed last digit, format, title).
/// A title ending in `#` gets the last digit appended (`CERT # 1`).
const FAMILIES: &[(&str, Last, &str, &str)] = &[
    ("310", Last::Decimals0To5, "N6", "NET WEIGHT (kg)"),
    ("311", Last::Decimals0To5, "N6", "LENGTH (m)"),
    ("312", Last::Decimals0To5, "N6", "WIDTH (m)"),
    ("313", Last::Decimals0To5, "N6", "HEIGHT (m)"),
    ("314", Last::Decimals0To5, "N6", "AREA (m2)"),
    ("315", Last::Decimals0To5, "N6", "NET VOLUME (l)"),
    ("316", Last::Decimals0To5, "N6", "NET VOLUME (m3)"),
    ("320", Last::Decimals0To5, "N6", "NET WEIGHT (lb)"),
    ("321", Last::Decimals0To5, "N6", "LENGTH (in)"),
    ("322", Last::Decimals0To5, "N6", "LENGTH (ft)"),
    ("323", Last::Decimals0To5, "N6", "LENGTH (yd)"),
    ("324", Last::Decimals0To5, "N6", "WIDTH (in)"),
    ("325", Last::Decimals0To5, "N6", "WIDTH (ft)"),
    ("326", Last::Decimals0To5, "N6", "WIDTH (yd)"),
    ("327", Last::Decimals0To5, "N6", "HEIGHT (in)"),
    ("328", Last::Decimals0To5, "N6", "HEIGHT (ft)"),
    ("329", Last::Decimals0To5, "N6", "HEIGHT (yd)"),
    ("330", Last::Decimals0To5, "N6", "GROSS WEIGHT (kg)"),
    ("331", Last::Decimals0To5, "N6", "LENGTH (m), log"),
    ("332", Last::Decimals0To5, "N6", "WIDTH (m), log"),
    ("333", Last::Decimals0To5, "N6", "HEIGHT (m), log"),
    ("334", Last::Decimals0To5, "N6", "AREA (m2), log"),
    ("335", Last::Decimals0To5, "N6", "VOLUME (l), log"),
    ("336", Last::Decimals0To5, "N6", "VOLUME (m3), log"),
    ("337", Last::Decimals0To5, "N6", "KG PER m2"),
    ("340", Last::Decimals0To5, "N6", "GROSS WEIGHT (lb)"),
    ("341", Last::Decimals0To5, "N6", "LENGTH (in), log"),
    ("342", Last::Decimals0To5, "N6", "LENGTH (ft), log"),
    ("343", Last::Decimals0To5, "N6", "LENGTH (yd), log"),
    ("344", Last::Decimals0To5, "N6", "WIDTH (in), log"),
    ("345", Last::Decimals0To5, "N6", "WIDTH (ft), log"),
    ("346", Last::Decimals0To5, "N6", "WIDTH (yd), log"),
    ("347", Last::Decimals0To5, "N6", "HEIGHT (in), log"),
    ("348", Last::Decimals0To5, "N6", "HEIGHT (ft), log"),
    ("349", Last::Decimals0To5, "N6", "HEIGHT (yd), log"),
    ("350", Last::Decimals0To5, "N6", "AREA (in2)"),
    ("351", Last::Decimals0To5, "N6", "AREA (ft2)"),
    ("352", Last::Decimals0To5, "N6", "AREA (yd2)"),
    ("353", Last::Decimals0To5, "N6", "AREA (in2), log"),
    ("354", Last::Decimals0To5, "N6", "AREA (ft2), log"),
    ("355", Last::Decimals0To5, "N6", "AREA (yd2), log"),
    ("356", Last::Decimals0To5, "N6", "NET WEIGHT (t oz)"),
    ("357", Last::Decimals0To5, "N6", "NET VOLUME (oz)"),
    ("360", Last::Decimals0To5, "N6", "NET VOLUME (qt)"),
    ("361", Last::Decimals0To5, "N6", "NET VOLUME (gal.)"),
    ("362", Last::Decimals0To5, "N6", "VOLUME (qt), log"),
    ("363", Last::Decimals0To5, "N6", "VOLUME (gal.), log"),
    ("364", Last::Decimals0To5, "N6", "VOLUME (in3)"),
    ("365", Last::Decimals0To5, "N6", "VOLUME (ft3)"),
    ("366", Last::Decimals0To5, "N6", "VOLUME (yd3)"),
    ("367", Last::Decimals0To5, "N6", "VOLUME (in3), log"),
    ("368", Last::Decimals0To5, "N6", "VOLUME (ft3), log"),
    ("369", Last::Decimals0To5, "N6", "VOLUME (yd3), log"),
    ("390", Last::Any, "N..15", "AMOUNT"),
    ("391", Last::Any, "N3+N..15", "AMOUNT"),
    ("392", Last::Any, "N..15", "PRICE"),
    ("393", Last::Any, "N3+N..15", "PRICE"),
    ("394", Last::Any, "N4", "PRCNT OFF"),
    ("395", Last::Any, "N6", "PRICE/UoM"),
    ("703", Last::Any, "N3+X..27", "PROCESSOR #"),
    ("723", Last::Any, "X2+X..28", "CERT #"),
];

/// First two digits of the AIs with a predefined length (GS1 GenSpecs figure
/// 7.8.5-2): no FNC1 separator is needed after them.
const PREDEFINED_LENGTH_PREFIXES: &[&str] = &[
    "00", "01", "02", "03", "04", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20", "31", "32",
    "33", "34", "35", "36", "41",
];

/// True when `ai` has a predefined length, so the next AI may follow without FNC1.
pub fn has_predefined_length(ai: &str) -> bool {
    PREDEFINED_LENGTH_PREFIXES.iter().any(|p| ai.starts_with(p))
}

/// Looks up the AI that `data` starts with (GS1 AIs are prefix-free).
pub fn lookup_prefix(data: &str) -> Option<AiDef> {
    (2..=4).filter_map(|n| data.get(..n)).find_map(lookup)
}

/// Looks up an exact AI code such as `01` or `3103`.
pub fn lookup(ai: &str) -> Option<AiDef> {
    if !ai.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some((code, format, title)) = EXACT.iter().find(|e| e.0 == ai) {
        return Some(AiDef {
            ai: (*code).into(),
            format,
            title: (*title).into(),
        });
    }
    if ai.len() != 4 {
        return None;
    }
    let last = ai.as_bytes()[3];
    FAMILIES
        .iter()
        .find(|(prefix, allowed, _, _)| {
            ai.starts_with(prefix)
                && match allowed {
                    Last::Decimals0To5 => (b'0'..=b'5').contains(&last),
                    Last::Any => true,
                }
        })
        .map(|(_, _, format, title)| AiDef {
            ai: ai.into(),
            format,
            title: if title.ends_with('#') {
                format!("{title} {}", last as char)
            } else {
                (*title).into()
            },
        })
}

/// One component of a format: character set, length range, optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// True for digits only (`N`), false for the GS1 character set 82 (`X`).
    pub numeric: bool,
    /// Minimum number of characters.
    pub min: usize,
    /// Maximum number of characters.
    pub max: usize,
    /// The component may be absent altogether (only at the end).
    pub optional: bool,
}

/// The components of a format string such as `N6+N..4?`.
pub fn components(format: &str) -> Vec<Component> {
    format
        .split('+')
        .filter_map(|part| {
            let optional = part.ends_with('?');
            let part = part.trim_end_matches('?');
            let numeric = part.starts_with('N');
            let len = part.get(1..)?;
            let (min, max) = match len.strip_prefix("..") {
                Some(max) => (1, max.parse().ok()?),
                None => {
                    let n = len.parse().ok()?;
                    (n, n)
                }
            };
            Some(Component {
                numeric,
                min,
                max,
                optional,
            })
        })
        .collect()
}

/// True when `c` is in GS1 character set 82 (GenSpecs figure 7.11-1).
pub fn is_cset82(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!\"%&'()*+,-./:;<=>?_".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_exact_and_family_ais() {
        assert_eq!(lookup_prefix("0107032069804988").unwrap().ai, "01");
        assert_eq!(lookup_prefix("3103000123").unwrap().ai, "3103");
        assert!(lookup_prefix("3106000123").is_none());
        assert_eq!(lookup("7231").unwrap().title, "CERT # 1");
        assert!(lookup_prefix("5901234123457").is_none());
        assert!(lookup_prefix("0").is_none());
    }

    #[test]
    fn parses_formats() {
        let c = components("N6+N..4?");
        assert_eq!(c.len(), 2);
        assert_eq!((c[1].min, c[1].max, c[1].optional), (1, 4, true));
        for (_, f, _) in EXACT {
            assert!(!components(f).is_empty(), "{f}");
        }
    }
}
