//! Customer line displays: two lines of 20 characters facing the shopper.
//!
//! Two command sets cover the pole displays stores use: the CD5220 set (many
//! no-name displays) and Epson's ESC/POS display set (DM-D series). Every write
//! replaces both lines completely — clear, position, write — so a display that
//! missed a frame is right again after the next one.
//!
//! Text is converted to the display's code page, PC437 or PC858. A character the
//! page lacks falls back to plain ASCII ([`ascii_fallback`](super::code_pages::ascii_fallback): `ő` → `o`, `€` → `EUR`
//! in PC437, `Œ` → `OE`), then `?`. Sharp s needs no fallback: both pages have `ß`.
//! Conversion happens before alignment and the cut to 20 cells, so a fallback that
//! is longer than its character never pushes the end of a right-aligned price off
//! the display.

use super::Alignment;
use super::code_pages::CodePage;

/// Characters per display line.
pub const DISPLAY_COLUMNS: usize = 20;

const ESC: u8 = 0x1B;
const US: u8 = 0x1F;
const FF: u8 = 0x0C;
const CR: u8 = 0x0D;

/// The command set a customer display speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayProtocol {
    /// CD5220: `FF` clears, `ESC Q A` … `CR` writes the upper line, `ESC Q B` … `CR`
    /// the lower one. The code page is set on the display itself (set-up menu or
    /// switches), so no command selects it.
    Cd5220,
    /// Epson ESC/POS for displays: `ESC @` initialises, `ESC t n` selects the code
    /// page, `FF` clears, `US $ x y` moves the cursor (1-based).
    EpsonEscPos,
}

/// The code page of a customer display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DisplayCodePage {
    /// PC437, the usual factory setting.
    #[default]
    Pc437,
    /// PC858: Western European letters and the euro sign.
    Pc858,
}

impl DisplayCodePage {
    fn code_page(self) -> CodePage {
        match self {
            DisplayCodePage::Pc437 => CodePage::Pc437,
            DisplayCodePage::Pc858 => CodePage::Pc858,
        }
    }
}

/// One display line: its text and where it sits in the 20 cells.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisplayLine {
    /// The text, any Unicode; cut to 20 cells after code page conversion.
    pub text: String,
    /// Placement within the 20 cells.
    pub align: Alignment,
}

impl DisplayLine {
    /// A line with the given placement.
    pub fn new(text: impl Into<String>, align: Alignment) -> Self {
        DisplayLine {
            text: text.into(),
            align,
        }
    }

    /// Exactly 20 bytes in `page`: converted, placed, padded with spaces or cut.
    fn cells(&self, page: CodePage) -> Vec<u8> {
        let mut bytes = page.encode_text(&self.text);
        bytes.truncate(DISPLAY_COLUMNS);
        let free = DISPLAY_COLUMNS - bytes.len();
        let left = match self.align {
            Alignment::Left => 0,
            Alignment::Center => free / 2,
            Alignment::Right => free,
        };
        let mut out = vec![b' '; left];
        out.extend_from_slice(&bytes);
        out.resize(DISPLAY_COLUMNS, b' ');
        out
    }
}

/// What the two lines of a customer display show.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisplayLines {
    /// The upper line.
    pub line1: DisplayLine,
    /// The lower line.
    pub line2: DisplayLine,
}

impl DisplayLines {
    /// The bytes that show these lines on a display speaking `protocol` set to `page`.
    pub fn encode(&self, protocol: DisplayProtocol, page: DisplayCodePage) -> Vec<u8> {
        let page_number = page.code_page().escpos_number();
        let line1 = self.line1.cells(page.code_page());
        let line2 = self.line2.cells(page.code_page());
        let mut out = Vec::with_capacity(64);
        match protocol {
            DisplayProtocol::Cd5220 => {
                out.push(FF);
                out.extend_from_slice(&[ESC, b'Q', b'A']);
                out.extend_from_slice(&line1);
                out.push(CR);
                out.extend_from_slice(&[ESC, b'Q', b'B']);
                out.extend_from_slice(&line2);
                out.push(CR);
            }
            DisplayProtocol::EpsonEscPos => {
                out.extend_from_slice(&[ESC, b'@', ESC, b't', page_number, FF]);
                out.extend_from_slice(&[US, b'$', 1, 1]);
                out.extend_from_slice(&line1);
                out.extend_from_slice(&[US, b'$', 1, 2]);
                out.extend_from_slice(&line2);
            }
        }
        out
    }
}

/// The bytes that show `line1` and `line2`, left-aligned, on a PC437 display.
pub fn display_two_lines(protocol: DisplayProtocol, line1: &str, line2: &str) -> Vec<u8> {
    display_two_lines_in(protocol, DisplayCodePage::Pc437, line1, line2)
}

/// The bytes that show `line1` and `line2`, left-aligned, on a display set to `page`.
pub fn display_two_lines_in(
    protocol: DisplayProtocol,
    page: DisplayCodePage,
    line1: &str,
    line2: &str,
) -> Vec<u8> {
    DisplayLines {
        line1: DisplayLine::new(line1, Alignment::Left),
        line2: DisplayLine::new(line2, Alignment::Left),
    }
    .encode(protocol, page)
}

/// A scanned product: its name on the upper line, its price right-aligned below.
pub fn scanned_item(name: &str, price_text: &str) -> DisplayLines {
    DisplayLines {
        line1: DisplayLine::new(name, Alignment::Left),
        line2: DisplayLine::new(price_text, Alignment::Right),
    }
}

/// A greeting for a shopper who identified themselves, centred.
pub fn welcome(first_name: &str) -> DisplayLines {
    let name = first_name.trim();
    let line2 = if name.is_empty() {
        "Good to see you!".to_string()
    } else {
        format!("{name}!")
    };
    DisplayLines {
        line1: DisplayLine::new("Welcome back", Alignment::Center),
        line2: DisplayLine::new(line2, Alignment::Center),
    }
}

/// Tells the shopper their online order is ready to be handed over, centred.
pub fn order_ready() -> DisplayLines {
    DisplayLines {
        line1: DisplayLine::new("Your order is ready", Alignment::Center),
        line2: DisplayLine::new("Thank you!", Alignment::Center),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cd5220_two_lines_exact_bytes() {
        let got = display_two_lines(DisplayProtocol::Cd5220, "Hello", "World");
        let mut want = vec![0x0C, 0x1B, 0x51, 0x41];
        want.extend_from_slice(b"Hello               ");
        want.push(0x0D);
        want.extend_from_slice(&[0x1B, 0x51, 0x42]);
        want.extend_from_slice(b"World               ");
        want.push(0x0D);
        assert_eq!(got, want);
    }

    #[test]
    fn epson_two_lines_exact_bytes() {
        let got = display_two_lines(DisplayProtocol::EpsonEscPos, "AB", "CD");
        let want: Vec<u8> = [
            &[0x1B, 0x40, 0x1B, 0x74, 0x00, 0x0C, 0x1F, 0x24, 0x01, 0x01][..],
            b"AB                  ",
            &[0x1F, 0x24, 0x01, 0x02],
            b"CD                  ",
        ]
        .concat();
        assert_eq!(got, want);
    }

    #[test]
    fn long_text_is_cut_to_twenty_cells() {
        let got = display_two_lines(DisplayProtocol::Cd5220, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "");
        assert_eq!(&got[4..24], b"ABCDEFGHIJKLMNOPQRST");
        assert_eq!(got[24], 0x0D);
        assert_eq!(&got[28..48], b"                    ");
    }

    #[test]
    fn accents_use_the_display_code_page() {
        // PC437: é = 0x82, ß = 0xE1, € missing -> "EUR", ő missing -> "o".
        let got = display_two_lines(DisplayProtocol::Cd5220, "Café ß", "€1 ő");
        assert_eq!(&got[4..24], b"Caf\x82 \xe1              ");
        assert_eq!(&got[28..48], b"EUR1 o              ");
        // PC858 (ESC t 19): € = 0xD5, é = 0x82.
        let got = display_two_lines_in(DisplayProtocol::EpsonEscPos, DisplayCodePage::Pc858, "é", "€");
        assert_eq!(&got[..10], &[0x1B, 0x40, 0x1B, 0x74, 19, 0x0C, 0x1F, 0x24, 1, 1]);
        assert_eq!(&got[10..30], b"\x82                   ");
        assert_eq!(&got[34..54], b"\xd5                   ");
    }

    #[test]
    fn control_characters_cannot_inject_commands() {
        let got = display_two_lines(DisplayProtocol::Cd5220, "A\x1b@\x0cB", "");
        assert_eq!(&got[4..24], b"A@B                 ");
    }

    #[test]
    fn scanned_item_right_aligns_the_price_after_conversion() {
        let got = scanned_item("Blue sneaker size 9 wide", "€59.99")
            .encode(DisplayProtocol::Cd5220, DisplayCodePage::Pc437);
        let want: Vec<u8> = [
            &[0x0C, 0x1B, 0x51, 0x41][..],
            b"Blue sneaker size 9 ",
            &[0x0D, 0x1B, 0x51, 0x42],
            b"            EUR59.99",
            &[0x0D],
        ]
        .concat();
        assert_eq!(got, want);
    }

    #[test]
    fn welcome_and_order_ready_are_centred() {
        let got = welcome("Zoë").encode(DisplayProtocol::EpsonEscPos, DisplayCodePage::Pc858);
        let want: Vec<u8> = [
            &[0x1B, 0x40, 0x1B, 0x74, 19, 0x0C, 0x1F, 0x24, 1, 1][..],
            b"    Welcome back    ",
            &[0x1F, 0x24, 1, 2],
            b"        Zo\x89!        ",
        ]
        .concat();
        assert_eq!(got, want);
        let got = order_ready().encode(DisplayProtocol::Cd5220, DisplayCodePage::Pc437);
        assert_eq!(&got[4..24], b"Your order is ready ");
        assert_eq!(&got[28..48], b"     Thank you!     ");
    }
}
