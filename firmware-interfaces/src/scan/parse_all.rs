//! Every reading of one scan side by side: GTIN, UPC, SSCC, GS1 message and GS1
//! Digital Link, each with the reason it does not apply.
//!
//! This is the diagnostic view (`store-agent scan explain`) and the layer the
//! classifier builds on. When the symbology identifier names the barcode, only the
//! readings that barcode can carry are tried; without one, every reading is tried
//! and the readings fill each other in (a GTIN found in AI (01) is the GTIN, a
//! GTIN-12 is also a UPC-A).

use serde::Serialize;

use super::element::{self, Gs1Message, Sscc};
use super::product::{self, Gtin, GtinFormat};
use super::symbology::{self, SymbologyIdentifier};
use super::upc::{self, Upc};
use super::{ScanConfig, digital_link};

/// All readings of one scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseResult {
    /// The scan, trimmed.
    pub value: String,
    /// The AIM symbology identifier, when the scan starts with one.
    pub symbology_identifier: Option<SymbologyIdentifier>,
    /// The GTIN, from the data itself, its UPC-E expansion, AI (01) or a Digital Link.
    pub gtin: Option<Gtin>,
    /// Why the data is no GTIN (when tried).
    pub gtin_error: Option<String>,
    /// The UPC, from the data or from a GTIN-12.
    pub upc: Option<Upc>,
    /// Why the data is no UPC (when tried).
    pub upc_error: Option<String>,
    /// The SSCC, from the data or AI (00).
    pub sscc: Option<Sscc>,
    /// Why the data is no SSCC (when tried).
    pub sscc_error: Option<String>,
    /// The GS1 message.
    pub gs1_message: Option<Gs1Message>,
    /// Why the data is no GS1 message (when tried).
    pub gs1_message_error: Option<String>,
    /// The GS1 Digital Link URI.
    pub gs1_digital_link_uri: Option<Gs1Message>,
    /// Why the data is no Digital Link (when tried).
    pub gs1_digital_link_uri_error: Option<String>,
}

fn split<T>(r: Result<T, super::ScanError>) -> (Option<T>, Option<String>) {
    match r {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

fn looks_like_uri(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Reads `raw` every way that applies.
pub fn parse_all(raw: &str, config: &ScanConfig) -> ParseResult {
    let value = raw.trim().to_string();
    let mut r = ParseResult {
        value: value.clone(),
        symbology_identifier: None,
        gtin: None,
        gtin_error: None,
        upc: None,
        upc_error: None,
        sscc: None,
        sscc_error: None,
        gs1_message: None,
        gs1_message_error: None,
        gs1_digital_link_uri: None,
        gs1_digital_link_uri_error: None,
    };
    let mut data = value.as_str();
    if data.starts_with(']')
        && let Ok(id) = symbology::extract(data)
    {
        data = &data[id.value.len()..];
        r.symbology_identifier = Some(id);
    }
    let caps = r
        .symbology_identifier
        .as_ref()
        .and_then(SymbologyIdentifier::capabilities);
    let (try_gtin, try_upc, try_sscc, try_message, try_link) = match caps {
        Some(c) => (
            c.may_contain_plain_gtin,
            false,
            false,
            c.may_contain_gs1_message,
            c.may_contain_digital_link_uri && looks_like_uri(data),
        ),
        None if looks_like_uri(data) => (false, false, false, false, true),
        None => (true, true, true, true, false),
    };
    if try_gtin {
        (r.gtin, r.gtin_error) = split(product::parse(data, config));
    }
    if try_upc {
        (r.upc, r.upc_error) = split(upc::parse(data));
    }
    if try_sscc {
        (r.sscc, r.sscc_error) = split(element::parse_sscc(data));
    }
    if try_message {
        (r.gs1_message, r.gs1_message_error) = split(element::parse(data, config));
    }
    if try_link {
        (r.gs1_digital_link_uri, r.gs1_digital_link_uri_error) = split(digital_link::parse(data, config));
    }
    // Fill the readings in from each other.
    if r.gtin.is_none()
        && let Some(u) = &r.upc
    {
        (r.gtin, r.gtin_error) = split(product::parse(&u.as_upc_a(), config));
    }
    let messages = [&r.gs1_message, &r.gs1_digital_link_uri];
    if r.gtin.is_none()
        && let Some(e) = messages
            .iter()
            .filter_map(|m| m.as_ref())
            .find_map(|m| m.filter_by_ai("01").next())
    {
        r.gtin = e.gtin.clone();
        r.gtin_error = e.gtin_error.clone();
    }
    if r.sscc.is_none()
        && let Some(e) = messages
            .iter()
            .filter_map(|m| m.as_ref())
            .find_map(|m| m.filter_by_ai("00").next())
    {
        r.sscc = e.sscc.clone();
        r.sscc_error = e.sscc_error.clone();
    }
    if r.upc.is_none()
        && let Some(g) = &r.gtin
        && g.format == GtinFormat::Gtin12
        && let Ok(u) = upc::parse(&g.as_format_width())
    {
        r.upc = Some(u);
        r.upc_error = None;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_readings_from_each_other() {
        let c = ScanConfig::default();
        let r = parse_all("425261", &c);
        assert_eq!(r.gtin.unwrap().value, "042100005264");
        let r = parse_all("0100123601057072", &c);
        assert_eq!(r.upc.unwrap().value, "123601057072");
        assert!(r.gtin_error.is_none());
        let r = parse_all("]E496385074", &c);
        assert!(r.upc.is_none() && r.upc_error.is_none());
    }
}
