//! The keyboard-wedge key decoder ([`WedgeDecoder`]) against key sequences typed the
//! way a scanner set to a layout types them, and the wedge driver's configuration
//! and its behaviour when the scanner is missing.
//!
//! The key sequences come from a reverse map written here by hand from the layout
//! charts (US; German T1, DIN 2137), independently of the decoder's own tables, so
//! a wrong entry on either side shows up as a mismatch.
//!
//! What this machine cannot test: it has no `/dev/input` and no `/dev/uinput`, so no
//! test opens, grabs or reads a real input device.

use std::time::Duration;

use firmware_interfaces::drivers::keymap::{
    DecoderOptions, GsCtrlKey, KeyboardLayout, MAX_WEDGE_MESSAGE_LEN, WedgeDecoder, WedgeOutput,
    WedgeRejection, WedgeTerminator,
};
use firmware_interfaces::drivers::status::{DeviceEvent, DeviceEventKind, DeviceState};
use firmware_interfaces::drivers::wedge::{DeviceMatch, UsbId, WedgeConfig, run_wedge};
use proptest::prelude::*;

// Linux key codes, from linux/input-event-codes.h.
const KEY_1: u16 = 2;
const KEY_5: u16 = 6;
const KEY_0: u16 = 11;
const KEY_EQUAL: u16 = 13;
const KEY_TAB: u16 = 15;
const KEY_Q: u16 = 16;
const KEY_Y: u16 = 21;
const KEY_LEFTBRACE: u16 = 26;
const KEY_RIGHTBRACE: u16 = 27;
const KEY_ENTER: u16 = 28;
const KEY_LEFTCTRL: u16 = 29;
const KEY_A: u16 = 30;
const KEY_SEMICOLON: u16 = 39;
const KEY_APOSTROPHE: u16 = 40;
const KEY_GRAVE: u16 = 41;
const KEY_LEFTSHIFT: u16 = 42;
const KEY_Z: u16 = 44;
const KEY_RIGHTSHIFT: u16 = 54;
const KEY_LEFTALT: u16 = 56;
const KEY_SPACE: u16 = 57;
const KEY_CAPSLOCK: u16 = 58;
const KEY_F1: u16 = 59;
const KEY_KP9: u16 = 73;
const KEY_KP2: u16 = 80;
const KEY_KP0: u16 = 82;
const KEY_MINUS: u16 = 12;
const KEY_KPENTER: u16 = 96;
const KEY_RIGHTCTRL: u16 = 97;
const KEY_RIGHTALT: u16 = 100;

const GS: u8 = 0x1D;

/// The modifier a character needs on its key.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Level {
    Base,
    Shift,
    AltGr,
}

/// How to type one character: a key at a level, and for dead keys a Space after.
#[derive(Debug, Clone, Copy)]
struct Stroke {
    key: u16,
    level: Level,
    dead: bool,
}

/// The letter keys of a QWERTY keyboard.
fn qwerty_letter_key(c: char) -> Option<u16> {
    let keys: [(char, u16); 26] = [
        ('q', 16),
        ('w', 17),
        ('e', 18),
        ('r', 19),
        ('t', 20),
        ('y', 21),
        ('u', 22),
        ('i', 23),
        ('o', 24),
        ('p', 25),
        ('a', 30),
        ('s', 31),
        ('d', 32),
        ('f', 33),
        ('g', 34),
        ('h', 35),
        ('j', 36),
        ('k', 37),
        ('l', 38),
        ('z', 44),
        ('x', 45),
        ('c', 46),
        ('v', 47),
        ('b', 48),
        ('n', 49),
        ('m', 50),
    ];
    keys.iter().find(|(l, _)| *l == c).map(|&(_, key)| key)
}

const US_SYMBOLS: &[(char, u16, Level)] = {
    use Level::*;
    &[
        (' ', 57, Base),
        ('!', 2, Shift),
        ('"', 40, Shift),
        ('#', 4, Shift),
        ('$', 5, Shift),
        ('%', 6, Shift),
        ('&', 8, Shift),
        ('\'', 40, Base),
        ('(', 10, Shift),
        (')', 11, Shift),
        ('*', 9, Shift),
        ('+', 13, Shift),
        (',', 51, Base),
        ('-', 12, Base),
        ('.', 52, Base),
        ('/', 53, Base),
        (':', 39, Shift),
        (';', 39, Base),
        ('<', 51, Shift),
        ('=', 13, Base),
        ('>', 52, Shift),
        ('?', 53, Shift),
        ('@', 3, Shift),
        ('[', 26, Base),
        ('\\', 43, Base),
        (']', 27, Base),
        ('^', 7, Shift),
        ('_', 12, Shift),
        ('`', 41, Base),
        ('{', 26, Shift),
        ('|', 43, Shift),
        ('}', 27, Shift),
        ('~', 41, Shift),
    ]
};

/// German T1: (character, key, level, dead key).
const DE_SYMBOLS: &[(char, u16, Level, bool)] = {
    use Level::*;
    &[
        (' ', 57, Base, false),
        ('!', 2, Shift, false),
        ('"', 3, Shift, false),
        ('#', 43, Base, false),
        ('$', 5, Shift, false),
        ('%', 6, Shift, false),
        ('&', 7, Shift, false),
        ('\'', 43, Shift, false),
        ('(', 9, Shift, false),
        (')', 10, Shift, false),
        ('*', 27, Shift, false),
        ('+', 27, Base, false),
        (',', 51, Base, false),
        ('-', 53, Base, false),
        ('.', 52, Base, false),
        ('/', 8, Shift, false),
        (':', 52, Shift, false),
        (';', 51, Shift, false),
        ('<', 86, Base, false),
        ('=', 11, Shift, false),
        ('>', 86, Shift, false),
        ('?', 12, Shift, false),
        ('@', 16, AltGr, false),
        ('[', 9, AltGr, false),
        ('\\', 12, AltGr, false),
        (']', 10, AltGr, false),
        ('^', 41, Base, true),
        ('_', 53, Shift, false),
        ('`', 13, Shift, true),
        ('{', 8, AltGr, false),
        ('|', 86, AltGr, false),
        ('}', 11, AltGr, false),
        ('~', 27, AltGr, false),
        ('§', 4, Shift, false),
        ('°', 41, Shift, false),
        ('ß', 12, Base, false),
        ('ü', 26, Base, false),
        ('Ü', 26, Shift, false),
        ('ö', 39, Base, false),
        ('Ö', 39, Shift, false),
        ('ä', 40, Base, false),
        ('Ä', 40, Shift, false),
        ('€', 18, AltGr, false),
        ('´', 13, Base, true),
    ]
};

/// French AZERTY as Windows has it: (character, key, level, dead key). Digits are on
/// the Shift level of the top row.
const FR_SYMBOLS: &[(char, u16, Level, bool)] = {
    use Level::*;
    &[
        (' ', 57, Base, false),
        ('!', 53, Base, false),
        ('"', 4, Base, false),
        ('#', 4, AltGr, false),
        ('$', 27, Base, false),
        ('%', 40, Shift, false),
        ('&', 2, Base, false),
        ('\'', 5, Base, false),
        ('(', 6, Base, false),
        (')', 12, Base, false),
        ('*', 43, Base, false),
        ('+', 13, Shift, false),
        (',', 50, Base, false),
        ('-', 7, Base, false),
        ('.', 51, Shift, false),
        ('/', 52, Shift, false),
        (':', 52, Base, false),
        (';', 51, Base, false),
        ('<', 86, Base, false),
        ('=', 13, Base, false),
        ('>', 86, Shift, false),
        ('?', 50, Shift, false),
        ('@', 11, AltGr, false),
        ('[', 6, AltGr, false),
        ('\\', 9, AltGr, false),
        (']', 12, AltGr, false),
        ('^', 10, AltGr, false),
        ('_', 9, Base, false),
        ('`', 8, AltGr, true),
        ('{', 5, AltGr, false),
        ('|', 7, AltGr, false),
        ('}', 13, AltGr, false),
        ('~', 3, AltGr, true),
        ('1', 2, Shift, false),
        ('2', 3, Shift, false),
        ('3', 4, Shift, false),
        ('4', 5, Shift, false),
        ('5', 6, Shift, false),
        ('6', 7, Shift, false),
        ('7', 8, Shift, false),
        ('8', 9, Shift, false),
        ('9', 10, Shift, false),
        ('0', 11, Shift, false),
        ('é', 3, Base, false),
        ('è', 8, Base, false),
        ('ç', 10, Base, false),
        ('à', 11, Base, false),
        ('ù', 40, Base, false),
        ('£', 27, Shift, false),
        ('§', 53, Shift, false),
        ('°', 12, Shift, false),
        ('€', 18, AltGr, false),
    ]
};

/// How a scanner set to `layout` types `c`, if it can.
fn stroke(layout: KeyboardLayout, c: char) -> Option<Stroke> {
    let plain = |key, level| {
        Some(Stroke {
            key,
            level,
            dead: false,
        })
    };
    let from_table = |symbols: &[(char, u16, Level, bool)]| {
        symbols
            .iter()
            .find(|(s, ..)| *s == c)
            .map(|&(_, key, level, dead)| Stroke { key, level, dead })
    };
    if c.is_ascii_alphabetic() {
        let level = if c.is_ascii_uppercase() {
            Level::Shift
        } else {
            Level::Base
        };
        let key = match (layout, c.to_ascii_lowercase()) {
            // QWERTZ: Y and Z swap keys.
            (KeyboardLayout::De, 'y') => 44,
            (KeyboardLayout::De, 'z') => 21,
            // AZERTY: A and Q swap, Z and W swap, M is right of L.
            (KeyboardLayout::Fr, 'a') => 16,
            (KeyboardLayout::Fr, 'q') => 30,
            (KeyboardLayout::Fr, 'z') => 17,
            (KeyboardLayout::Fr, 'w') => 44,
            (KeyboardLayout::Fr, 'm') => 39,
            (_, lower) => qwerty_letter_key(lower)?,
        };
        return plain(key, level);
    }
    match layout {
        KeyboardLayout::Fr => from_table(FR_SYMBOLS),
        _ if c.is_ascii_digit() => {
            let digit = c.to_digit(10)? as u16;
            plain(if digit == 0 { KEY_0 } else { KEY_1 + digit - 1 }, Level::Base)
        }
        KeyboardLayout::Us => US_SYMBOLS
            .iter()
            .find(|(s, ..)| *s == c)
            .and_then(|&(_, key, level)| plain(key, level)),
        KeyboardLayout::De => from_table(DE_SYMBOLS),
    }
}

/// How a scanner sends GS.
#[derive(Debug, Clone, Copy)]
enum GsMethod {
    /// Ctrl held with this key.
    Ctrl(u16),
    /// Left Alt held, 0 0 2 9 on the keypad, Alt released.
    AltCode,
}

fn tap(events: &mut Vec<(u16, i32)>, key: u16) {
    events.push((key, 1));
    events.push((key, 0));
}

/// The key events of a scanner typing `text` (then Enter) for `layout`.
fn type_text(layout: KeyboardLayout, text: &str, gs: GsMethod) -> Vec<(u16, i32)> {
    let mut events = Vec::new();
    for c in text.chars() {
        if c == char::from(GS) {
            match gs {
                GsMethod::Ctrl(key) => {
                    events.push((KEY_LEFTCTRL, 1));
                    tap(&mut events, key);
                    events.push((KEY_LEFTCTRL, 0));
                }
                GsMethod::AltCode => {
                    events.push((KEY_LEFTALT, 1));
                    for key in [KEY_KP0, KEY_KP0, KEY_KP2, KEY_KP9] {
                        tap(&mut events, key);
                    }
                    events.push((KEY_LEFTALT, 0));
                }
            }
            continue;
        }
        let s = stroke(layout, c).unwrap_or_else(|| panic!("{layout:?} cannot type {c:?}"));
        let modifier = match s.level {
            Level::Base => None,
            Level::Shift => Some(KEY_LEFTSHIFT),
            Level::AltGr => Some(KEY_RIGHTALT),
        };
        if let Some(m) = modifier {
            events.push((m, 1));
        }
        tap(&mut events, s.key);
        if let Some(m) = modifier {
            events.push((m, 0));
        }
        if s.dead {
            tap(&mut events, KEY_SPACE);
        }
    }
    tap(&mut events, KEY_ENTER);
    events
}

fn decoder(layout: KeyboardLayout) -> WedgeDecoder {
    WedgeDecoder::new(DecoderOptions {
        layout,
        ..DecoderOptions::default()
    })
}

/// Feeds `events`, collecting every output.
fn feed(decoder: &mut WedgeDecoder, events: &[(u16, i32)]) -> Vec<WedgeOutput> {
    events
        .iter()
        .filter_map(|&(code, value)| decoder.key(code, value))
        .collect()
}

fn message(bytes: &[u8]) -> Vec<WedgeOutput> {
    vec![WedgeOutput::Message(bytes.to_vec())]
}

const LAYOUTS: [KeyboardLayout; 3] = [KeyboardLayout::Us, KeyboardLayout::De, KeyboardLayout::Fr];

fn gs_text() -> String {
    format!(
        "]C1{}0109521234543213{}3103000123",
        char::from(GS),
        char::from(GS)
    )
}

#[test]
fn scans_come_out_as_typed_on_both_layouts_with_either_gs_method() {
    let texts = [
        "]E04006381333931".to_string(),
        gs_text(),
        "]Q3https://id.gs1.org/01/09521234543213".into(),
    ];
    for layout in LAYOUTS {
        let ctrl_key = match layout {
            KeyboardLayout::Us | KeyboardLayout::Fr => KEY_RIGHTBRACE,
            KeyboardLayout::De => KEY_5,
        };
        for gs in [GsMethod::Ctrl(ctrl_key), GsMethod::AltCode] {
            for text in &texts {
                let mut d = decoder(layout);
                let got = feed(&mut d, &type_text(layout, text, gs));
                assert_eq!(got, message(text.as_bytes()), "{layout:?} {gs:?} {text:?}");
                assert_eq!(d.ignored_keys(), 0, "{layout:?} {gs:?} {text:?}");
            }
        }
    }
}

#[test]
fn the_same_keys_mean_different_characters_on_the_other_layout() {
    // A scanner set to German read as US: the classic wrong-layout symptom.
    let events = type_text(KeyboardLayout::De, "]E0", GsMethod::AltCode);
    assert_ne!(feed(&mut decoder(KeyboardLayout::Us), &events), message(b"]E0"));
}

#[test]
fn french_types_digits_with_shift_and_swaps_a_q_z_w() {
    let mut events = Vec::new();
    for key in [2, 3, KEY_Q, KEY_A, 17, KEY_Z, KEY_SEMICOLON] {
        tap(&mut events, key);
    }
    events.push((KEY_LEFTSHIFT, 1));
    for key in [2, 3, KEY_0] {
        tap(&mut events, key);
    }
    events.push((KEY_LEFTSHIFT, 0));
    tap(&mut events, KEY_ENTER);
    assert_eq!(
        feed(&mut decoder(KeyboardLayout::Fr), &events),
        message("&éaqzwm120".as_bytes())
    );
}

#[test]
fn german_swaps_y_and_z() {
    let mut events = Vec::new();
    for key in [KEY_Y, KEY_Z] {
        tap(&mut events, key);
    }
    events.push((KEY_LEFTSHIFT, 1));
    for key in [KEY_Y, KEY_Z] {
        tap(&mut events, key);
    }
    events.push((KEY_LEFTSHIFT, 0));
    tap(&mut events, KEY_ENTER);
    assert_eq!(feed(&mut decoder(KeyboardLayout::De), &events), message(b"zyZY"));
    assert_eq!(feed(&mut decoder(KeyboardLayout::Us), &events), message(b"yzYZ"));
}

#[test]
fn german_umlauts_and_sharp_s_come_out_as_utf8() {
    let mut events = Vec::new();
    for key in [KEY_LEFTBRACE, KEY_SEMICOLON, KEY_APOSTROPHE, KEY_MINUS] {
        tap(&mut events, key);
    }
    events.push((KEY_RIGHTSHIFT, 1));
    for key in [KEY_LEFTBRACE, KEY_SEMICOLON, KEY_APOSTROPHE] {
        tap(&mut events, key);
    }
    events.push((KEY_RIGHTSHIFT, 0));
    tap(&mut events, KEY_ENTER);
    assert_eq!(
        feed(&mut decoder(KeyboardLayout::De), &events),
        message("üöäßÜÖÄ".as_bytes())
    );
}

#[test]
fn german_shifted_digits_differ_from_us() {
    let mut events = Vec::new();
    events.push((KEY_LEFTSHIFT, 1));
    for key in [3, 4, 8, KEY_0] {
        tap(&mut events, key); // Shift+2, +3, +7, +0
    }
    events.push((KEY_LEFTSHIFT, 0));
    tap(&mut events, KEY_ENTER);
    assert_eq!(
        feed(&mut decoder(KeyboardLayout::De), &events),
        message("\"§/=".as_bytes())
    );
    assert_eq!(feed(&mut decoder(KeyboardLayout::Us), &events), message(b"@#&)"));
}

#[test]
fn altgr_q_is_at_sign_by_right_alt_or_ctrl_alt() {
    let events = [
        (KEY_RIGHTALT, 1),
        (KEY_Q, 1),
        (KEY_Q, 0),
        (KEY_RIGHTALT, 0),
        (KEY_LEFTCTRL, 1),
        (KEY_LEFTALT, 1),
        (KEY_Q, 1),
        (KEY_Q, 0),
        (KEY_LEFTALT, 0),
        (KEY_LEFTCTRL, 0),
        (KEY_ENTER, 1),
    ];
    assert_eq!(feed(&mut decoder(KeyboardLayout::De), &events), message(b"@@"));
}

#[test]
fn alt_0029_on_the_keypad_is_gs_with_or_without_the_leading_zeros() {
    for layout in LAYOUTS {
        let mut events = vec![(KEY_LEFTALT, 1)];
        for key in [KEY_KP0, KEY_KP0, KEY_KP2, KEY_KP9] {
            tap(&mut events, key);
        }
        events.push((KEY_LEFTALT, 0));
        events.push((KEY_LEFTALT, 1));
        for key in [KEY_KP2, KEY_KP9] {
            tap(&mut events, key);
        }
        events.push((KEY_LEFTALT, 0));
        tap(&mut events, KEY_ENTER);
        assert_eq!(
            feed(&mut decoder(layout), &events),
            message(&[GS, GS]),
            "{layout:?}"
        );
    }
}

#[test]
fn ctrl_right_brace_is_gs_on_us_and_the_gs_key_is_configurable() {
    let ctrl_tap = |ctrl, key| vec![(ctrl, 1), (key, 1), (key, 0), (ctrl, 0), (KEY_ENTER, 1)];
    let us = decoder(KeyboardLayout::Us);
    assert_eq!(
        feed(&mut us.clone(), &ctrl_tap(KEY_LEFTCTRL, KEY_RIGHTBRACE)),
        message(&[GS])
    );
    assert_eq!(
        feed(&mut us.clone(), &ctrl_tap(KEY_RIGHTCTRL, KEY_RIGHTBRACE)),
        message(&[GS])
    );
    // Ctrl+5 is not GS on US unless configured.
    let mut plain_us = us.clone();
    assert_eq!(feed(&mut plain_us, &ctrl_tap(KEY_LEFTCTRL, KEY_5)), vec![]);
    assert_eq!(plain_us.ignored_keys(), 1);

    let de = decoder(KeyboardLayout::De);
    assert_eq!(
        feed(&mut de.clone(), &ctrl_tap(KEY_LEFTCTRL, KEY_5)),
        message(&[GS])
    );
    let configured = |layout, gs_ctrl_key| {
        WedgeDecoder::new(DecoderOptions {
            layout,
            gs_ctrl_key: Some(gs_ctrl_key),
            ..DecoderOptions::default()
        })
    };
    let mut de_plus = configured(KeyboardLayout::De, GsCtrlKey::RightBrace);
    assert_eq!(
        feed(&mut de_plus, &ctrl_tap(KEY_LEFTCTRL, KEY_RIGHTBRACE)),
        message(&[GS])
    );
    let mut us_5 = configured(KeyboardLayout::Us, GsCtrlKey::Code(KEY_5));
    assert_eq!(feed(&mut us_5, &ctrl_tap(KEY_LEFTCTRL, KEY_5)), message(&[GS]));
}

#[test]
fn ctrl_letters_give_their_control_codes() {
    // ISO/IEC 15434 envelopes use RS (Ctrl+^ = Ctrl+Shift+6 on US) and EOT (Ctrl+D).
    let events = [
        (KEY_LEFTCTRL, 1),
        (KEY_LEFTSHIFT, 1),
        (7, 1),
        (7, 0),
        (KEY_LEFTSHIFT, 0),
        (32, 1), // D
        (32, 0),
        (KEY_LEFTCTRL, 0),
        (KEY_ENTER, 1),
    ];
    assert_eq!(
        feed(&mut decoder(KeyboardLayout::Us), &events),
        message(&[0x1E, 0x04])
    );
}

#[test]
fn key_repeat_is_ignored() {
    let events = [
        (KEY_A, 1),
        (KEY_A, 2),
        (KEY_A, 2),
        (KEY_A, 0),
        (KEY_ENTER, 1),
        (KEY_ENTER, 2),
    ];
    assert_eq!(feed(&mut decoder(KeyboardLayout::Us), &events), message(b"a"));
}

#[test]
fn releases_are_ignored() {
    // Releases without presses (the device opened mid-scan) type nothing.
    let events = [
        (KEY_A, 0),
        (KEY_1, 0),
        (KEY_ENTER, 0),
        (KEY_A, 1),
        (KEY_ENTER, 1),
        (KEY_ENTER, 0),
    ];
    let mut d = decoder(KeyboardLayout::Us);
    assert_eq!(feed(&mut d, &events), message(b"a"));
    assert_eq!(d.ignored_keys(), 0);
}

#[test]
fn shift_released_mid_scan_ends_upper_case() {
    let events = [
        (KEY_LEFTSHIFT, 1),
        (KEY_A, 1),
        (KEY_A, 0),
        (KEY_RIGHTSHIFT, 1),
        (KEY_LEFTSHIFT, 0),
        // Right Shift still held.
        (KEY_A, 1),
        (KEY_A, 0),
        (KEY_RIGHTSHIFT, 0),
        (KEY_A, 1),
        (KEY_A, 0),
        (KEY_ENTER, 1),
    ];
    assert_eq!(feed(&mut decoder(KeyboardLayout::Us), &events), message(b"AAa"));
}

#[test]
fn caps_lock_toggles_and_shift_inverts_it() {
    let events = [
        (KEY_CAPSLOCK, 1),
        (KEY_CAPSLOCK, 0),
        (KEY_A, 1),
        (KEY_LEFTSHIFT, 1),
        (KEY_A, 1),
        (KEY_LEFTSHIFT, 0),
        (KEY_1, 1),
        (KEY_CAPSLOCK, 1),
        (KEY_A, 1),
        (KEY_ENTER, 1),
    ];
    assert_eq!(feed(&mut decoder(KeyboardLayout::Us), &events), message(b"Aa1a"));
}

#[test]
fn german_dead_keys_give_their_accent_before_space_or_another_key() {
    let events = [
        (KEY_GRAVE, 1),
        (KEY_SPACE, 1),
        (KEY_GRAVE, 1),
        (KEY_1, 1),
        (KEY_LEFTSHIFT, 1),
        (KEY_EQUAL, 1),
        (KEY_LEFTSHIFT, 0),
        (KEY_ENTER, 1),
    ];
    assert_eq!(feed(&mut decoder(KeyboardLayout::De), &events), message(b"^^1`"));
}

#[test]
fn unknown_keys_are_ignored_and_counted() {
    let mut d = decoder(KeyboardLayout::Us);
    let events = [(KEY_F1, 1), (KEY_F1, 0), (KEY_A, 1), (500, 1), (KEY_ENTER, 1)];
    assert_eq!(feed(&mut d, &events), message(b"a"));
    assert_eq!(d.ignored_keys(), 2);
}

#[test]
fn an_empty_scan_gives_nothing_and_keypad_enter_ends_a_scan() {
    let mut d = decoder(KeyboardLayout::Us);
    assert_eq!(feed(&mut d, &[(KEY_ENTER, 1), (KEY_KPENTER, 1)]), vec![]);
    assert_eq!(feed(&mut d, &[(KEY_A, 1), (KEY_KPENTER, 1)]), message(b"a"));
}

#[test]
fn a_scan_without_terminator_ends_when_the_driver_says_so() {
    let mut d = decoder(KeyboardLayout::De);
    assert!(!d.has_pending());
    assert_eq!(d.end_scan(), None);
    feed(&mut d, &[(KEY_LEFTSHIFT, 1), (KEY_A, 1), (KEY_A, 0)]);
    assert!(d.has_pending());
    assert_eq!(d.end_scan(), Some(WedgeOutput::Message(b"A".to_vec())));
    assert!(!d.has_pending());
    // Shift is still held: modifier state survives the end of a scan.
    assert_eq!(
        feed(&mut d, &[(KEY_A, 1), (KEY_ENTER, 1), (KEY_LEFTSHIFT, 0)]),
        message(b"A")
    );
    // A waiting dead key is a scan begun.
    feed(&mut d, &[(KEY_GRAVE, 1)]);
    assert!(d.has_pending());
    assert_eq!(d.end_scan(), Some(WedgeOutput::Message(b"^".to_vec())));
}

#[test]
fn tab_can_end_scans_instead_of_enter() {
    let mut tab = WedgeDecoder::new(DecoderOptions {
        terminator: WedgeTerminator::Tab,
        ..DecoderOptions::default()
    });
    assert_eq!(
        feed(&mut tab, &[(KEY_A, 1), (KEY_ENTER, 1), (KEY_A, 1), (KEY_TAB, 1)]),
        message(b"aa")
    );
    assert_eq!(tab.ignored_keys(), 1);
    // With Enter ending scans, Tab is a character of the scan.
    let mut enter = decoder(KeyboardLayout::Us);
    assert_eq!(
        feed(&mut enter, &[(KEY_A, 1), (KEY_TAB, 1), (KEY_ENTER, 1)]),
        message(b"a\t")
    );
}

#[test]
fn an_over_long_scan_is_cut_and_rejected_and_the_next_one_is_clean() {
    let mut d = decoder(KeyboardLayout::Us);
    let mut events = Vec::new();
    for _ in 0..MAX_WEDGE_MESSAGE_LEN + 10 {
        tap(&mut events, KEY_A);
    }
    tap(&mut events, KEY_ENTER);
    let got = feed(&mut d, &events);
    assert_eq!(
        got,
        vec![WedgeOutput::Rejected {
            reason: WedgeRejection::TooLong {
                limit: MAX_WEDGE_MESSAGE_LEN
            },
            data: vec![b'a'; MAX_WEDGE_MESSAGE_LEN],
        }]
    );
    assert_eq!(feed(&mut d, &[(KEY_1, 1), (KEY_ENTER, 1)]), message(b"1"));
}

#[test]
fn a_multi_byte_character_at_the_limit_is_not_split() {
    let mut d = decoder(KeyboardLayout::De);
    let mut events = Vec::new();
    for _ in 0..MAX_WEDGE_MESSAGE_LEN - 1 {
        tap(&mut events, KEY_A);
    }
    tap(&mut events, KEY_LEFTBRACE); // ü, two bytes: one too many
    tap(&mut events, KEY_ENTER);
    let got = feed(&mut d, &events);
    let [WedgeOutput::Rejected { data, .. }] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!(data.len(), MAX_WEDGE_MESSAGE_LEN - 1);
    assert!(std::str::from_utf8(data).is_ok());
}

/// Every printable ASCII character, for the property below.
fn printable_ascii() -> impl Strategy<Value = String> {
    proptest::collection::vec(0x20u8..=0x7E, 0..80)
        .prop_map(|bytes| bytes.into_iter().map(char::from).collect())
}

proptest! {
    #[test]
    fn arbitrary_key_events_never_panic_and_never_exceed_the_limit(
        layout in proptest::sample::select(LAYOUTS.to_vec()),
        events in proptest::collection::vec((0u16..300, -1i32..4), 0..400),
        drop_at in proptest::option::of(0usize..400),
    ) {
        let mut d = decoder(layout);
        for (i, &(code, value)) in events.iter().enumerate() {
            if Some(i) == drop_at {
                d.events_dropped();
            }
            match d.key(code, value) {
                Some(WedgeOutput::Message(m)) => prop_assert!(!m.is_empty() && m.len() <= MAX_WEDGE_MESSAGE_LEN),
                Some(WedgeOutput::Rejected { data, .. }) => prop_assert!(data.len() <= MAX_WEDGE_MESSAGE_LEN),
                None => {}
            }
        }
    }

    #[test]
    fn typed_printable_text_comes_back_exactly(
        layout in proptest::sample::select(LAYOUTS.to_vec()),
        text in printable_ascii(),
    ) {
        let mut d = decoder(layout);
        let got = feed(&mut d, &type_text(layout, &text, GsMethod::AltCode));
        let want = if text.is_empty() { vec![] } else { message(text.as_bytes()) };
        prop_assert_eq!(got, want);
        prop_assert_eq!(d.ignored_keys(), 0);
    }
}

#[test]
fn the_config_reads_from_the_file_and_refuses_unknown_keys() {
    let config: WedgeConfig = serde_json::from_str(
        r#"{"device_id": "counter-scanner", "device": {"usb": "0c2e:0b61"}, "layout": "de",
            "gs_key": "right_brace", "terminator": "tab", "inter_key_timeout_ms": 80}"#,
    )
    .unwrap();
    assert_eq!(
        config.device,
        DeviceMatch::Usb(UsbId {
            vendor: 0x0c2e,
            product: 0x0b61
        })
    );
    assert_eq!(config.layout, KeyboardLayout::De);
    assert!(config.grab, "grab defaults to true");
    assert_eq!(config.gs_key, Some(GsCtrlKey::RightBrace));
    assert_eq!(config.terminator, WedgeTerminator::Tab);
    assert_eq!(config.reopen_interval_ms, 1000);
    assert_eq!(config.inter_key_timeout_ms, 80);
    config.validate().unwrap();

    let by_code: WedgeConfig = serde_json::from_str(
        r#"{"device_id": "w", "device": {"name": "Scanner"}, "gs_key": {"code": 6}, "grab": false}"#,
    )
    .unwrap();
    assert_eq!(by_code.gs_key.map(GsCtrlKey::key_code), Some(KEY_5));
    assert!(!by_code.grab);

    let unknown =
        serde_json::from_str::<WedgeConfig>(r#"{"device_id": "w", "device": {"name": "S"}, "grap": true}"#);
    assert!(unknown.unwrap_err().to_string().contains("grap"));
    let bad_usb =
        serde_json::from_str::<WedgeConfig>(r#"{"device_id": "w", "device": {"usb": "0c2e-0b61"}}"#);
    assert!(bad_usb.unwrap_err().to_string().contains("vvvv:pppp"));
    let bad_layout =
        serde_json::from_str::<WedgeConfig>(r#"{"device_id": "w", "device": {"name": "S"}, "layout": "uk"}"#);
    assert!(bad_layout.is_err());
}

#[test]
fn validate_names_the_bad_key() {
    let cases = [
        (WedgeConfig::new(" ", DeviceMatch::Name("S".into())), "device_id"),
        (
            WedgeConfig::new("w", DeviceMatch::Path("event3".into())),
            "device.path",
        ),
        (WedgeConfig::new("w", DeviceMatch::Name("".into())), "device.name"),
        (
            WedgeConfig {
                gs_key: Some(GsCtrlKey::Code(0)),
                ..WedgeConfig::new("w", DeviceMatch::Name("S".into()))
            },
            "gs_key.code",
        ),
        (
            WedgeConfig {
                reopen_interval_ms: 0,
                ..WedgeConfig::new("w", DeviceMatch::Name("S".into()))
            },
            "reopen_interval_ms",
        ),
        (
            WedgeConfig {
                inter_key_timeout_ms: 60_000,
                ..WedgeConfig::new("w", DeviceMatch::Name("S".into()))
            },
            "inter_key_timeout_ms",
        ),
    ];
    for (config, key) in cases {
        let error = config.validate().unwrap_err();
        assert_eq!(error.key, key, "{error}");
    }
}

/// Runs the driver until its first event, checks nothing else arrives for a few
/// reopen intervals, then shuts it down and checks that it returns.
async fn first_event_then_silence(config: WedgeConfig) -> DeviceEvent {
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let driver = tokio::spawn(run_wedge(config, tx, async {
        let _ = stop_rx.await;
    }));
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the driver reports within 10 s")
        .expect("the driver is running");
    // Reported once, not at every attempt to reopen (every 20 ms here).
    let more = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
    assert!(more.is_err(), "second event: {more:?}");
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .expect("the driver returns after shutdown")
        .expect("the driver does not panic");
    first
}

#[tokio::test]
async fn a_missing_device_path_is_reported_disconnected_with_the_reason() {
    let path = "/nonexistent/input/by-id/usb-scanner-event-kbd";
    let config = WedgeConfig {
        reopen_interval_ms: 20,
        ..WedgeConfig::new("wedge-1", DeviceMatch::Path(path.into()))
    };
    let event = first_event_then_silence(config).await;
    assert_eq!(event.device_id, "wedge-1");
    let DeviceEventKind::Status(DeviceState::Disconnected { reason }) = &event.kind else {
        panic!("{event:?}")
    };
    assert!(
        reason.contains(path) && reason.contains("No such file"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_device_name_that_matches_nothing_is_reported_disconnected_with_the_reason() {
    let config = WedgeConfig {
        reopen_interval_ms: 20,
        ..WedgeConfig::new("wedge-2", DeviceMatch::Name("No Such Scanner 3000".into()))
    };
    let event = first_event_then_silence(config).await;
    let DeviceEventKind::Status(DeviceState::Disconnected { reason }) = &event.kind else {
        panic!("{event:?}")
    };
    assert!(
        reason.contains("no input device with name \"No Such Scanner 3000\""),
        "{reason}"
    );
}

#[tokio::test]
async fn an_invalid_config_is_reported_as_an_error_and_the_driver_returns() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let config = WedgeConfig::new("", DeviceMatch::Name("S".into()));
    tokio::time::timeout(
        Duration::from_secs(5),
        run_wedge(config, tx, std::future::pending()),
    )
    .await
    .expect("returns at once");
    let event = rx.recv().await.expect("one event");
    let DeviceEventKind::Status(DeviceState::Error { reason }) = &event.kind else {
        panic!("{event:?}")
    };
    assert!(reason.contains("device_id"), "{reason}");
}
