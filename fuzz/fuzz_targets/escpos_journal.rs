//! Fuzzes the ESC/POS journal tap, `escpos::journal::JournalTap`, and its PAN mask,
//! `escpos::journal::mask_pans`.
//!
//! Input layout: byte 0 picks the configuration (bit 0: split on cut, bit 1:
//! start/end patterns), byte 1 seeds the chunk sizes (0: the stream in one piece,
//! else pieces of 1 to `byte 1` bytes in a pseudo-random sequence); the rest is the
//! print stream.
//!
//! Asserted besides "no panic", as the module promises:
//! * chunk boundaries never change the result: the stream in pieces gives the same
//!   receipts as the stream whole, and `finish` leaves the tap in its power-on state
//!   (the same stream again gives the same receipts);
//! * every line has its PANs masked: it contains no run of 13 to 19 digits that
//!   passes the Luhn check, neither consecutive digits nor whole groups of digits
//!   separated by single spaces or dashes as `mask_pans` reads them (so a card
//!   number printed next to other digits counts too), and `mask_pans` leaves it
//!   unchanged (no candidate is left to mask);
//! * lines carry no trailing spaces, and no receipt is only empty lines;
//! * `mask_pans` on the input as text gives a line with the same two properties.
#![no_main]

use firmware_interfaces::card::luhn_valid;
use firmware_interfaces::escpos::journal::{JournalConfig, JournalTap, Receipt, mask_pans};
use libfuzzer_sys::fuzz_target;

fn config(flags: u8) -> JournalConfig {
    let patterns = flags & 2 != 0;
    JournalConfig {
        start_patterns: if patterns {
            vec!["RECEIPT".into()]
        } else {
            Vec::new()
        },
        end_patterns: if patterns {
            vec!["TOTAL".into(), "Thank".into()]
        } else {
            Vec::new()
        },
        split_on_cut: flags & 1 != 0,
    }
}

fn run(tap: &mut JournalTap, stream: &[u8], seed: u8) -> Vec<Receipt> {
    let mut out = Vec::new();
    if seed == 0 {
        out.extend(tap.push(stream));
    } else {
        let mut state = u32::from(seed) | 0x100;
        let mut rest = stream;
        while !rest.is_empty() {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let size = (state % u32::from(seed)) as usize + 1;
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            out.extend(tap.push(chunk));
            rest = tail;
        }
    }
    out.extend(tap.finish());
    out
}

/// The candidates of `mask_pans` in `line`: runs of digits in which single spaces
/// or dashes may separate groups, each as its groups of consecutive digits.
fn candidates(line: &str) -> Vec<Vec<&str>> {
    // Digits and separators are ASCII: a byte scan never splits a character.
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let mut groups = Vec::new();
        let mut start = i;
        loop {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            groups.push(&line[start..i]);
            if i + 1 < b.len() && matches!(b[i], b' ' | b'-') && b[i + 1].is_ascii_digit() {
                i += 1;
                start = i;
            } else {
                break;
            }
        }
        out.push(groups);
    }
    out
}

fn assert_masked(line: &str) {
    for groups in candidates(line) {
        for first in 0..groups.len() {
            let mut digits = String::new();
            for group in &groups[first..] {
                digits.push_str(group);
                if digits.len() > 19 {
                    break;
                }
                assert!(
                    !(digits.len() >= 13 && luhn_valid(&digits)),
                    "unmasked PAN-like run {digits:?} in line {line:?}"
                );
            }
        }
    }
    assert_eq!(mask_pans(line), line, "mask_pans would still change {line:?}");
}

fuzz_target!(|data: &[u8]| {
    let (flags, seed, stream) = match data {
        [flags, seed, stream @ ..] => (*flags, *seed, stream),
        _ => return,
    };
    let whole = run(&mut JournalTap::new(config(flags)), stream, 0);
    let mut tap = JournalTap::new(config(flags));
    let pieces = run(&mut tap, stream, seed);
    assert_eq!(whole, pieces, "chunking changed the receipts");
    assert_eq!(run(&mut tap, stream, 0), whole, "finish did not reset the tap");
    for receipt in &whole {
        assert!(
            receipt.lines.iter().any(|l| !l.trim().is_empty()),
            "empty receipt"
        );
        for line in &receipt.lines {
            assert_eq!(line.trim_end(), line, "trailing spaces in {line:?}");
            assert_masked(line);
        }
    }
    let text = String::from_utf8_lossy(stream);
    assert_masked(&mask_pans(&text));
});
