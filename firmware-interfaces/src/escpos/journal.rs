//! The journal tap: recovers the printed text from the byte stream going to a
//! receipt printer, split into receipts, with card numbers masked.
//!
//! [`JournalTap`] is a streaming ESC/POS interpreter. It is fed the stream in chunks
//! of any size and keeps every partial command, partial UTF-8 sequence and partial
//! line between calls, so chunk boundaries never change the result: feeding a stream
//! byte by byte gives the same receipts as feeding it whole. It never panics and
//! holds a bounded amount of state: image, barcode and 2D-code payloads are skipped
//! by their declared lengths without being buffered.
//!
//! What counts as printed text:
//!
//! * Characters are decoded with the code page selected by `ESC t` (PC437 at power
//!   on), the international set selected by `ESC R`, or UTF-8 when `FS ( C` (or the
//!   reference renderer's `ESC t 255`) selects it. Bytes a page leaves undefined print
//!   nothing; a page we have no table for ([`CodePage::from_escpos`]) is read as
//!   PC437, so its letters and digits still reach the journal.
//! * A line ends at LF, and at `ESC d` / `ESC J` / `ESC e` / `ESC K` (print and feed)
//!   when it holds text. HT moves to the next tab stop (`ESC D`, default every 8
//!   columns) with spaces; past the last stop it writes one space where a printer
//!   would do nothing, so that words never run together. `ESC @` discards an
//!   unfinished line, as it clears the printer's buffer. CR is ignored, as on printers in their default setting.
//!   Trailing spaces are removed.
//! * Images (`ESC *`, `GS v 0`, `GS *`, `GS ( L`, `GS 8 L`, `FS q`), barcodes and 2D
//!   codes are graphics: they end the current line and never appear as text. The
//!   only text a barcode adds is its human-readable interpretation (HRI), and only
//!   when `GS H` asks the printer to print it: that line is on the paper, so it is in
//!   the journal (`*` start/stop characters for CODE39, code-set switches of CODE128
//!   removed).
//! * Text drawn in page mode (`ESC L` … `FF`/`ESC S`) is dropped: it is placed at
//!   absolute positions and directions and forms no lines; the reference rendering
//!   shows page mode as one bitmap.
//!
//! Every line goes through [`mask_pans`] before it leaves the tap: no payment card
//! number ever leaves this module (PCI DSS).

use super::code_pages::{CodePage, international_char};
use crate::card::{ProductCodes, card_number_spans};

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;
const FS: u8 = 0x1C;
const DLE: u8 = 0x10;

/// Longest barcode payload we keep for its HRI line (GS k form A has no length;
/// printers accept at most 255 bytes).
const MAX_BARCODE: usize = 255;
/// ESC D accepts at most 32 tab positions.
const MAX_TAB_STOPS: usize = 32;

/// How the tap splits the stream into receipts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// A printed line containing one of these substrings starts a new receipt (the
    /// line belongs to the new receipt). Empty patterns are ignored. Default: none.
    pub start_patterns: Vec<String>,
    /// A printed line containing one of these substrings ends the receipt (the line
    /// belongs to the ending receipt). Empty patterns are ignored. Default: none.
    pub end_patterns: Vec<String>,
    /// Whether a paper cut (`GS V`, `ESC i`, `ESC m`) ends the receipt. Default: true,
    /// because POS systems cut after each receipt.
    pub split_on_cut: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            start_patterns: Vec::new(),
            end_patterns: Vec::new(),
            split_on_cut: true,
        }
    }
}

/// Why a receipt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptEnd {
    /// The printer was told to cut the paper.
    Cut,
    /// A line matched one of the end patterns.
    EndPattern,
    /// A line matched one of the start patterns, which begins the next receipt.
    NextStart,
    /// The stream ended ([`JournalTap::finish`]).
    Finish,
}

/// The printed text of one receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Printed lines in order, PANs masked, trailing spaces removed. Empty lines are
    /// kept where the stream printed them (LF on an empty line).
    pub lines: Vec<String>,
    /// What ended the receipt.
    pub ended_by: ReceiptEnd,
}

/// What the interpreter is in the middle of.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Printable text and single-byte controls.
    Text,
    /// `pending` holds a command prefix whose parameters are not all here yet.
    Command,
    /// Discarding this many payload bytes (images, 2D codes, …).
    Skip(u64),
    /// `ESC D`: tab positions up to NUL.
    TabStops(Vec<u8>),
    /// `GS k` form A: barcode data up to NUL.
    BarcodeToNul { symbology: u8, data: Vec<u8> },
    /// `GS k` form B: `left` more barcode data bytes.
    BarcodeCounted { symbology: u8, left: u8, data: Vec<u8> },
    /// `ESC &`: user-defined characters, each `x` then `y * x` bytes.
    UserChars { y: u64, chars_left: u16, data_left: u64 },
    /// `FS q`: NV images, each a 4-byte header then its data.
    NvImages {
        images_left: u8,
        header: Vec<u8>,
        data_left: u64,
    },
}

/// The effect of one complete command on the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    None,
    Init,
    /// Print and feed: ends the line if it holds text.
    Feed,
    /// An image or 2D code: ends the line.
    Graphic,
    Cut,
    CodePage(u8),
    International(u8),
    Utf8(bool),
    PageMode(bool),
    Hri(u8),
}

/// The result of looking at the bytes of a command so far.
enum Parse {
    NeedMore,
    Done(Action),
    Then(Action, State),
    /// The prefix byte was no command (DLE followed by something else): drop it and
    /// read the second byte again as text.
    NotCommand,
}

/// A streaming ESC/POS interpreter that turns the byte stream going to a receipt
/// printer into receipts of text lines. See the module documentation.
#[derive(Debug, Clone)]
pub struct JournalTap {
    config: JournalConfig,
    state: State,
    /// The command bytes read so far while in [`State::Command`] (at most a dozen).
    pending: Vec<u8>,
    line: String,
    code_page: u8,
    international: u8,
    utf8: bool,
    utf8_pending: Vec<u8>,
    page_mode: bool,
    hri_position: u8,
    tab_stops: Option<Vec<u8>>,
    current: Vec<String>,
    finished: Vec<Receipt>,
}

impl Default for JournalTap {
    fn default() -> Self {
        JournalTap::new(JournalConfig::default())
    }
}

impl JournalTap {
    /// A tap in the printer's power-on state (PC437, standard mode, no HRI).
    pub fn new(config: JournalConfig) -> Self {
        JournalTap {
            config,
            state: State::Text,
            pending: Vec::new(),
            line: String::new(),
            code_page: 0,
            international: 0,
            utf8: false,
            utf8_pending: Vec::new(),
            page_mode: false,
            hri_position: 0,
            tab_stops: None,
            current: Vec::new(),
            finished: Vec::new(),
        }
    }

    /// Feeds the next chunk of the stream; returns the receipts it completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Receipt> {
        for &b in bytes {
            self.byte(b);
        }
        std::mem::take(&mut self.finished)
    }

    /// Ends the stream: an unfinished command is dropped, an unfinished line is
    /// printed, and the open receipt (if it has text) is returned. The tap is then
    /// back in its power-on state, ready for a new stream.
    pub fn finish(&mut self) -> Vec<Receipt> {
        if !self.utf8_pending.is_empty() {
            self.utf8_pending.clear();
            self.print_char('\u{FFFD}');
        }
        if !self.line.is_empty() {
            self.end_line();
        }
        self.close_receipt(ReceiptEnd::Finish);
        let out = std::mem::take(&mut self.finished);
        *self = JournalTap::new(std::mem::take(&mut self.config));
        out
    }

    fn byte(&mut self, b: u8) {
        match &mut self.state {
            State::Text => self.text_byte(b),
            State::Command => {
                self.pending.push(b);
                self.command_byte();
            }
            State::Skip(left) => {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.state = State::Text;
                }
            }
            State::TabStops(stops) => {
                // The list ends at NUL, after 32 positions, or at a position not
                // beyond the previous one; that byte is then ordinary data.
                let not_ascending = stops.last().is_some_and(|&last| b <= last);
                if b == 0 || not_ascending || stops.len() >= MAX_TAB_STOPS {
                    let stops = std::mem::take(stops);
                    self.tab_stops = Some(stops);
                    self.state = State::Text;
                    if b != 0 {
                        self.text_byte(b);
                    }
                } else {
                    stops.push(b);
                }
            }
            State::BarcodeToNul { symbology, data } => {
                if b == 0 || data.len() >= MAX_BARCODE {
                    let (symbology, data) = (*symbology, std::mem::take(data));
                    self.state = State::Text;
                    self.barcode(symbology, &data);
                } else {
                    data.push(b);
                }
            }
            State::BarcodeCounted {
                symbology,
                left,
                data,
            } => {
                data.push(b);
                *left = left.saturating_sub(1);
                if *left == 0 {
                    let (symbology, data) = (*symbology, std::mem::take(data));
                    self.state = State::Text;
                    self.barcode(symbology, &data);
                }
            }
            State::UserChars {
                y,
                chars_left,
                data_left,
            } => {
                if *data_left > 0 {
                    *data_left -= 1;
                } else {
                    *data_left = y.saturating_mul(u64::from(b));
                    *chars_left = chars_left.saturating_sub(1);
                }
                if *chars_left == 0 && *data_left == 0 {
                    self.state = State::Text;
                }
            }
            State::NvImages {
                images_left,
                header,
                data_left,
            } => {
                if *data_left > 0 {
                    *data_left -= 1;
                } else {
                    header.push(b);
                    if let [xl, xh, yl, yh] = header[..] {
                        let x = u64::from(u16::from_le_bytes([xl, xh]));
                        let y = u64::from(u16::from_le_bytes([yl, yh]));
                        *data_left = x * y * 8;
                        header.clear();
                        *images_left = images_left.saturating_sub(1);
                    }
                }
                if *images_left == 0 && *data_left == 0 {
                    self.state = State::Text;
                }
            }
        }
    }

    fn text_byte(&mut self, b: u8) {
        if b < 0x20 {
            if !self.utf8_pending.is_empty() {
                self.utf8_pending.clear();
                self.print_char('\u{FFFD}');
            }
            match b {
                // In page mode LF moves within the page; the page prints as a whole.
                b'\n' if self.page_mode => {}
                b'\n' => self.end_line(),
                b'\t' => self.tab(),
                // FF prints the page and returns to standard mode; in standard mode
                // it does nothing on a receipt printer.
                0x0C => self.page_mode = false,
                ESC | GS | FS | DLE => {
                    self.pending.clear();
                    self.pending.push(b);
                    self.state = State::Command;
                }
                // CR (ignored with auto line feed off, the default), CAN and the
                // other controls print nothing.
                _ => {}
            }
            return;
        }
        if self.utf8 {
            self.utf8_byte(b);
            return;
        }
        let c = if b < 0x80 {
            international_char(self.international, b).unwrap_or(char::from(b))
        } else {
            // A page we cannot decode prints as PC437 would, rather than losing text.
            let page = CodePage::from_escpos(self.code_page).unwrap_or(CodePage::Pc437);
            match page.decode(b) {
                Some(c) => c,
                None => return,
            }
        };
        self.print_char(c);
    }

    fn utf8_byte(&mut self, b: u8) {
        if self.utf8_pending.is_empty() {
            match utf8_len(b) {
                1 => self.print_char(char::from(b)),
                0 => self.print_char('\u{FFFD}'),
                _ => self.utf8_pending.push(b),
            }
            return;
        }
        if b & 0xC0 != 0x80 {
            self.utf8_pending.clear();
            self.print_char('\u{FFFD}');
            self.utf8_byte(b);
            return;
        }
        self.utf8_pending.push(b);
        if self.utf8_pending.len() == utf8_len(self.utf8_pending[0]) {
            let c = std::str::from_utf8(&self.utf8_pending)
                .ok()
                .and_then(|s| s.chars().next())
                .unwrap_or('\u{FFFD}');
            self.utf8_pending.clear();
            self.print_char(c);
        }
    }

    fn print_char(&mut self, c: char) {
        if !self.page_mode {
            self.line.push(c);
        }
    }

    fn tab(&mut self) {
        if self.page_mode {
            return;
        }
        let column = self.line.chars().count();
        let next = match &self.tab_stops {
            None => Some((column / 8 + 1) * 8),
            Some(stops) => stops.iter().map(|&s| usize::from(s)).find(|&s| s > column),
        };
        // Past the last tab stop a printer ignores HT; the journal still writes one
        // space so that the words on either side stay apart.
        let spaces = next.map_or(1, |next| next - column);
        self.line.extend(std::iter::repeat_n(' ', spaces));
    }

    fn command_byte(&mut self) {
        match parse_command(&self.pending) {
            Parse::NeedMore => {}
            Parse::Done(action) => {
                self.state = State::Text;
                self.apply(action);
            }
            Parse::Then(action, state) => {
                self.state = state;
                self.apply(action);
            }
            Parse::NotCommand => {
                self.state = State::Text;
                let second = self.pending.get(1).copied();
                self.pending.clear();
                if let Some(b) = second {
                    self.text_byte(b);
                }
            }
        }
        if self.state != State::Command {
            self.pending.clear();
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::None => {}
            Action::Init => {
                // ESC @ clears the print buffer: an unfinished line is never printed.
                self.line.clear();
                self.utf8_pending.clear();
                self.code_page = 0;
                self.international = 0;
                self.utf8 = false;
                self.page_mode = false;
                self.hri_position = 0;
                self.tab_stops = None;
            }
            Action::Feed => {
                if !self.line.is_empty() && !self.page_mode {
                    self.end_line();
                }
            }
            Action::Graphic => self.end_text_before_graphic(),
            Action::Cut => {
                if !self.line.is_empty() {
                    self.end_line();
                }
                if self.config.split_on_cut {
                    self.close_receipt(ReceiptEnd::Cut);
                }
            }
            Action::CodePage(n) => {
                self.code_page = n;
                // Our reference renderer (thermal) uses page 255 for UTF-8 text.
                self.utf8 = n == 255;
            }
            Action::International(n) => self.international = n,
            Action::Utf8(on) => self.utf8 = on,
            Action::PageMode(on) => self.page_mode = on,
            Action::Hri(n) => self.hri_position = n,
        }
    }

    fn end_text_before_graphic(&mut self) {
        if !self.line.is_empty() && !self.page_mode {
            self.end_line();
        }
    }

    fn barcode(&mut self, symbology: u8, data: &[u8]) {
        self.end_text_before_graphic();
        if self.page_mode {
            return;
        }
        let hri = hri_text(symbology, data);
        let (above, below) = match self.hri_position {
            1 | 49 => (true, false),
            2 | 50 => (false, true),
            3 | 51 => (true, true),
            _ => (false, false),
        };
        for print in [above, below] {
            if print && !hri.is_empty() {
                self.emit_line(hri.clone());
            }
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        self.emit_line(line);
    }

    fn emit_line(&mut self, raw: String) {
        let line = mask_pans(raw.trim_end());
        let matches = |patterns: &[String]| {
            patterns
                .iter()
                .any(|p| !p.is_empty() && line.contains(p.as_str()))
        };
        if matches(&self.config.start_patterns) {
            self.close_receipt(ReceiptEnd::NextStart);
        }
        let ends = matches(&self.config.end_patterns);
        self.current.push(line);
        if ends {
            self.close_receipt(ReceiptEnd::EndPattern);
        }
    }

    /// Closes the open receipt; a receipt without any text is dropped.
    fn close_receipt(&mut self, ended_by: ReceiptEnd) {
        let lines = std::mem::take(&mut self.current);
        if lines.iter().any(|l| !l.trim().is_empty()) {
            self.finished.push(Receipt { lines, ended_by });
        }
    }
}

/// The length of the UTF-8 sequence `first` starts: 1 for ASCII, 0 for a byte that
/// cannot start one.
fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

fn le16(lo: u8, hi: u8) -> u64 {
    u64::from(u16::from_le_bytes([lo, hi]))
}

/// Skips `len` payload bytes after the command, with `action` applied first.
fn skip(action: Action, len: u64) -> Parse {
    if len == 0 {
        Parse::Done(action)
    } else {
        Parse::Then(action, State::Skip(len))
    }
}

/// Decides what the command in `cmd` (prefix byte first) is, once enough of it is
/// here. The parameter counts follow Epson's ESC/POS reference for the TM series.
fn parse_command(cmd: &[u8]) -> Parse {
    let need = |n: usize| cmd.len() < n;
    match cmd {
        [ESC, rest @ ..] => parse_esc(rest, &need),
        [GS, rest @ ..] => parse_gs(cmd, rest, &need),
        [FS, rest @ ..] => parse_fs(cmd, rest, &need),
        [DLE, rest @ ..] => parse_dle(rest, &need),
        _ => Parse::Done(Action::None),
    }
}

fn parse_esc(rest: &[u8], need: &dyn Fn(usize) -> bool) -> Parse {
    let Some(&c) = rest.first() else {
        return Parse::NeedMore;
    };
    let params = match c {
        b'@' => return Parse::Done(Action::Init),
        b'L' => return Parse::Done(Action::PageMode(true)),
        b'S' => return Parse::Done(Action::PageMode(false)),
        b'i' | b'm' => return Parse::Done(Action::Cut),
        b' ' | b'!' | b'%' | b'-' | b'3' | b'4' | b'=' | b'?' | b'E' | b'G' | b'M' | b'R' | b'T' | b'U'
        | b'V' | b'a' | b'r' | b't' | b'u' | b'{' | b'J' | b'K' | b'd' | b'e' | b'f' => 1,
        b'$' | b'\\' | b'c' => 2,
        b'p' => 3,
        b'W' => 8,
        b'*' | b'&' | b'(' => 3,
        b'D' => return Parse::Then(Action::None, State::TabStops(Vec::new())),
        // ESC FF, ESC 2, ESC <, ESC v and unknown commands: no parameters.
        _ => 0,
    };
    if need(2 + params) {
        return Parse::NeedMore;
    }
    let p = &rest[1..];
    match c {
        b't' => Parse::Done(Action::CodePage(p[0])),
        b'R' => Parse::Done(Action::International(p[0])),
        b'J' | b'K' | b'd' | b'e' => Parse::Done(Action::Feed),
        b'*' => {
            let dots = le16(p[1], p[2]);
            let bytes_per_column = if matches!(p[0], 32 | 33) { 3 } else { 1 };
            skip(Action::Graphic, dots * bytes_per_column)
        }
        b'&' => {
            let (y, c1, c2) = (p[0], p[1], p[2]);
            let count = u16::from(c2).saturating_sub(u16::from(c1)) + u16::from(c2 >= c1);
            if count == 0 {
                Parse::Done(Action::None)
            } else {
                Parse::Then(
                    Action::None,
                    State::UserChars {
                        y: u64::from(y),
                        chars_left: count,
                        data_left: 0,
                    },
                )
            }
        }
        b'(' => skip(Action::None, le16(p[1], p[2])),
        _ => Parse::Done(Action::None),
    }
}

fn parse_gs(cmd: &[u8], rest: &[u8], need: &dyn Fn(usize) -> bool) -> Parse {
    let Some(&c) = rest.first() else {
        return Parse::NeedMore;
    };
    let params = match c {
        b'!' | b'B' | b'H' | b'I' | b'T' | b'a' | b'b' | b'f' | b'h' | b'w' | b'r' | b'E' | b'/' | b'j'
        | b'Z' => 1,
        b'$' | b'\\' | b'L' | b'P' | b'W' | b'*' => 2,
        b'^' => 3,
        b'(' => 3,
        b'8' => 5,
        b'v' | b'Q' => 6,
        b'g' => 4,
        b'V' | b'k' => 1,
        _ => 0,
    };
    if need(2 + params) {
        return Parse::NeedMore;
    }
    let p = &rest[1..];
    match c {
        b'H' => Parse::Done(Action::Hri(p[0])),
        b'V' => match p[0] {
            65 | 66 | 97 | 98 | 103 | 104 if need(4) => Parse::NeedMore,
            _ => Parse::Done(Action::Cut),
        },
        b'(' => {
            let action = if matches!(p[0], b'k' | b'L') {
                Action::Graphic
            } else {
                Action::None
            };
            skip(action, le16(p[1], p[2]))
        }
        b'8' => {
            let len = u64::from(u32::from_le_bytes([p[1], p[2], p[3], p[4]]));
            skip(Action::Graphic, len)
        }
        b'*' => skip(Action::Graphic, u64::from(p[0]) * u64::from(p[1]) * 8),
        b'v' | b'Q' => {
            let width_bytes = le16(p[2], p[3]);
            let height = le16(p[4], p[5]);
            skip(Action::Graphic, width_bytes * height)
        }
        b'k' => {
            let symbology = p[0];
            if symbology <= 6 {
                return Parse::Then(
                    Action::None,
                    State::BarcodeToNul {
                        symbology,
                        data: Vec::new(),
                    },
                );
            }
            if need(4) {
                return Parse::NeedMore;
            }
            let n = cmd[3];
            if n == 0 {
                Parse::Done(Action::Graphic)
            } else {
                Parse::Then(
                    Action::None,
                    State::BarcodeCounted {
                        symbology,
                        left: n,
                        data: Vec::new(),
                    },
                )
            }
        }
        _ => Parse::Done(Action::None),
    }
}

fn parse_fs(cmd: &[u8], rest: &[u8], need: &dyn Fn(usize) -> bool) -> Parse {
    let Some(&c) = rest.first() else {
        return Parse::NeedMore;
    };
    let params = match c {
        b'!' | b'-' | b'C' | b'W' | b'q' => 1,
        b'S' | b'p' | b'2' => 2,
        b'(' => 3,
        _ => 0,
    };
    if need(2 + params) {
        return Parse::NeedMore;
    }
    let p = &rest[1..];
    match c {
        b'2' => skip(Action::None, 72),
        b'q' => {
            if p[0] == 0 {
                Parse::Done(Action::None)
            } else {
                Parse::Then(
                    Action::Graphic,
                    State::NvImages {
                        images_left: p[0],
                        header: Vec::new(),
                        data_left: 0,
                    },
                )
            }
        }
        b'p' => Parse::Done(Action::Graphic),
        b'(' => {
            let len = le16(p[1], p[2]);
            // FS ( C fn=48 m: character encoding, 1 = one byte, 2 = UTF-8.
            if p[0] == b'C' && len == 2 {
                if need(7) {
                    return Parse::NeedMore;
                }
                return match (cmd[5], cmd[6]) {
                    (48, 1 | 49) => Parse::Done(Action::Utf8(false)),
                    (48, 2 | 50) => Parse::Done(Action::Utf8(true)),
                    _ => Parse::Done(Action::None),
                };
            }
            skip(Action::None, len)
        }
        _ => Parse::Done(Action::None),
    }
}

fn parse_dle(rest: &[u8], need: &dyn Fn(usize) -> bool) -> Parse {
    const EOT: u8 = 0x04;
    const ENQ: u8 = 0x05;
    const DC4: u8 = 0x14;
    let Some(&c) = rest.first() else {
        return Parse::NeedMore;
    };
    let total = match (c, rest.get(1)) {
        (EOT, None) | (ENQ, None) | (DC4, None) => return Parse::NeedMore,
        (EOT, Some(7 | 8)) => 4,
        (EOT | ENQ, Some(_)) => 3,
        (DC4, Some(7)) => 4,
        (DC4, Some(8)) => 10,
        (DC4, Some(_)) => 5,
        _ => return Parse::NotCommand,
    };
    if need(total) {
        Parse::NeedMore
    } else {
        Parse::Done(Action::None)
    }
}

/// The human-readable line a printer prints with a `GS k` barcode.
fn hri_text(symbology: u8, data: &[u8]) -> String {
    let printable = |b: u8| (0x20..0x7F).contains(&b).then_some(char::from(b));
    match symbology {
        // CODE39: the printer adds the start/stop character `*`.
        4 | 69 => {
            let body: String = data.iter().filter_map(|&b| printable(b)).collect();
            if body.starts_with('*') {
                body
            } else {
                format!("*{body}*")
            }
        }
        // CODE128: `{A`/`{B`/`{C` switch code sets, `{1`…`{4` are function codes,
        // `{{` is a brace; code set C packs two digits in a byte.
        73 => {
            let mut out = String::new();
            let mut set_c = false;
            let mut i = 0;
            while i < data.len() {
                let b = data[i];
                if b == b'{' && i + 1 < data.len() {
                    match data[i + 1] {
                        b'A' | b'B' => set_c = false,
                        b'C' => set_c = true,
                        b'{' => out.push('{'),
                        _ => {}
                    }
                    i += 2;
                    continue;
                }
                if set_c {
                    if b < 100 {
                        out.push_str(&format!("{b:02}"));
                    }
                } else if let Some(c) = printable(b) {
                    out.push(c);
                }
                i += 1;
            }
            out
        }
        _ => data.iter().filter_map(|&b| printable(b)).collect(),
    }
}

/// Replaces every payment card number in `line` by asterisks and its last four digits.
///
/// The card numbers are those [`card_number_spans`] finds, product codes included
/// (a receipt prints none as a bare 13-digit run). All digits of a masked candidate
/// but its last four become asterisks, and the separators go with the mask:
/// `4111 1111 1111 1111` becomes `************1111`.
pub fn mask_pans(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    for span in card_number_spans(bytes, ProductCodes::AreCardNumbers) {
        // Spans start and end on ASCII digits, so these are char boundaries.
        out.push_str(&line[copied..span.start]);
        let digits: Vec<u8> = bytes[span.clone()]
            .iter()
            .copied()
            .filter(u8::is_ascii_digit)
            .collect();
        let keep = digits.len() - 4;
        out.extend(std::iter::repeat_n('*', keep));
        out.extend(digits[keep..].iter().map(|&d| char::from(d)));
        copied = span.end;
    }
    out.push_str(&line[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(bytes: &[u8], config: JournalConfig) -> Vec<Receipt> {
        let mut tap = JournalTap::new(config);
        let mut out = tap.push(bytes);
        out.extend(tap.finish());
        out
    }

    fn one_receipt(bytes: &[u8]) -> Vec<String> {
        let receipts = lines_of(
            bytes,
            JournalConfig {
                split_on_cut: false,
                ..JournalConfig::default()
            },
        );
        receipts.into_iter().flat_map(|r| r.lines).collect()
    }

    #[test]
    fn pan_in_printed_text_is_masked() {
        let lines = one_receipt(b"\x1b@VISA 4111 1111 1111 1111\nAuth 0123\n");
        assert_eq!(lines, ["VISA ************1111", "Auth 0123"]);
        assert_eq!(mask_pans("4111-1111-1111-1111 ok"), "************1111 ok");
        assert_eq!(mask_pans("4111111111111111"), "************1111");
        // Not Luhn-valid, but in a card issuer range: masked anyway.
        assert_eq!(mask_pans("5500000000000005"), "************0005");
        // Short numbers, non-card ranges failing Luhn, double spaces: kept.
        assert_eq!(mask_pans("Order 123456789012"), "Order 123456789012");
        assert_eq!(mask_pans("9999999999999999"), "9999999999999999");
        assert_eq!(mask_pans("00094424   14.99"), "00094424   14.99");
    }

    /// Regression: a candidate was masked only when all its digits together looked
    /// like a PAN, so a card number printed next to other digits (a group after it,
    /// a lone digit before it) was printed in full. The input is the crash of the
    /// `escpos_journal` fuzz target, minimised by `cargo fuzz tmin`: its first two
    /// bytes are the target's configuration (no split on cut, no patterns) and
    /// chunk-size seed, the rest is the print stream, in which the Luhn-valid
    /// `051111111111111` is followed by ` 1`.
    #[test]
    fn pan_next_to_other_digits_is_masked() {
        let minimised: &[u8] = b"41051111111111111 1";
        assert_eq!(one_receipt(&minimised[2..]), ["************1111"]);
        assert_eq!(mask_pans("7 51111111111111"), "***********1111");
        assert_eq!(
            mask_pans("Card 4111111111111111 2812"),
            "Card ****************2812"
        );
        assert_eq!(mask_pans("4111 1111 1111 1111 2812 x"), "****************2812 x");
        assert_eq!(mask_pans("7-4111111111111111"), "*************1111");
        // Twenty digits in a row are no card number: kept, as before.
        assert_eq!(mask_pans("Ref 98765432109876543210"), "Ref 98765432109876543210");
    }

    #[test]
    fn commands_and_payloads_are_not_text() {
        let mut s = Vec::new();
        s.extend_from_slice(b"\x1b@\x1b!\x30\x1bE\x01\x1ba\x01Title\n\x1bE\x00");
        // GS v 0 raster, 2 bytes wide, 2 rows: payload of 4 bytes that look like text.
        s.extend_from_slice(b"\x1dv0\x00\x02\x00\x02\x00ABCD");
        // ESC * 8-dot image, 3 columns.
        s.extend_from_slice(b"\x1b*\x00\x03\x00XYZ");
        // QR code store (GS ( k) with the data "hello" and print.
        s.extend_from_slice(b"\x1d(k\x08\x001P0hello\x1d(k\x03\x001Q0");
        // GS ( L graphics and GS 8 L graphics.
        s.extend_from_slice(b"\x1d(L\x03\x000pQ\x1d8L\x02\x00\x00\x000p");
        // Barcodes, form A and B, no HRI.
        s.extend_from_slice(b"\x1dk\x04CODE39\x00\x1dkI\x04{B12");
        s.extend_from_slice(b"\x10\x04\x01\x1dV\x00Tail\x1dVA\x03");
        assert_eq!(one_receipt(&s), ["Title", "Tail"]);
    }

    #[test]
    fn hri_is_printed_text_when_selected() {
        let s = b"\x1dH\x02\x1dk\x04123\x00\x1dkI\x07{B12{C\x22\n";
        assert_eq!(one_receipt(s), ["*123*", "1234", ""]);
    }

    #[test]
    fn code_pages_and_utf8() {
        // PC437 0x82 = é; PC850 0xD5 = ı; PC858 0xD5 = €; UK set # = £.
        let s = b"caf\x82\n\x1bt\x02\xd5\n\x1bt\x13\xd5\n\x1bR\x03#\n\x1c(C\x02\x000\x02\xc3\xa9\n";
        assert_eq!(one_receipt(s), ["café", "ı", "€", "£", "é"]);
    }

    #[test]
    fn receipts_split_on_cut() {
        let s = b"\x1b@One\nA\n\x1dVB\x00\x1b@Two\nB\n\x1dV\x01";
        let r = lines_of(s, JournalConfig::default());
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].lines, ["One", "A"]);
        assert_eq!(r[0].ended_by, ReceiptEnd::Cut);
        assert_eq!(r[1].lines, ["Two", "B"]);
    }

    #[test]
    fn receipts_split_on_patterns() {
        let config = JournalConfig {
            start_patterns: vec!["STORE 12".into()],
            end_patterns: vec!["THANK YOU".into()],
            split_on_cut: false,
        };
        let s = b"STORE 12\nx\nTHANK YOU\nnoise\nSTORE 12\ny\x1dV\x00z\n";
        let r = lines_of(s, config);
        let lines: Vec<_> = r.iter().map(|r| (r.lines.clone(), r.ended_by)).collect();
        assert_eq!(
            lines,
            [
                (
                    vec!["STORE 12".to_string(), "x".into(), "THANK YOU".into()],
                    ReceiptEnd::EndPattern
                ),
                (vec!["noise".to_string()], ReceiptEnd::NextStart),
                (
                    vec!["STORE 12".to_string(), "y".into(), "z".into()],
                    ReceiptEnd::Finish
                ),
            ]
        );
    }

    #[test]
    fn initialise_discards_the_unprinted_line() {
        assert_eq!(one_receipt(b"lost\x1b@kept\n"), ["kept"]);
    }

    #[test]
    fn page_mode_text_is_dropped() {
        let s = b"before\n\x1bL\x1bW\x00\x00\x00\x00\x00\x02\x00\x02$5 OFF\n\x0cafter\n";
        assert_eq!(one_receipt(s), ["before", "after"]);
    }

    #[test]
    fn tabs_expand_to_tab_stops() {
        assert_eq!(one_receipt(b"ab\tc\n"), ["ab      c"]);
        assert_eq!(one_receipt(b"\x1bD\x04\x0a\x00ab\tc\td\te\n"), ["ab  c     d e"]);
        // A position not beyond the previous one ends the list and is data again.
        assert_eq!(one_receipt(b"\x1bD\x09\x05x\ty\n"), ["x        y"]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let mut tap = JournalTap::default();
            let _ = tap.push(&bytes);
            let _ = tap.finish();
        }

        #[test]
        fn command_heavy_bytes_never_panic(bytes in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just(ESC),
                proptest::strategy::Just(GS),
                proptest::strategy::Just(FS),
                proptest::strategy::Just(DLE),
                proptest::strategy::Just(b'\n'),
                proptest::num::u8::ANY,
            ],
            0..2048,
        )) {
            let mut tap = JournalTap::default();
            let mut receipts = tap.push(&bytes);
            receipts.extend(tap.finish());
            for line in receipts.iter().flat_map(|r| &r.lines) {
                proptest::prop_assert!(!line.contains('\n'));
            }
        }

        #[test]
        fn chunking_never_matters(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1024),
            cuts in proptest::collection::vec(0usize..1024, 0..8),
        ) {
            let whole = lines_of(&bytes, JournalConfig::default());
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut tap = JournalTap::default();
            let mut pieces = Vec::new();
            let mut last = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                pieces.extend(tap.push(&bytes[last..c]));
                last = c;
            }
            pieces.extend(tap.finish());
            proptest::prop_assert_eq!(whole, pieces);
        }
    }
}
