//! AIM symbology identifiers (ISO/IEC 15424): the `]` + code character + modifier
//! prefix a scanner can send before the data, and what they say about the data.
//!
//! The identifier tells the decoder which barcode was read, and so which readings
//! are possible: an EAN-13 (`]E0`) carries a bare GTIN, a GS1-128 (`]C1`) carries a
//! GS1 message, a GS1 QR Code (`]Q3`) a message or a Digital Link URI.

use serde::Serialize;

use super::ScanError;

/// A code and its name, as in `{"code": "E", "name": "EAN_UPC"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedCode {
    /// The code characters (`E`, or `E0` for a GS1 symbology).
    pub code: String,
    /// The symbology's name in upper snake case.
    pub name: String,
}

/// An AIM symbology identifier read from the start of a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SymbologyIdentifier {
    /// The whole identifier, e.g. `]E0`.
    pub value: String,
    /// The ISO symbology given by the code character.
    pub iso_symbology: NamedCode,
    /// The modifier characters after the code character.
    pub modifiers: String,
    /// The GS1 symbology, when code and modifier name one.
    pub gs1_symbology: Option<NamedCode>,
    /// Length of the identifier in characters.
    pub length: usize,
}

/// ISO code characters and their names (AIM ISO/IEC 15424 table).
const ISO_SYMBOLOGIES: &[(char, &str)] = &[
    ('A', "CODE_39"),
    ('B', "TELEPEN"),
    ('C', "CODE_128"),
    ('D', "CODE_ONE"),
    ('E', "EAN_UPC"),
    ('F', "CODABAR"),
    ('G', "CODE_93"),
    ('H', "CODE_11"),
    ('I', "ITF"),
    ('K', "CODE_16K"),
    ('L', "PDF417"),
    ('M', "MSI"),
    ('N', "ANKER"),
    ('O', "CODABLOCK"),
    ('P', "PLESSEY_CODE"),
    ('Q', "QR_CODE"),
    ('R', "STRAIGHT_2_OF_5_WITH_TWO_BAR_START_STOP"),
    ('S', "STRAIGHT_2_OF_5_WITH_THREE_BAR_START_STOP"),
    ('T', "CODE_49"),
    ('U', "MAXICODE"),
    ('X', "OTHER_BARCODE"),
    ('Y', "SYSTEM_EXPANSION"),
    ('Z', "NON_BARCODE"),
    ('d', "DATA_MATRIX"),
    ('e', "RSS_EAN_UCC_COMPOSITE"),
    ('o', "OCR"),
    ('p', "POSICODE"),
    ('s', "SUPERCODE"),
    ('v', "ULTRACODE"),
    ('z', "AZTEC_CODE"),
];

/// GS1 symbologies by code + first modifier, with their capabilities:
/// (code, name, may carry a GS1 message, may carry a Digital Link URI, may carry a bare GTIN).
const GS1_SYMBOLOGIES: &[(&str, &str, bool, bool, bool)] = &[
    ("E0", "EAN_13", false, false, true),
    ("E1", "TWO_DIGIT_ADD_ON", false, false, false),
    ("E2", "FIVE_DIGIT_ADD_ON", false, false, false),
    ("E3", "EAN_13_WITH_ADD_ON", false, false, true),
    ("E4", "EAN_8", false, false, true),
    ("I1", "ITF_14", false, false, true),
    ("C1", "GS1_128", true, false, false),
    ("e0", "GS1_DATABAR", true, false, false),
    ("e1", "GS1_COMPOSITE_WITH_SEPARATOR_CHARACTER", true, false, false),
    ("e2", "GS1_COMPOSITE_WITH_ESCAPE_CHARACTER", true, false, false),
    ("d2", "GS1_DATAMATRIX", true, true, false),
    ("Q3", "GS1_QR_CODE", true, true, false),
];

/// The ISO symbology name of a code character (`C` → `CODE_128`).
pub fn iso_symbology_name(code: char) -> Option<&'static str> {
    ISO_SYMBOLOGIES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// The GS1 symbology name of a two-character code (`C1` → `GS1_128`).
pub fn gs1_symbology_name(code: &str) -> Option<&'static str> {
    GS1_SYMBOLOGIES.iter().find(|s| s.0 == code).map(|s| s.1)
}

/// What a GS1 symbology may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gs1Capabilities {
    /// A GS1 message (AI element strings with FNC1).
    pub may_contain_gs1_message: bool,
    /// A GS1 Digital Link URI.
    pub may_contain_digital_link_uri: bool,
    /// A bare GTIN (EAN/UPC, ITF-14).
    pub may_contain_plain_gtin: bool,
}

/// The capabilities of a GS1 symbology code (`E0`, `C1`, `Q3`…), `None` if unknown.
pub fn gs1_symbology_capabilities(code: &str) -> Option<Gs1Capabilities> {
    GS1_SYMBOLOGIES
        .iter()
        .find(|s| s.0 == code)
        .map(|s| Gs1Capabilities {
            may_contain_gs1_message: s.2,
            may_contain_digital_link_uri: s.3,
            may_contain_plain_gtin: s.4,
        })
}

/// Reads the symbology identifier at the start of `value`.
///
/// The modifier is one character, except for the system-expansion code `Y`,
/// whose first modifier digit *n* is followed by *n* more characters.
pub fn extract(value: &str) -> Result<SymbologyIdentifier, ScanError> {
    let mut chars = value.chars();
    if chars.next() != Some(']') {
        return Err(ScanError::Symbology("no initial ']' flag character".into()));
    }
    let code = chars
        .next()
        .ok_or_else(|| ScanError::Symbology("no code character after ']'".into()))?;
    let iso_name = iso_symbology_name(code)
        .ok_or_else(|| ScanError::Symbology(format!("{code:?} is not a recognised code character")))?;
    let first = chars
        .next()
        .ok_or_else(|| ScanError::Symbology("no modifier character".into()))?;
    let mut modifiers = String::from(first);
    if code == 'Y' {
        let extra = first.to_digit(10).ok_or_else(|| {
            ScanError::Symbology("system expansion modifier must start with a digit".into())
        })?;
        for _ in 0..extra {
            let c = chars
                .next()
                .ok_or_else(|| ScanError::Symbology("system expansion modifier too short".into()))?;
            modifiers.push(c);
        }
    }
    let gs1_code = format!("{code}{first}");
    let gs1_symbology = gs1_symbology_name(&gs1_code).map(|name| NamedCode {
        code: gs1_code.clone(),
        name: name.into(),
    });
    let text = format!("]{code}{modifiers}");
    Ok(SymbologyIdentifier {
        length: text.chars().count(),
        value: text,
        iso_symbology: NamedCode {
            code: code.to_string(),
            name: iso_name.into(),
        },
        modifiers,
        gs1_symbology,
    })
}

impl SymbologyIdentifier {
    /// The GS1 capabilities of this identifier, `None` when it is no GS1 symbology.
    pub fn capabilities(&self) -> Option<Gs1Capabilities> {
        self.gs1_symbology
            .as_ref()
            .and_then(|g| gs1_symbology_capabilities(&g.code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_common_identifiers() {
        let id = extract("]E05901234123457").unwrap();
        assert_eq!(id.value, "]E0");
        assert_eq!(id.gs1_symbology.unwrap().name, "EAN_13");
        let id = extract("]d201...").unwrap();
        assert_eq!(id.iso_symbology.name, "DATA_MATRIX");
        assert!(id.capabilities().unwrap().may_contain_digital_link_uri);
        assert_eq!(extract("]Y2abcd").unwrap().value, "]Y2ab");
    }

    #[test]
    fn rejects_bad_identifiers() {
        assert!(extract("E0").is_err());
        assert!(extract("]J0").is_err());
        assert!(extract("]E").is_err());
        assert!(extract("]Y9ab").is_err());
        assert!(extract("").is_err());
    }
}
