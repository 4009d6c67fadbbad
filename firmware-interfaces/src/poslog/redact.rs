//! Masking card and loyalty numbers in a POSLog document where it lies.
//!
//! The agent keeps the files a POS drops in its spool folder (`processed/`,
//! `rejected/`) for a person to look at, and the bodies it refuses in its
//! dead-letter table; none of them may hold a payment card number or a raw loyalty
//! number. [`redact`] overwrites those digits with `*` without changing the length,
//! so a document can be masked in place, in pieces, and stays the same XML (a
//! masked document parses to the same transactions, card and loyalty numbers
//! aside).
//!
//! What is masked, all but the last four digits of each:
//! * every run of digits that looks like a card number
//!   ([`card_number_spans`] with [`ProductCodes::AreKept`], so item ids such as
//!   `4006381333931` stay readable);
//! * the text of every element, and the value of every attribute, whose local name
//!   is `PrimaryAccountNumber`, `LoyaltyAccountID`, `LoyaltyID` or `MembershipID`
//!   (whatever its prefix: NCR ACS writes `acs:LoyaltyID`), card number or not;
//! * the text of every `CustomerID` inside a `LoyaltyAccount` (where POSLog puts
//!   the loyalty card number; `Customer/CustomerID` is the customer's id and
//!   stays).
//!
//! The input is untrusted bytes: this is a scanner, not a parser. It never fails
//! and never panics; a document that is not well-formed is masked as far as its
//! tags can be found, and the card-number rule applies to all of it.

use crate::card::{ProductCodes, mask_card_numbers};
use std::ops::Range;

/// Elements and attributes whose text is a card or loyalty number.
const SECRET_NAMES: [&[u8]; 4] = [
    b"PrimaryAccountNumber",
    b"LoyaltyAccountID",
    b"LoyaltyID",
    b"MembershipID",
];

/// Masks card and loyalty numbers in `doc` (see the module doc). The length never
/// changes.
pub fn redact(doc: &mut [u8]) {
    mask_card_numbers(doc, ProductCodes::AreKept);
    for name in SECRET_NAMES {
        for region in element_texts(doc, name) {
            mask_text_digits(&mut doc[region]);
        }
        for region in attribute_values(doc, name) {
            mask_text_digits(&mut doc[region]);
        }
    }
    for account in outermost(element_texts(doc, b"LoyaltyAccount")) {
        for region in element_texts(&doc[account.clone()], b"CustomerID") {
            let region = account.start + region.start..account.start + region.end;
            mask_text_digits(&mut doc[region]);
        }
    }
}

/// Bytes masked per step by [`redact_stream`].
const STREAM_CHUNK: usize = 1024 * 1024;
/// Bytes of context [`redact_stream`] reads on each side of a step: a card number or
/// an element shorter than this is judged as in the whole document.
const STREAM_CONTEXT: usize = 64 * 1024;

/// Copies `from` to `to` with card and loyalty numbers masked, for documents too
/// large to hold in memory. Each piece is masked with [`STREAM_CONTEXT`] bytes of
/// the document on either side of it, so the copy equals [`redact`] of the whole
/// except where an element's text or a digit run is longer than that. Returns the
/// bytes copied.
///
/// # Errors
///
/// The first read or write error.
pub fn redact_stream(from: &mut impl std::io::Read, to: &mut impl std::io::Write) -> std::io::Result<u64> {
    redact_stream_with(from, to, STREAM_CHUNK, STREAM_CONTEXT)
}

fn redact_stream_with(
    from: &mut impl std::io::Read,
    to: &mut impl std::io::Write,
    chunk: usize,
    context: usize,
) -> std::io::Result<u64> {
    // `window` holds the document from `window_start`: up to `context` bytes
    // already written, then the piece to write, then up to `context` bytes ahead.
    let mut window: Vec<u8> = Vec::with_capacity(chunk + 2 * context);
    let mut window_start = 0u64;
    let mut written = 0u64;
    let mut ended = false;
    loop {
        let ahead = (written - window_start) as usize + chunk + context;
        while !ended && window.len() < ahead {
            let have = window.len();
            window.resize(ahead, 0);
            match from.read(&mut window[have..]) {
                Ok(0) => {
                    window.truncate(have);
                    ended = true;
                }
                Ok(n) => window.truncate(have + n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => window.truncate(have),
                Err(e) => return Err(e),
            }
        }
        let piece_start = (written - window_start) as usize;
        if piece_start >= window.len() {
            return Ok(written);
        }
        let mut masked = window.clone();
        redact(&mut masked);
        let piece_end = (piece_start + chunk).min(window.len());
        to.write_all(&masked[piece_start..piece_end])?;
        written += (piece_end - piece_start) as u64;
        // Keep `context` bytes behind the next piece.
        let drop = ((written - window_start) as usize).saturating_sub(context);
        window.drain(..drop);
        window_start += drop as u64;
    }
}

/// How far a tag or an attribute value is looked for: a start tag longer than this is
/// not taken for one, and an unquoted value is masked this far. The bound keeps the
/// work linear on hostile input (many unclosed quotes).
const MAX_TAG_BYTES: usize = 64 * 1024;

/// Overwrites the digits of `region`'s text with `*`, all but the last four. Markup
/// (tags, with their attribute values) is left alone, so the document keeps its
/// structure; the text of comments and CDATA sections is text.
fn mask_text_digits(region: &mut [u8]) {
    let digits = text_digits(region);
    for &i in &digits[..digits.len().saturating_sub(4)] {
        region[i] = b'*';
    }
}

/// The positions of the digits in `region` outside markup.
fn text_digits(region: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < region.len() {
        let rest = &region[i..];
        let section: Option<(usize, &[u8])> = if rest.starts_with(b"<![CDATA[") {
            Some((9, b"]]>"))
        } else if rest.starts_with(b"<!--") {
            Some((4, b"-->"))
        } else {
            None
        };
        if let Some((open, close)) = section {
            let end = rest[open..]
                .windows(close.len())
                .position(|w| w == close)
                .map_or(rest.len(), |p| open + p);
            out.extend((open..end).filter(|&j| rest[j].is_ascii_digit()).map(|j| i + j));
            i += end + close.len();
        } else if rest[0] == b'<' {
            i += tag_end(rest, 1).map_or(rest.len(), |e| e + 1);
        } else {
            if rest[0].is_ascii_digit() {
                out.push(i);
            }
            i += 1;
        }
    }
    out
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') || b >= 0x80
}

/// How an occurrence of a name is used.
enum Use {
    StartTag,
    EndTag,
    Attribute,
    Other,
}

/// What the bytes before `doc[at..]` (where a name was found) make of it:
/// `<name`, `<p:name`, `</name`, `</p:name`, ` name` or ` p:name`.
fn use_at(doc: &[u8], at: usize) -> Use {
    let mut i = at;
    if i > 0 && doc[i - 1] == b':' {
        i -= 1;
        while i > 0 && is_name_byte(doc[i - 1]) {
            i -= 1;
        }
        if i + 1 == at {
            // An empty prefix (`<:name`) is no name.
            return Use::Other;
        }
    }
    match (i.checked_sub(2).map(|j| doc[j]), i.checked_sub(1).map(|j| doc[j])) {
        (Some(b'<'), Some(b'/')) => Use::EndTag,
        (_, Some(b'<')) => Use::StartTag,
        (_, Some(b)) if b.is_ascii_whitespace() => Use::Attribute,
        _ => Use::Other,
    }
}

/// The positions where `name` occurs in `doc` as a whole name: followed by
/// whitespace, `>`, `/`, `=` or the end.
fn occurrences<'a>(doc: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    doc.windows(name.len()).enumerate().filter_map(move |(i, w)| {
        let whole = w == name
            && doc
                .get(i + name.len())
                .is_none_or(|&b| b.is_ascii_whitespace() || matches!(b, b'>' | b'/' | b'='));
        whole.then_some(i)
    })
}

/// The end of the tag whose name starts at `from`: the index of its `>`, skipping
/// quoted attribute values. `None` when the document ends first.
fn tag_end(doc: &[u8], from: usize) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in doc.iter().enumerate().skip(from).take(MAX_TAG_BYTES) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return Some(i),
            None => {}
        }
    }
    None
}

/// The text of each `name` element (any prefix): from the end of its start tag to
/// the start of its end tag, children and CDATA included. An element that is
/// never closed runs to the next `<`. Nested elements of the same name lie inside
/// their parent's region.
fn element_texts(doc: &[u8], name: &[u8]) -> Vec<Range<usize>> {
    let mut regions = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for at in occurrences(doc, name) {
        match use_at(doc, at) {
            Use::StartTag => {
                let Some(end) = tag_end(doc, at + name.len()) else {
                    continue;
                };
                if doc[end - 1] != b'/' {
                    open.push(end + 1);
                }
            }
            Use::EndTag => {
                if let Some(start) = open.pop() {
                    // The end tag's `<` (and prefix) come before `at`.
                    let close = doc[..at].iter().rposition(|&b| b == b'<').unwrap_or(at);
                    if start <= close {
                        regions.push(start..close);
                    }
                }
            }
            Use::Attribute | Use::Other => {}
        }
    }
    for start in open {
        let end = doc[start..]
            .iter()
            .position(|&b| b == b'<')
            .map_or(doc.len(), |p| start + p);
        regions.push(start..end);
    }
    regions
}

/// The value of each `name` attribute (any prefix): between its quotes.
fn attribute_values(doc: &[u8], name: &[u8]) -> Vec<Range<usize>> {
    let mut regions = Vec::new();
    for at in occurrences(doc, name) {
        if !matches!(use_at(doc, at), Use::Attribute) {
            continue;
        }
        let mut i = at + name.len();
        let skip_space = |mut i: usize| {
            while doc.get(i).is_some_and(u8::is_ascii_whitespace) {
                i += 1;
            }
            i
        };
        i = skip_space(i);
        if doc.get(i) != Some(&b'=') {
            continue;
        }
        i = skip_space(i + 1);
        let Some(&quote) = doc.get(i).filter(|&&b| b == b'"' || b == b'\'') else {
            continue;
        };
        let start = i + 1;
        let end = match doc[start..].iter().take(MAX_TAG_BYTES).position(|&b| b == quote) {
            Some(p) => start + p,
            None => {
                // Unterminated: up to the bound, and on to the end of a digit run
                // that crosses it, so no masked run leaves a card-like tail.
                let mut end = (start + MAX_TAG_BYTES).min(doc.len());
                while doc
                    .get(end)
                    .is_some_and(|b| b.is_ascii_digit() || matches!(b, b' ' | b'-'))
                {
                    end += 1;
                }
                end
            }
        };
        regions.push(start..end);
    }
    regions
}

/// The regions not inside another one, in order.
fn outermost(mut regions: Vec<Range<usize>>) -> Vec<Range<usize>> {
    regions.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut out: Vec<Range<usize>> = Vec::new();
    for r in regions {
        if out.last().is_none_or(|last| r.start >= last.end) {
            out.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poslog::parse_poslog;
    use proptest::prelude::*;

    fn redacted(doc: &str) -> String {
        let mut bytes = doc.as_bytes().to_vec();
        redact(&mut bytes);
        String::from_utf8(bytes).unwrap()
    }

    const SALE: &str = r#"<POSLog xmlns:acs="urn:acs"><Transaction>
  <WorkstationID>7</WorkstationID><SequenceNumber>12</SequenceNumber>
  <RetailTransaction>
    <LineItem><Sale><POSIdentity><POSItemID>4006381333931</POSItemID></POSIdentity>
      <ExtendedAmount>2.50</ExtendedAmount></Sale></LineItem>
    <LineItem><Tender TenderType="CreditDebit"><Amount>2.50</Amount>
      <CreditDebit><PrimaryAccountNumber>T220001293</PrimaryAccountNumber></CreditDebit>
      <acs:Card acs:PrimaryAccountNumber = '5500 0000 0000 0004' Last4="0004"/>
      <Note>paid with 4111-1111-1111-1111</Note></Tender></LineItem>
    <LoyaltyAccount><CustomerID>7100000000042</CustomerID><LoyaltyAccountID>99887766</LoyaltyAccountID></LoyaltyAccount>
    <Customer><CustomerID>C00000001</CustomerID></Customer>
  </RetailTransaction></Transaction></POSLog>"#;

    #[test]
    fn card_and_loyalty_numbers_are_masked_and_the_rest_is_kept() {
        let out = redacted(SALE);
        assert_eq!(out.len(), SALE.len());
        for kept in [
            "<POSItemID>4006381333931</POSItemID>",
            "<SequenceNumber>12</SequenceNumber>",
            "<Amount>2.50</Amount>",
            "<PrimaryAccountNumber>T*****1293</PrimaryAccountNumber>",
            "acs:PrimaryAccountNumber = '***************0004' Last4=\"0004\"",
            "<Note>paid with ***************1111</Note>",
            "<CustomerID>*********0042</CustomerID><LoyaltyAccountID>****7766</LoyaltyAccountID>",
            "<Customer><CustomerID>C00000001</CustomerID></Customer>",
        ] {
            assert!(out.contains(kept), "{kept:?} not in\n{out}");
        }
        // The masked document is the same POSLog: same transactions, loyalty aside.
        let (before, after) = (
            parse_poslog(SALE.as_bytes()).unwrap(),
            parse_poslog(out.as_bytes()).unwrap(),
        );
        assert_eq!(after[0].loyalty_account_id.as_deref(), Some("****7766"));
        let mut after = after;
        after[0].loyalty_account_id = before[0].loyalty_account_id.clone();
        // The free-text note is not modelled; everything that is stays equal.
        assert_eq!(before, after);
    }

    #[test]
    fn nested_unclosed_and_broken_documents_are_masked_as_far_as_tags_go() {
        assert_eq!(
            redacted(
                "<a:PrimaryAccountNumber><![CDATA[ 12345678 ]]></a:PrimaryAccountNumber><!-- 1234567 -->"
            ),
            "<a:PrimaryAccountNumber><![CDATA[ ****5678 ]]></a:PrimaryAccountNumber><!-- 1234567 -->"
        );
        assert_eq!(
            redacted("<LoyaltyAccountID>12345678"),
            "<LoyaltyAccountID>****5678"
        );
        assert_eq!(
            redacted("<LoyaltyAccount><x><CustomerID>1234567</CustomerID></x></LoyaltyAccount>"),
            "<LoyaltyAccount><x><CustomerID>***4567</CustomerID></x></LoyaltyAccount>"
        );
        // Self-closing, an empty prefix, a longer name: not an element of ours.
        for same in [
            "<PrimaryAccountNumber/>12345678",
            "<:PrimaryAccountNumber>12345678</:PrimaryAccountNumber>",
            "<PrimaryAccountNumberX>12345678</PrimaryAccountNumberX>",
            "<CustomerID>12345678</CustomerID>",
        ] {
            assert_eq!(redacted(same), same);
        }
        // An unterminated attribute value is masked to its bound, then stops.
        let long = format!("<c PrimaryAccountNumber=\"{}", "12ab ".repeat(20_000));
        let out = redacted(&long);
        assert!(out[..MAX_TAG_BYTES].ends_with('*'), "masked up to the bound");
        assert!(out.ends_with("12ab "), "not beyond it");
    }

    /// A document of tag fragments, card-like digits and text, to find what the
    /// masking would miss.
    fn fragments() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("<PrimaryAccountNumber>".to_string()),
            Just("</PrimaryAccountNumber>".to_string()),
            Just("<acs:LoyaltyAccountID x='1'>".to_string()),
            Just("</acs:LoyaltyAccountID>".to_string()),
            Just("<LoyaltyAccount>".to_string()),
            Just("</LoyaltyAccount>".to_string()),
            Just("<CustomerID>".to_string()),
            Just("</CustomerID>".to_string()),
            Just(" PrimaryAccountNumber=\"".to_string()),
            Just("\"".to_string()),
            Just("4111111111111111".to_string()),
            Just("4006381333931".to_string()),
            "[0-9 -]{1,25}",
            "[a-z<>/=\"' ]{1,8}",
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    #[test]
    fn a_large_document_streams_to_the_same_bytes_as_masked_whole() {
        let mut doc = Vec::new();
        while doc.len() < 3 * STREAM_CHUNK {
            doc.extend_from_slice(SALE.as_bytes());
        }
        let mut whole = doc.clone();
        redact(&mut whole);
        let mut streamed = Vec::new();
        // A reader that hands out odd-sized pieces.
        struct Trickle<'a>(&'a [u8]);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(77_777);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let copied = redact_stream(&mut Trickle(&doc), &mut streamed).unwrap();
        assert_eq!(copied as usize, doc.len());
        assert!(
            streamed == whole,
            "the streamed copy differs from the whole masked"
        );
        assert!(!String::from_utf8(streamed).unwrap().contains("4111-1111"));
    }

    proptest! {
        #[test]
        fn streaming_in_any_pieces_with_enough_context_is_masking_whole(
            doc in fragments(),
            chunk in 1usize..64,
        ) {
            let mut whole = doc.clone().into_bytes();
            redact(&mut whole);
            let mut streamed = Vec::new();
            let copied = redact_stream_with(&mut doc.as_bytes(), &mut streamed, chunk, doc.len()).unwrap();
            prop_assert_eq!(copied as usize, doc.len());
            prop_assert_eq!(streamed, whole);
        }

        #[test]
        fn arbitrary_bytes_keep_their_length_and_masking_twice_changes_nothing(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut once = bytes.clone();
            redact(&mut once);
            prop_assert_eq!(once.len(), bytes.len());
            let mut twice = once.clone();
            redact(&mut twice);
            prop_assert_eq!(&twice, &once);
            // Only digits, spaces and dashes ever change, and only to `*`.
            for (a, b) in bytes.iter().zip(&once) {
                prop_assert!(a == b || (*b == b'*' && (a.is_ascii_digit() || matches!(a, b' ' | b'-'))));
            }
        }

        #[test]
        fn no_card_number_survives(doc in fragments()) {
            let mut out = doc.clone().into_bytes();
            redact(&mut out);
            prop_assert!(
                crate::card::card_number_spans(&out, ProductCodes::AreKept).is_empty(),
                "{:?} -> {:?}", doc, String::from_utf8_lossy(&out)
            );
            // The text of every element of ours keeps at most four digits.
            for name in SECRET_NAMES {
                for r in element_texts(&out, name).into_iter().chain(attribute_values(&out, name)) {
                    let digits = text_digits(&out[r]).len();
                    prop_assert!(digits <= 4, "{:?}", String::from_utf8_lossy(&out));
                }
            }
        }
    }
}
