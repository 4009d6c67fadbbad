//! GS1 Digital Link URIs (GS1 Digital Link standard 1.x): a web address whose path
//! holds a primary key (`/01/{gtin}`) and its key qualifiers (`/10/{batch}`), and
//! whose query string holds further data attributes (`?17=271231`).
//!
//! Parsing gives the same element strings a GS1 barcode would; the URI can be
//! re-emitted at any domain or in canonical form (`https://id.gs1.org`, 14-digit
//! GTIN, query attributes sorted by AI, non-GS1 parameters dropped).

use super::ai_table;
use super::element::{self, Gs1Message};
use super::{ScanConfig, ScanError};

/// Primary keys and, in their required order, their allowed key qualifiers.
const PRIMARY_KEYS: &[(&str, &[&str])] = &[
    ("01", &["22", "10", "21", "235"]),
    ("00", &[]),
    ("253", &[]),
    ("255", &[]),
    ("401", &[]),
    ("402", &[]),
    ("414", &["254", "7040"]),
    ("417", &["7040"]),
    ("8003", &[]),
    ("8004", &["7040"]),
    ("8006", &["22", "10", "21"]),
    ("8010", &["8011"]),
    ("8013", &[]),
    ("8017", &["8019"]),
    ("8018", &["8019"]),
];

/// The canonical resolver domain.
pub const CANONICAL_DOMAIN: &str = "id.gs1.org";

fn qualifiers_of(ai: &str) -> Option<&'static [&'static str]> {
    PRIMARY_KEYS.iter().find(|(k, _)| *k == ai).map(|(_, q)| *q)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes everything but the URI unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A GTIN in a Digital Link may be written on 8, 12 or 13 digits; the element
/// string always has 14.
fn normalise(ai: &str, value: &str) -> String {
    if ai == "01" && value.bytes().all(|b| b.is_ascii_digit()) && matches!(value.len(), 8 | 12 | 13) {
        format!("{value:0>14}")
    } else {
        value.to_string()
    }
}

/// Parses a GS1 Digital Link URI into its element strings (path first, then the
/// query's GS1 attributes in their order; other query parameters are ignored).
pub fn parse(uri: &str, config: &ScanConfig) -> Result<Gs1Message, ScanError> {
    let uri = uri.trim();
    let bad = |m: String| ScanError::DigitalLink(m);
    let (scheme, rest) = uri
        .split_once(':')
        .filter(|(s, _)| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .ok_or_else(|| bad("not a URI".into()))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad(format!("URI scheme must be http or https, got {scheme:?}")));
    }
    let rest = rest
        .strip_prefix("//")
        .ok_or_else(|| bad("URI has no host".into()))?;
    let rest = rest.split('#').next().unwrap_or("");
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = before_query.find('/').map_or("", |i| &before_query[i..]);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let start = segments
        .iter()
        .position(|s| qualifiers_of(s).is_some())
        .ok_or_else(|| bad("no primary identifier (such as /01/) in the path".into()))?;
    let keyed = &segments[start..];
    if keyed.len() % 2 != 0 {
        return Err(bad(
            "the path after the primary key has an odd number of segments".into(),
        ));
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    let allowed = qualifiers_of(keyed[0]).unwrap_or(&[]);
    let mut next_allowed = 0;
    for (i, pair) in keyed.chunks(2).enumerate() {
        let ai = pair[0];
        if i > 0 {
            match allowed[next_allowed.min(allowed.len())..]
                .iter()
                .position(|q| *q == ai)
            {
                Some(p) => next_allowed += p + 1,
                None if allowed.is_empty() => {
                    return Err(bad(format!(
                        "AI ({}) takes no key qualifier, got {ai:?}",
                        keyed[0]
                    )));
                }
                None => {
                    return Err(bad(format!(
                        "expected one of ({}) as key qualifier, got {ai:?}",
                        allowed[next_allowed.min(allowed.len())..].join(", ")
                    )));
                }
            }
        }
        let value = percent_decode(pair[1]);
        pairs.push((ai.to_string(), normalise(ai, &value)));
    }
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        if ai_table::lookup(key).is_some() && !value.is_empty() {
            pairs.push((key.to_string(), normalise(key, &percent_decode(value))));
        }
    }
    let message = element::from_element_strings(&pairs, config)?;
    Ok(Gs1Message {
        value: uri.to_string(),
        element_strings: message.element_strings,
    })
}

/// The message as a Digital Link URI at `domain` (default `id.gs1.org`) under an
/// optional path `prefix` (without leading or trailing `/`).
pub fn as_uri(message: &Gs1Message, domain: Option<&str>, prefix: Option<&str>) -> Result<String, ScanError> {
    if let Some(p) = prefix {
        if p.starts_with('/') {
            return Err(ScanError::DigitalLink("prefix must not start with '/'".into()));
        }
        if p.ends_with('/') {
            return Err(ScanError::DigitalLink("prefix must not end with '/'".into()));
        }
    }
    let elements = &message.element_strings;
    let (pk_index, qualifiers) = elements
        .iter()
        .enumerate()
        .find_map(|(i, e)| qualifiers_of(&e.ai).map(|q| (i, q)))
        .ok_or_else(|| ScanError::DigitalLink("the message has no Digital Link primary key".into()))?;
    let mut used = vec![pk_index];
    let pk = &elements[pk_index];
    let mut uri = format!("https://{}", domain.unwrap_or(CANONICAL_DOMAIN));
    if let Some(p) = prefix.filter(|p| !p.is_empty()) {
        uri.push('/');
        uri.push_str(p);
    }
    uri.push_str(&format!("/{}/{}", pk.ai, percent_encode(&pk.value)));
    for q in qualifiers {
        if let Some(i) = elements.iter().position(|e| e.ai == *q) {
            used.push(i);
            uri.push_str(&format!("/{q}/{}", percent_encode(&elements[i].value)));
        }
    }
    let mut attributes: Vec<_> = elements
        .iter()
        .enumerate()
        .filter(|(i, _)| !used.contains(i))
        .map(|(_, e)| e)
        .collect();
    attributes.sort_by(|a, b| a.ai.cmp(&b.ai));
    let query: Vec<String> = attributes
        .iter()
        .map(|e| format!("{}={}", e.ai, percent_encode(&e.value)))
        .collect();
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(&query.join("&"));
    }
    Ok(uri)
}

/// The canonical Digital Link URI of the message.
pub fn as_canonical_uri(message: &Gs1Message) -> Result<String, ScanError> {
    as_uri(message, None, None)
}

/// Builds the canonical Digital Link of (AI, value) pairs.
pub fn from_element_strings(
    pairs: &[(String, String)],
    config: &ScanConfig,
) -> Result<Gs1Message, ScanError> {
    let message = element::from_element_strings(pairs, config)?;
    Ok(Gs1Message {
        value: as_canonical_uri(&message)?,
        element_strings: message.element_strings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_canonicalises() {
        let c = ScanConfig::default();
        let m = parse(
            "https://example.com/00/106141412345678908?02=00614141123452&37=25&10=ABC123&foo=bar",
            &c,
        )
        .unwrap();
        assert_eq!(m.element_strings.len(), 4);
        assert_eq!(
            as_canonical_uri(&m).unwrap(),
            "https://id.gs1.org/00/106141412345678908?02=00614141123452&10=ABC123&37=25"
        );
        let m = parse("https://example.com/foo/01/614141123452", &c).unwrap();
        assert_eq!(m.element_strings[0].value, "00614141123452");
    }

    #[test]
    fn rejects_bad_links() {
        let c = ScanConfig::default();
        for uri in [
            "614141123452",
            "mailto:alice@example.com",
            "http://example.com/foo/123",
            "https://example.com/foo/01/614141123452/123",
            "https://id.gs1.org/01/614141123452/15/20250324",
            "https://id.gs1.org/01/614141123452/10/ABC123/22/123456789",
            "https://id.gs1.org/00/106141412345678908/10/ABC123",
        ] {
            assert!(parse(uri, &c).is_err(), "{uri}");
        }
    }

    #[test]
    fn percent_round_trip() {
        assert_eq!(percent_decode(&percent_encode("A/B %")), "A/B %");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
