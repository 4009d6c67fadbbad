//! The parser thread's side of an import: what it sends, in which order.

use super::*;

/// A card line whose hash is 32 times `byte`.
fn card(byte: u8, customer: &str) -> String {
    format!(
        r#"{{"loyalty_card":{{"card_hash":"{}","customer_id":"{customer}","status":"active"}}}}"#,
        hex::encode([byte; 32])
    )
}

fn config(key: &str) -> String {
    format!(r#"{{"config":{{"key":"{key}","value":1}}}}"#)
}

/// A record as sent: its line, its kind, and for a card its hash's first byte and
/// customer.
type Sent = (u64, &'static str, Option<(u8, String)>);

const HEADER: &str = r#"{"snapshot":"store-agent","format":1,"tenant_id":"t","store_id":"s","created_at_ms":0,"key_fingerprint":"f","streams":{}}"#;

/// Runs the parser over `text` (header included) with runs of `card_run` cards,
/// and returns everything it sent after the header.
fn run_parser(text: Vec<u8>, card_run: usize) -> Vec<Result<Batch, SnapshotError>> {
    let (header_tx, header_rx) = mpsc::sync_channel(1);
    let (batch_tx, batch_rx) = mpsc::sync_channel(1024);
    let (_spent_tx, spent_rx) = mpsc::sync_channel(8);
    parse_file(
        Path::new("test.jsonl"),
        SnapshotSource::Stream(Box::new(std::io::Cursor::new(text))),
        ParserEnds {
            header: header_tx,
            batches: batch_tx,
            spent: spent_rx,
        },
        card_run,
    );
    header_rx.recv().unwrap().expect("the header parses");
    batch_rx.try_iter().collect()
}

/// What the parser sends for `lines` (after a header line) with runs of
/// `card_run` cards: (line, kind, card hash's first byte, customer) per record.
fn parse(lines: &[String], card_run: usize) -> Vec<Vec<Sent>> {
    let mut text = format!("{HEADER}\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    run_parser(text.into_bytes(), card_run)
        .into_iter()
        .map(|b| {
            b.expect("every line parses")
                .into_iter()
                .map(|(line, p)| {
                    let card = match &p {
                        Parsed::Ready(Prepared::Card {
                            hash, customer_id, ..
                        }) => Some((hash[0], customer_id.clone())),
                        _ => None,
                    };
                    (line, p.kind(), card)
                })
                .collect()
        })
        .collect()
}

#[test]
fn cards_go_out_in_sorted_runs_before_the_end_record() {
    // Lines 2..=12 after the header (line 1); the card with hash 0x50 twice.
    let lines = vec![
        card(0x90, "C1"),                        // 2
        config("a"),                             // 3
        card(0x50, "C2"),                        // 4
        card(0x10, "C3"),                        // 5
        card(0x70, "C4"),                        // 6
        config("b"),                             // 7
        card(0x50, "C5"),                        // 8, the later copy of line 4's card
        card(0x30, "C6"),                        // 9
        card(0x20, "C7"),                        // 10
        config("c"),                             // 11
        r#"{"end":{"records":10}}"#.to_string(), // 12
    ];
    let batches = parse(&lines, 3);
    let records: Vec<_> = batches.iter().flatten().collect();
    assert!(batches.len() > 1, "the cards of a run go out on their own");
    // Every line arrives exactly once.
    let mut seen: Vec<u64> = records.iter().map(|r| r.0).collect();
    seen.sort_unstable();
    assert_eq!(seen, (2..=12).collect::<Vec<_>>());
    // The end record is the very last thing sent.
    assert_eq!(records.last().unwrap().1, "end");
    // Cards travel in runs of three (the rest before the end record), each run in hash
    // order.
    let cards = |batches: &[Vec<Sent>]| -> Vec<(u64, u8, String)> {
        batches
            .iter()
            .flatten()
            .filter_map(|(line, _, c)| c.as_ref().map(|(h, cust)| (*line, *h, cust.clone())))
            .collect()
    };
    let expect = |v: &[(u64, u8, &str)]| -> Vec<(u64, u8, String)> {
        v.iter().map(|&(l, h, c)| (l, h, c.to_string())).collect()
    };
    assert_eq!(
        cards(&batches),
        expect(&[
            (5, 0x10, "C3"),
            (4, 0x50, "C2"),
            (2, 0x90, "C1"),
            (9, 0x30, "C6"),
            (8, 0x50, "C5"),
            (6, 0x70, "C4"),
            (10, 0x20, "C7"),
        ])
    );
    // In one run, equal hashes keep their file order: the later copy is written last
    // and wins, as without the sort.
    assert_eq!(
        cards(&parse(&lines, 100)),
        expect(&[
            (5, 0x10, "C3"),
            (10, 0x20, "C7"),
            (9, 0x30, "C6"),
            (4, 0x50, "C2"),
            (8, 0x50, "C5"),
            (6, 0x70, "C4"),
            (2, 0x90, "C1"),
        ])
    );
    // The other records are not held back: each is sent in file order.
    let others: Vec<u64> = records.iter().filter(|r| r.2.is_none()).map(|r| r.0).collect();
    assert_eq!(others, vec![3, 7, 11, 12]);
}

#[test]
fn a_card_after_the_end_record_still_comes_after_it() {
    let lines = vec![
        card(0x20, "C1"),
        r#"{"end":{"records":1}}"#.to_string(),
        card(0x10, "C2"),
    ];
    let records: Vec<_> = parse(&lines, 100).into_iter().flatten().collect();
    let order: Vec<(u64, &str)> = records.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(
        order,
        vec![(2, "loyalty_cards"), (3, "end"), (4, "loyalty_cards")],
        "the writer must see line 4 after the end record, to refuse it"
    );
}

#[test]
fn a_line_that_is_not_utf8_is_refused_with_its_number() {
    let mut text = format!("{HEADER}\n{}\n\n", config("a")).into_bytes();
    // Line 4 (after an empty line 3): a key with a byte that is not UTF-8.
    text.extend_from_slice(b"{\"config\":{\"key\":\"b\xff\",\"value\":1}}\n");
    let sent = run_parser(text, CARD_RUN);
    let good: Vec<u64> = sent
        .iter()
        .filter_map(|b| b.as_ref().ok())
        .flatten()
        .map(|(line, _)| *line)
        .collect();
    assert_eq!(good, vec![2]);
    match sent.last() {
        Some(Err(SnapshotError::Line { line, message, .. })) => {
            assert_eq!(*line, 4, "{message}");
        }
        other => panic!(
            "expected an error for line 4, got {:?}",
            other.map(|r| r.as_ref().err())
        ),
    }
}
