//! Keyboard-wedge key events to message bytes: what a scanner typed, read back by
//! the keyboard layout it was told to type for.
//!
//! A keyboard-wedge scanner pretends to be a keyboard. It turns each character of a
//! barcode into key presses for the layout it was configured with (US, German or
//! French), and
//! ends the scan with Enter (or Tab). [`WedgeDecoder`] reverses that: it takes the
//! Linux input key events (`EV_KEY` codes from `linux/input-event-codes.h`, with value
//! 1 = press, 0 = release, 2 = auto-repeat) and returns one [`WedgeOutput`] per scan.
//!
//! What it understands:
//!
//! * the US layout and the German T1 layout (DIN 2137: QWERTZ, `ß ü ö ä`, AltGr level
//!   for `@ { [ ] } \ | ~ €`, dead keys `^`, `´` and `` ` ``). A dead key followed by
//!   Space gives the accent itself; followed by anything else it gives the accent and
//!   then that character (accented letters are not composed: barcodes do not contain
//!   them, and scanners type accents as dead key + Space);
//! * the French AZERTY layout as Windows has it (see [`KeyboardLayout::Fr`]), with
//!   the same dead-key rule;
//! * Shift (either), Caps Lock (toggled by its press; assumed off when the decoder is
//!   created; it changes letters and umlauts only), AltGr (Right Alt on the German
//!   and French layouts, or Ctrl+Alt as on Windows);
//! * control characters typed with Ctrl: the configured GS key ([`GsCtrlKey`]) with
//!   Ctrl gives GS (0x1D, the GS1 FNC1 separator); Ctrl with a key that types
//!   `@`, `A`–`Z`, `[`, `\`, `]`, `^`, `_` or `a`–`z` gives that character's control
//!   code (Ctrl+D = EOT, Ctrl+Shift+6 = RS on US);
//! * Alt codes: Alt held, a decimal number typed on the keypad, Alt released gives
//!   the character with that number (Alt+0029 = GS). 1–127 are ASCII; 128–255 are
//!   taken as Latin-1 and emitted as UTF-8 (Windows would use code page 1252 or 437
//!   there; scanners use Alt codes for control characters only);
//! * keypad digits and operators always type their character (a scanner emulating a
//!   keypad means Num Lock on; a grabbed device has no Num Lock state of its own).
//!
//! **Invariants:**
//!
//! * printable characters come out as UTF-8, control characters as their single byte;
//! * auto-repeat events and releases of non-modifier keys never add a character;
//! * a message never exceeds [`MAX_WEDGE_MESSAGE_LEN`] bytes: a longer scan is cut
//!   there and returned as [`WedgeOutput::Rejected`] with the part that was kept;
//! * keys the layout does not know are ignored and counted
//!   ([`WedgeDecoder::ignored_keys`]); no key sequence makes the decoder panic;
//! * an empty scan (a terminator with nothing before it) returns nothing.

use serde::Deserialize;

/// The longest message a keyboard-wedge scan may produce, in bytes. The longest
/// symbols (PDF417, QR) hold about 3 KB; anything longer is a stuck key or a scanner
/// that never sends its terminator.
pub const MAX_WEDGE_MESSAGE_LEN: usize = 4096;

/// Linux input key codes (`linux/input-event-codes.h`) the decoder treats specially.
mod code {
    pub const TAB: u16 = 15;
    pub const ENTER: u16 = 28;
    pub const LEFTCTRL: u16 = 29;
    pub const LEFTSHIFT: u16 = 42;
    pub const RIGHTSHIFT: u16 = 54;
    pub const LEFTALT: u16 = 56;
    pub const CAPSLOCK: u16 = 58;
    pub const KPENTER: u16 = 96;
    pub const RIGHTCTRL: u16 = 97;
    pub const RIGHTALT: u16 = 100;
    pub const KEY_5: u16 = 6;
    pub const RIGHTBRACE: u16 = 27;
    /// Keys that change nothing for a scanner: Num Lock, Scroll Lock, the Meta keys.
    pub const NEUTRAL: [u16; 4] = [69, 70, 125, 126];
}

/// The keyboard layout the scanner was configured to type for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyboardLayout {
    /// US English (QWERTY), the factory default of most scanners.
    #[default]
    Us,
    /// German T1 (QWERTZ, DIN 2137), with AltGr and dead keys.
    De,
    /// French AZERTY as Windows has it: digits on the Shift level, `# { [ | \ ^ @ ] } €`
    /// on the AltGr level, dead keys `^`, `¨`, AltGr+2 (`~`) and AltGr+7 (`` ` ``).
    Fr,
}

/// The key that ends a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WedgeTerminator {
    /// Enter or keypad Enter (the scanners' default suffix). Tab then types a tab.
    #[default]
    Enter,
    /// Tab. Enter keys are then ignored (and counted).
    Tab,
}

/// The key that, pressed with Ctrl, types GS (0x1D), the GS1 FNC1 separator.
///
/// In the config file: `"right_brace"`, `"digit5"`, or `{ code = N }` with a Linux
/// key code from `linux/input-event-codes.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GsCtrlKey {
    /// The key right of `P` (`]` on US): Ctrl+] is GS in ASCII, the US default.
    RightBrace,
    /// The digit 5 of the top row: what scanners set to German commonly send.
    Digit5,
    /// Any other key, by its Linux key code.
    Code(u16),
}

impl GsCtrlKey {
    /// The Linux key code of this key.
    pub fn key_code(self) -> u16 {
        match self {
            GsCtrlKey::RightBrace => code::RIGHTBRACE,
            GsCtrlKey::Digit5 => code::KEY_5,
            GsCtrlKey::Code(code) => code,
        }
    }

    /// The key used when the configuration names none: Ctrl+] on US, Ctrl+5 on German.
    pub fn layout_default(layout: KeyboardLayout) -> GsCtrlKey {
        match layout {
            KeyboardLayout::Us | KeyboardLayout::Fr => GsCtrlKey::RightBrace,
            KeyboardLayout::De => GsCtrlKey::Digit5,
        }
    }
}

/// How a [`WedgeDecoder`] reads key events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecoderOptions {
    /// The layout the scanner types for.
    pub layout: KeyboardLayout,
    /// The key that ends a scan.
    pub terminator: WedgeTerminator,
    /// The key that types GS with Ctrl; `None` means [`GsCtrlKey::layout_default`].
    pub gs_ctrl_key: Option<GsCtrlKey>,
}

/// Why a scan was not returned as a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WedgeRejection {
    /// The scan went past the length limit before its terminator.
    #[error("scan longer than {limit} bytes before its terminator; cut at {limit} bytes")]
    TooLong {
        /// The limit, [`MAX_WEDGE_MESSAGE_LEN`].
        limit: usize,
    },
    /// The kernel dropped input events during the scan (`SYN_DROPPED`), so characters
    /// may be missing.
    #[error("the kernel dropped key events during the scan; characters may be missing")]
    EventsDropped,
}

/// What a finished scan gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WedgeOutput {
    /// A complete scan, without its terminator.
    Message(Vec<u8>),
    /// A scan that cannot be trusted, with what was read of it (kept so that a person
    /// can look at it).
    Rejected {
        /// Why it was rejected.
        reason: WedgeRejection,
        /// The bytes read before the problem, at most [`MAX_WEDGE_MESSAGE_LEN`].
        data: Vec<u8>,
    },
}

/// What one key types on one layout.
#[derive(Debug, Clone, Copy)]
enum Sym {
    /// A character, typed at once.
    Char(char),
    /// A dead key: its accent waits for the next key.
    Dead(char),
}

/// The levels of one key.
#[derive(Debug, Clone, Copy)]
struct KeyLevels {
    base: Sym,
    shift: Sym,
    altgr: Option<Sym>,
    /// Whether Caps Lock swaps base and shift (letters and umlauts).
    caps: bool,
}

const fn plain(base: char, shift: char) -> KeyLevels {
    KeyLevels {
        base: Sym::Char(base),
        shift: Sym::Char(shift),
        altgr: None,
        caps: false,
    }
}

const fn with_altgr(base: char, shift: char, altgr: char) -> KeyLevels {
    KeyLevels {
        base: Sym::Char(base),
        shift: Sym::Char(shift),
        altgr: Some(Sym::Char(altgr)),
        caps: false,
    }
}

const fn letter(lower: char, upper: char) -> KeyLevels {
    KeyLevels {
        base: Sym::Char(lower),
        shift: Sym::Char(upper),
        altgr: None,
        caps: true,
    }
}

/// The letter keys of the QWERTY rows, by key code.
fn qwerty_letter(code: u16) -> Option<char> {
    let (row, first): (&[u8], u16) = match code {
        16..=25 => (b"qwertyuiop", 16),
        30..=38 => (b"asdfghjkl", 30),
        44..=50 => (b"zxcvbnm", 44),
        _ => return None,
    };
    row.get(usize::from(code - first)).map(|&b| char::from(b))
}

/// Keypad keys: the same on both layouts except the decimal key.
fn keypad(layout: KeyboardLayout, code: u16) -> Option<char> {
    Some(match code {
        71 => '7',
        72 => '8',
        73 => '9',
        74 => '-',
        75 => '4',
        76 => '5',
        77 => '6',
        78 => '+',
        79 => '1',
        80 => '2',
        81 => '3',
        82 => '0',
        83 => match layout {
            KeyboardLayout::Us | KeyboardLayout::Fr => '.',
            // The German keypad's decimal key types a comma.
            KeyboardLayout::De => ',',
        },
        55 => '*',
        98 => '/',
        117 => '=',
        _ => return None,
    })
}

/// The keypad digit of a key code, for Alt codes.
fn keypad_digit(code: u16) -> Option<u32> {
    Some(match code {
        82 => 0,
        79 => 1,
        80 => 2,
        81 => 3,
        75 => 4,
        76 => 5,
        77 => 6,
        71 => 7,
        72 => 8,
        73 => 9,
        _ => return None,
    })
}

fn us_key(code: u16) -> Option<KeyLevels> {
    if let Some(c) = qwerty_letter(code) {
        return Some(letter(c, c.to_ascii_uppercase()));
    }
    Some(match code {
        2 => plain('1', '!'),
        3 => plain('2', '@'),
        4 => plain('3', '#'),
        5 => plain('4', '$'),
        6 => plain('5', '%'),
        7 => plain('6', '^'),
        8 => plain('7', '&'),
        9 => plain('8', '*'),
        10 => plain('9', '('),
        11 => plain('0', ')'),
        12 => plain('-', '_'),
        13 => plain('=', '+'),
        15 => plain('\t', '\t'),
        26 => plain('[', '{'),
        27 => plain(']', '}'),
        39 => plain(';', ':'),
        40 => plain('\'', '"'),
        41 => plain('`', '~'),
        43 => plain('\\', '|'),
        51 => plain(',', '<'),
        52 => plain('.', '>'),
        53 => plain('/', '?'),
        57 => plain(' ', ' '),
        // The extra key of 105-key keyboards; on US it repeats backslash.
        86 => plain('\\', '|'),
        _ => return keypad(KeyboardLayout::Us, code).map(|c| plain(c, c)),
    })
}

fn de_key(code: u16) -> Option<KeyLevels> {
    // QWERTZ: the keys labelled Y and Z on US swap places.
    let letter_code = match code {
        21 => 44,
        44 => 21,
        other => other,
    };
    if let Some(c) = qwerty_letter(letter_code) {
        let mut levels = letter(c, c.to_ascii_uppercase());
        levels.altgr = match c {
            'q' => Some(Sym::Char('@')),
            'e' => Some(Sym::Char('€')),
            'm' => Some(Sym::Char('µ')),
            _ => None,
        };
        return Some(levels);
    }
    Some(match code {
        41 => KeyLevels {
            base: Sym::Dead('^'),
            shift: Sym::Char('°'),
            altgr: None,
            caps: false,
        },
        2 => plain('1', '!'),
        3 => with_altgr('2', '"', '²'),
        4 => with_altgr('3', '§', '³'),
        5 => plain('4', '$'),
        6 => plain('5', '%'),
        7 => plain('6', '&'),
        8 => with_altgr('7', '/', '{'),
        9 => with_altgr('8', '(', '['),
        10 => with_altgr('9', ')', ']'),
        11 => with_altgr('0', '=', '}'),
        12 => with_altgr('ß', '?', '\\'),
        13 => KeyLevels {
            base: Sym::Dead('´'),
            shift: Sym::Dead('`'),
            altgr: None,
            caps: false,
        },
        15 => plain('\t', '\t'),
        26 => letter('ü', 'Ü'),
        27 => with_altgr('+', '*', '~'),
        39 => letter('ö', 'Ö'),
        40 => letter('ä', 'Ä'),
        43 => plain('#', '\''),
        51 => plain(',', ';'),
        52 => plain('.', ':'),
        53 => plain('-', '_'),
        57 => plain(' ', ' '),
        86 => with_altgr('<', '>', '|'),
        _ => return keypad(KeyboardLayout::De, code).map(|c| plain(c, c)),
    })
}

fn fr_key(code: u16) -> Option<KeyLevels> {
    // AZERTY: A and Q swap, Z and W swap, M sits right of L, and the US M key types
    // a comma.
    let letter_code = match code {
        16 => 30,
        30 => 16,
        17 => 44,
        44 => 17,
        39 => 50,
        50..=53 => 0,
        other => other,
    };
    if let Some(c) = qwerty_letter(letter_code) {
        let mut levels = letter(c, c.to_ascii_uppercase());
        if c == 'e' {
            levels.altgr = Some(Sym::Char('€'));
        }
        return Some(levels);
    }
    let digit = |base: char, digit: char, altgr: Option<Sym>| KeyLevels {
        base: Sym::Char(base),
        shift: Sym::Char(digit),
        altgr,
        caps: false,
    };
    let char_altgr = |c| Some(Sym::Char(c));
    Some(match code {
        // Shift+² types nothing on Windows; taken as ² again.
        41 => plain('²', '²'),
        2 => digit('&', '1', None),
        3 => digit('é', '2', Some(Sym::Dead('~'))),
        4 => digit('"', '3', char_altgr('#')),
        5 => digit('\'', '4', char_altgr('{')),
        6 => digit('(', '5', char_altgr('[')),
        7 => digit('-', '6', char_altgr('|')),
        8 => digit('è', '7', Some(Sym::Dead('`'))),
        9 => digit('_', '8', char_altgr('\\')),
        10 => digit('ç', '9', char_altgr('^')),
        11 => digit('à', '0', char_altgr('@')),
        12 => with_altgr(')', '°', ']'),
        13 => with_altgr('=', '+', '}'),
        15 => plain('\t', '\t'),
        26 => KeyLevels {
            base: Sym::Dead('^'),
            shift: Sym::Dead('¨'),
            altgr: None,
            caps: false,
        },
        27 => with_altgr('$', '£', '¤'),
        40 => plain('ù', '%'),
        43 => plain('*', 'µ'),
        50 => plain(',', '?'),
        51 => plain(';', '.'),
        52 => plain(':', '/'),
        53 => plain('!', '§'),
        57 => plain(' ', ' '),
        86 => plain('<', '>'),
        _ => return keypad(KeyboardLayout::Fr, code).map(|c| plain(c, c)),
    })
}

/// Modifier keys, one bit each so that releasing one Shift while the other is held
/// keeps Shift on.
mod modifier {
    pub const LEFT_SHIFT: u8 = 1;
    pub const RIGHT_SHIFT: u8 = 2;
    pub const LEFT_CTRL: u8 = 4;
    pub const RIGHT_CTRL: u8 = 8;
    pub const LEFT_ALT: u8 = 16;
    pub const RIGHT_ALT: u8 = 32;
    pub const SHIFT: u8 = LEFT_SHIFT | RIGHT_SHIFT;
    pub const CTRL: u8 = LEFT_CTRL | RIGHT_CTRL;

    /// The modifier bit of a key code, if it is a modifier.
    pub fn of(code: u16) -> Option<u8> {
        Some(match code {
            super::code::LEFTSHIFT => LEFT_SHIFT,
            super::code::RIGHTSHIFT => RIGHT_SHIFT,
            super::code::LEFTCTRL => LEFT_CTRL,
            super::code::RIGHTCTRL => RIGHT_CTRL,
            super::code::LEFTALT => LEFT_ALT,
            super::code::RIGHTALT => RIGHT_ALT,
            _ => return None,
        })
    }
}

/// Turns the key events of one keyboard-wedge device into messages.
///
/// Feed it every `EV_KEY` event of the device, in order, with [`WedgeDecoder::key`].
/// It keeps the modifier state between events, so one decoder serves one device.
#[derive(Debug, Clone)]
pub struct WedgeDecoder {
    options: DecoderOptions,
    gs_key: u16,
    modifiers: u8,
    caps_lock: bool,
    /// The decimal number typed on the keypad while Alt is held.
    alt_code: Option<u32>,
    /// A dead key waiting for the next key.
    pending_dead: Option<char>,
    /// The scan so far.
    buffer: Vec<u8>,
    /// The scan went past [`MAX_WEDGE_MESSAGE_LEN`]; the rest is dropped.
    overflowed: bool,
    /// Events were lost during this scan.
    dropped: bool,
    ignored: u64,
}

impl WedgeDecoder {
    /// A decoder with no key held, Caps Lock off and an empty scan.
    pub fn new(options: DecoderOptions) -> WedgeDecoder {
        let gs_key = options
            .gs_ctrl_key
            .unwrap_or(GsCtrlKey::layout_default(options.layout))
            .key_code();
        WedgeDecoder {
            options,
            gs_key,
            modifiers: 0,
            caps_lock: false,
            alt_code: None,
            pending_dead: None,
            buffer: Vec::new(),
            overflowed: false,
            dropped: false,
            ignored: 0,
        }
    }

    /// The options this decoder was made with.
    pub fn options(&self) -> DecoderOptions {
        self.options
    }

    /// How many key presses were ignored because the layout gives them no meaning
    /// (function keys, unknown Ctrl or Alt combinations, Enter when Tab ends scans).
    pub fn ignored_keys(&self) -> u64 {
        self.ignored
    }

    /// How many bytes the current, unfinished scan holds.
    pub fn pending_len(&self) -> usize {
        self.buffer.len()
    }

    /// Whether a scan has begun and not ended: bytes, a waiting dead key, or a scan
    /// that went past the limit.
    pub fn has_pending(&self) -> bool {
        !self.buffer.is_empty() || self.pending_dead.is_some() || self.overflowed
    }

    /// Ends the current scan as if its terminator had come, for scanners configured
    /// without a suffix (the driver calls it after a pause in typing). Modifier state
    /// is kept.
    pub fn end_scan(&mut self) -> Option<WedgeOutput> {
        self.finish()
    }

    /// Takes one key event: `code` is the Linux key code, `value` 1 for a press, 0 for
    /// a release, 2 for an auto-repeat (ignored). Returns the finished scan when the
    /// event is the terminator.
    pub fn key(&mut self, code: u16, value: i32) -> Option<WedgeOutput> {
        match value {
            0 => {
                self.release(code);
                None
            }
            1 => self.press(code),
            // Auto-repeat: a scanner never holds a key long enough to mean it, and a
            // repeated character would corrupt the scan.
            _ => None,
        }
    }

    /// Tells the decoder that the kernel dropped events (`SYN_DROPPED`): the current
    /// scan is marked untrustworthy and will be returned as
    /// [`WedgeRejection::EventsDropped`] at its terminator, and all modifiers are taken
    /// as released until [`WedgeDecoder::resync_held_keys`] says otherwise.
    pub fn events_dropped(&mut self) {
        self.dropped = true;
        self.modifiers = 0;
        self.alt_code = None;
        self.pending_dead = None;
    }

    /// Sets the modifier state from the keys the device reports as held now (after
    /// events were dropped, or when a device is opened with a key down).
    pub fn resync_held_keys(&mut self, held: impl IntoIterator<Item = u16>) {
        self.modifiers = held
            .into_iter()
            .filter_map(modifier::of)
            .fold(0, |acc, bit| acc | bit);
    }

    fn shift(&self) -> bool {
        self.modifiers & modifier::SHIFT != 0
    }

    fn ctrl(&self) -> bool {
        self.modifiers & modifier::CTRL != 0
    }

    /// Whether the AltGr level is selected: Right Alt on German, or Ctrl+Alt there.
    fn altgr(&self) -> bool {
        match self.options.layout {
            KeyboardLayout::Us => false,
            KeyboardLayout::De | KeyboardLayout::Fr => {
                self.modifiers & modifier::RIGHT_ALT != 0
                    || (self.ctrl() && self.modifiers & modifier::LEFT_ALT != 0)
            }
        }
    }

    /// Whether an Alt that starts Alt codes is held (either Alt on US, Left Alt on
    /// German where Right Alt is AltGr).
    fn plain_alt(&self) -> bool {
        if self.altgr() {
            return false;
        }
        let alt_bits = match self.options.layout {
            KeyboardLayout::Us => modifier::LEFT_ALT | modifier::RIGHT_ALT,
            KeyboardLayout::De | KeyboardLayout::Fr => modifier::LEFT_ALT,
        };
        self.modifiers & alt_bits != 0
    }

    fn release(&mut self, code: u16) {
        let Some(bit) = modifier::of(code) else {
            return;
        };
        let alt_was_held = self.plain_alt();
        self.modifiers &= !bit;
        if alt_was_held && !self.plain_alt() {
            if let Some(value) = self.alt_code.take() {
                self.type_alt_code(value);
            }
        }
    }

    fn press(&mut self, code: u16) -> Option<WedgeOutput> {
        if let Some(bit) = modifier::of(code) {
            let alt_was_held = self.plain_alt();
            self.modifiers |= bit;
            if !alt_was_held && self.plain_alt() {
                self.alt_code = None;
            }
            return None;
        }
        if code == code::CAPSLOCK {
            self.caps_lock = !self.caps_lock;
            return None;
        }
        if code::NEUTRAL.contains(&code) {
            return None;
        }
        if self.is_terminator(code) {
            return self.finish();
        }
        if matches!(code, code::ENTER | code::KPENTER) {
            // Enter while Tab ends scans: nothing a barcode needs.
            self.ignored += 1;
            return None;
        }
        if self.plain_alt() {
            match keypad_digit(code) {
                Some(digit) => {
                    // Capped so that a stuck key cannot overflow; anything past 255 is
                    // refused at Alt's release anyway.
                    let value = self
                        .alt_code
                        .unwrap_or(0)
                        .saturating_mul(10)
                        .saturating_add(digit);
                    self.alt_code = Some(value.min(100_000));
                }
                None => self.ignored += 1,
            }
            return None;
        }
        let altgr = self.altgr();
        if self.ctrl() && !altgr {
            self.type_ctrl(code);
            return None;
        }
        match self.symbol(code, altgr) {
            Some(Sym::Char(c)) => match self.pending_dead.take() {
                Some(accent) if c == ' ' => self.push_char(accent),
                Some(accent) => {
                    self.push_char(accent);
                    self.push_char(c);
                }
                None => self.push_char(c),
            },
            Some(Sym::Dead(accent)) => {
                self.flush_dead();
                self.pending_dead = Some(accent);
            }
            None => self.ignored += 1,
        }
        None
    }

    fn is_terminator(&self, code: u16) -> bool {
        match self.options.terminator {
            WedgeTerminator::Enter => matches!(code, code::ENTER | code::KPENTER),
            WedgeTerminator::Tab => code == code::TAB,
        }
    }

    /// What `code` types with the current Shift, Caps Lock and AltGr state.
    fn symbol(&self, code: u16, altgr: bool) -> Option<Sym> {
        let levels = match self.options.layout {
            KeyboardLayout::Us => us_key(code),
            KeyboardLayout::De => de_key(code),
            KeyboardLayout::Fr => fr_key(code),
        }?;
        if altgr {
            return levels.altgr;
        }
        let shifted = if levels.caps {
            self.shift() != self.caps_lock
        } else {
            self.shift()
        };
        Some(if shifted { levels.shift } else { levels.base })
    }

    /// Ctrl with a key: GS for the configured key, otherwise the ASCII control code of
    /// what the key types (with Shift), if it has one.
    fn type_ctrl(&mut self, code: u16) {
        if code == self.gs_key {
            self.push_control(0x1D);
            return;
        }
        let control = match self.symbol(code, false) {
            Some(Sym::Char(c)) if matches!(c, '@'..='_' | 'a'..='z') => Some((c as u8) & 0x1F),
            _ => None,
        };
        match control {
            Some(byte) => self.push_control(byte),
            None => self.ignored += 1,
        }
    }

    fn type_alt_code(&mut self, value: u32) {
        match value {
            1..=127 => self.push_control(value as u8),
            128..=255 => {
                self.flush_dead();
                self.push_char(char::from(value as u8));
            }
            _ => self.ignored += 1,
        }
    }

    fn flush_dead(&mut self) {
        if let Some(accent) = self.pending_dead.take() {
            self.push_char(accent);
        }
    }

    fn push_control(&mut self, byte: u8) {
        self.flush_dead();
        self.push_bytes(&[byte]);
    }

    fn push_char(&mut self, c: char) {
        let mut utf8 = [0; 4];
        self.push_bytes(c.encode_utf8(&mut utf8).as_bytes());
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        if self.overflowed {
            return;
        }
        if self.buffer.len() + bytes.len() > MAX_WEDGE_MESSAGE_LEN {
            self.overflowed = true;
        } else {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// Ends the scan at its terminator.
    fn finish(&mut self) -> Option<WedgeOutput> {
        self.flush_dead();
        let data = std::mem::take(&mut self.buffer);
        let overflowed = std::mem::take(&mut self.overflowed);
        let dropped = std::mem::take(&mut self.dropped);
        if dropped {
            Some(WedgeOutput::Rejected {
                reason: WedgeRejection::EventsDropped,
                data,
            })
        } else if overflowed {
            Some(WedgeOutput::Rejected {
                reason: WedgeRejection::TooLong {
                    limit: MAX_WEDGE_MESSAGE_LEN,
                },
                data,
            })
        } else if data.is_empty() {
            None
        } else {
            Some(WedgeOutput::Message(data))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(layout: KeyboardLayout) -> WedgeDecoder {
        WedgeDecoder::new(DecoderOptions {
            layout,
            ..DecoderOptions::default()
        })
    }

    fn tap(d: &mut WedgeDecoder, code: u16) -> Option<WedgeOutput> {
        let out = d.key(code, 1);
        assert_eq!(d.key(code, 0), None);
        out
    }

    #[test]
    fn every_printable_ascii_character_has_a_key_on_both_layouts() {
        for layout in [KeyboardLayout::Us, KeyboardLayout::De, KeyboardLayout::Fr] {
            let table = |code| match layout {
                KeyboardLayout::Us => us_key(code),
                KeyboardLayout::De => de_key(code),
                KeyboardLayout::Fr => fr_key(code),
            };
            for c in ' '..='~' {
                let found = (0..256u16).filter_map(table).any(|levels| {
                    [Some(levels.base), Some(levels.shift), levels.altgr]
                        .into_iter()
                        .flatten()
                        .any(|sym| matches!(sym, Sym::Char(x) | Sym::Dead(x) if x == c))
                });
                assert!(found, "{layout:?} cannot type {c:?}");
            }
        }
    }

    #[test]
    fn caps_lock_swaps_letters_and_umlauts_but_not_digits() {
        let mut d = decoder(KeyboardLayout::De);
        tap(&mut d, code::CAPSLOCK);
        tap(&mut d, 30); // a
        tap(&mut d, 40); // ä
        tap(&mut d, 2); // 1
        d.key(code::LEFTSHIFT, 1);
        tap(&mut d, 30);
        d.key(code::LEFTSHIFT, 0);
        assert_eq!(
            tap(&mut d, code::ENTER),
            Some(WedgeOutput::Message("AÄ1a".as_bytes().to_vec()))
        );
    }

    #[test]
    fn alt_codes_above_255_are_ignored_and_counted() {
        let mut d = decoder(KeyboardLayout::Us);
        d.key(code::LEFTALT, 1);
        for kp in [80, 76, 76] {
            tap(&mut d, kp); // 2 5 5 → 255
        }
        tap(&mut d, 76); // 2555
        d.key(code::LEFTALT, 0);
        assert_eq!(d.ignored_keys(), 1);
        assert_eq!(tap(&mut d, code::ENTER), None);
    }

    #[test]
    fn dropped_events_reject_the_scan_and_clear_modifiers() {
        let mut d = decoder(KeyboardLayout::Us);
        d.key(code::LEFTSHIFT, 1);
        tap(&mut d, 30);
        d.events_dropped();
        tap(&mut d, 30);
        assert_eq!(
            tap(&mut d, code::ENTER),
            Some(WedgeOutput::Rejected {
                reason: WedgeRejection::EventsDropped,
                data: b"Aa".to_vec()
            })
        );
        d.resync_held_keys([code::RIGHTSHIFT, 30]);
        tap(&mut d, 30);
        assert_eq!(
            tap(&mut d, code::ENTER),
            Some(WedgeOutput::Message(b"A".to_vec()))
        );
    }
}
