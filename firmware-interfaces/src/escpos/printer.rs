//! Receipt printer output: ESC/POS bytes for the slips the store agent prints.
//!
//! [`ReceiptBuilder`] writes the few commands a slip needs — initialise, code page,
//! alignment, bold, double size, text lines, a CODE128 barcode, a QR code, feed and
//! cut — in the form every Epson TM-compatible printer accepts. [`pickup_slip`] and
//! [`return_receipt`] lay out the two slips of BOPIS and BORIS.
//!
//! Text is converted to the builder's code page with the same fallbacks as the line
//! displays; control characters in text are dropped, so data can never inject a
//! command. Slips use PC858 (`ESC t 19`): Western European letters and the euro sign.

use super::Alignment;
use super::code_pages::CodePage;

const ESC: u8 = 0x1B;
const GS: u8 = 0x1D;
const LF: u8 = 0x0A;

/// Most data bytes `GS ( k` function 180 accepts (7089, the numeric capacity of a
/// version 40 symbol). Whether shorter data fits the symbol depends on its content;
/// the printer prints nothing for data that does not.
const MAX_QR_BYTES: usize = 7089;

/// Why a barcode or QR code could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// CODE128 needs at least one character.
    #[error("CODE128 data is empty")]
    Code128Empty,
    /// CODE128 code set B holds printable ASCII only.
    #[error(
        "CODE128 data has {found:?} at character {position}; only printable ASCII (space to ~) fits code set B"
    )]
    Code128Character {
        /// The character that does not fit.
        found: char,
        /// Its position in the data, counting from 0.
        position: usize,
    },
    /// `GS k` counts its data in one byte.
    #[error("CODE128 data is {length} bytes with its code set prefix; the printer takes at most 255")]
    Code128TooLong {
        /// Bytes sent, prefix and escapes included.
        length: usize,
    },
    /// A QR code needs at least one byte.
    #[error("QR code data is empty")]
    QrEmpty,
    /// More bytes than a QR code holds.
    #[error("QR code data is {length} bytes; a QR code holds at most {MAX_QR_BYTES}")]
    QrTooLong {
        /// Bytes of data.
        length: usize,
    },
}

/// Builds an ESC/POS byte stream for a receipt printer.
///
/// ```
/// use firmware_interfaces::escpos::{Alignment, CodePage, ReceiptBuilder};
/// let mut slip = ReceiptBuilder::new(CodePage::Pc858);
/// slip.align(Alignment::Center).bold(true).text_line("PICKUP").bold(false);
/// slip.code128("R-1001").unwrap();
/// slip.feed(3).cut();
/// let bytes = slip.into_bytes();
/// assert_eq!(&bytes[..5], &[0x1B, 0x40, 0x1B, 0x74, 19]);
/// ```
#[derive(Debug, Clone)]
pub struct ReceiptBuilder {
    bytes: Vec<u8>,
    code_page: CodePage,
}

impl ReceiptBuilder {
    /// Starts a stream: `ESC @` (initialise) and `ESC t n` (select `code_page`).
    pub fn new(code_page: CodePage) -> Self {
        ReceiptBuilder {
            bytes: vec![ESC, b'@', ESC, b't', code_page.escpos_number()],
            code_page,
        }
    }

    /// One line of text, converted to the code page, then LF.
    pub fn text_line(&mut self, text: &str) -> &mut Self {
        let encoded = self.code_page.encode_text(text);
        self.bytes.extend_from_slice(&encoded);
        self.bytes.push(LF);
        self
    }

    /// Bold on or off: `ESC E n`.
    pub fn bold(&mut self, on: bool) -> &mut Self {
        self.bytes.extend_from_slice(&[ESC, b'E', u8::from(on)]);
        self
    }

    /// Double width and height on or off: `GS ! 0x11` / `GS ! 0x00`.
    pub fn double_size(&mut self, on: bool) -> &mut Self {
        self.bytes
            .extend_from_slice(&[GS, b'!', if on { 0x11 } else { 0x00 }]);
        self
    }

    /// Alignment of the lines, barcodes and QR codes that follow: `ESC a n`.
    pub fn align(&mut self, alignment: Alignment) -> &mut Self {
        let n = match alignment {
            Alignment::Left => 0,
            Alignment::Center => 1,
            Alignment::Right => 2,
        };
        self.bytes.extend_from_slice(&[ESC, b'a', n]);
        self
    }

    /// A CODE128 barcode in code set B with its text printed below:
    /// `GS H 2`, then `GS k 73 n {B data` (a `{` in the data is sent as `{{`).
    pub fn code128(&mut self, data: &str) -> Result<&mut Self, EncodeError> {
        if data.is_empty() {
            return Err(EncodeError::Code128Empty);
        }
        let mut payload = vec![b'{', b'B'];
        for (position, c) in data.chars().enumerate() {
            if !(' '..='~').contains(&c) {
                return Err(EncodeError::Code128Character { found: c, position });
            }
            let b = c as u8; // printable ASCII, checked above
            if b == b'{' {
                payload.push(b'{');
            }
            payload.push(b);
        }
        let n = u8::try_from(payload.len()).map_err(|_| EncodeError::Code128TooLong {
            length: payload.len(),
        })?;
        self.bytes.extend_from_slice(&[GS, b'H', 2, GS, b'k', 73, n]);
        self.bytes.extend_from_slice(&payload);
        Ok(self)
    }

    /// A QR code (model 2, module size 6 dots, error correction level M) of the
    /// UTF-8 bytes of `data`: the `GS ( k` functions 165, 167, 169, 180 and 181.
    pub fn qr_code(&mut self, data: &str) -> Result<&mut Self, EncodeError> {
        let bytes = data.as_bytes();
        if bytes.is_empty() {
            return Err(EncodeError::QrEmpty);
        }
        if bytes.len() > MAX_QR_BYTES {
            return Err(EncodeError::QrTooLong { length: bytes.len() });
        }
        let store_len =
            u16::try_from(bytes.len() + 3).map_err(|_| EncodeError::QrTooLong { length: bytes.len() })?;
        let [pl, ph] = store_len.to_le_bytes();
        // Function 165: model 2.
        self.bytes
            .extend_from_slice(&[GS, b'(', b'k', 4, 0, 49, 65, 50, 0]);
        // Function 167: module size 6 dots.
        self.bytes.extend_from_slice(&[GS, b'(', b'k', 3, 0, 49, 67, 6]);
        // Function 169: error correction level M (49).
        self.bytes.extend_from_slice(&[GS, b'(', b'k', 3, 0, 49, 69, 49]);
        // Function 180: store the data.
        self.bytes
            .extend_from_slice(&[GS, b'(', b'k', pl, ph, 49, 80, 48]);
        self.bytes.extend_from_slice(bytes);
        // Function 181: print the stored symbol.
        self.bytes.extend_from_slice(&[GS, b'(', b'k', 3, 0, 49, 81, 48]);
        Ok(self)
    }

    /// Prints what is buffered and feeds `lines` lines: `ESC d n`.
    pub fn feed(&mut self, lines: u8) -> &mut Self {
        self.bytes.extend_from_slice(&[ESC, b'd', lines]);
        self
    }

    /// Feeds to the cutter and cuts fully: `GS V 65 0`.
    pub fn cut(&mut self) -> &mut Self {
        self.bytes.extend_from_slice(&[GS, b'V', 65, 0]);
        self
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The finished stream.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The slip printed when a BOPIS order is ready: order number, customer, the lines
/// as `qty x name`, and a QR code of `pickup_code_for_qr` the counter can scan.
pub fn pickup_slip(
    order_id: &str,
    customer_display_name: &str,
    lines: &[(u32, &str)],
    pickup_code_for_qr: &str,
) -> Result<Vec<u8>, EncodeError> {
    let mut slip = ReceiptBuilder::new(CodePage::Pc858);
    slip.align(Alignment::Center)
        .bold(true)
        .text_line("ORDER PICKUP")
        .bold(false)
        .text_line(&format!("Order {order_id}"))
        .text_line(customer_display_name)
        .align(Alignment::Left)
        .text_line("");
    for (qty, name) in lines {
        slip.text_line(&format!("{qty:>3} x {name}"));
    }
    slip.text_line("").align(Alignment::Center);
    slip.qr_code(pickup_code_for_qr)?;
    slip.text_line("Show this code at pickup");
    slip.feed(3).cut();
    Ok(slip.into_bytes())
}

/// The receipt printed for a BORIS return: return and order numbers, the returned
/// lines as `qty x name`, the reasons, the refund, and a CODE128 barcode of the
/// return number for later look-up.
pub fn return_receipt(
    return_id: &str,
    order_id: &str,
    lines: &[(u32, &str)],
    refund_text: &str,
    reasons: &[&str],
) -> Result<Vec<u8>, EncodeError> {
    let mut slip = ReceiptBuilder::new(CodePage::Pc858);
    slip.align(Alignment::Center)
        .bold(true)
        .text_line("RETURN RECEIPT")
        .bold(false)
        .text_line(&format!("Return {return_id}"))
        .text_line(&format!("Online order {order_id}"))
        .align(Alignment::Left)
        .text_line("");
    for (qty, name) in lines {
        slip.text_line(&format!("{qty:>3} x {name}"));
    }
    for reason in reasons {
        slip.text_line(&format!("Reason: {reason}"));
    }
    slip.text_line("")
        .bold(true)
        .text_line(&format!("Refund: {refund_text}"))
        .bold(false)
        .align(Alignment::Center);
    slip.code128(return_id)?;
    slip.feed(3).cut();
    Ok(slip.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escpos::journal::{JournalConfig, JournalTap};

    #[test]
    fn builder_exact_bytes() {
        let mut b = ReceiptBuilder::new(CodePage::Pc437);
        b.align(Alignment::Center)
            .bold(true)
            .text_line("Café")
            .bold(false)
            .double_size(true)
            .double_size(false)
            .align(Alignment::Right);
        b.code128("A{1").unwrap();
        b.qr_code("hi").unwrap();
        b.feed(3).cut();
        let want: Vec<u8> = [
            &[0x1B, 0x40, 0x1B, 0x74, 0x00][..],
            &[0x1B, 0x61, 0x01, 0x1B, 0x45, 0x01],
            b"Caf\x82\x0A",
            &[
                0x1B, 0x45, 0x00, 0x1D, 0x21, 0x11, 0x1D, 0x21, 0x00, 0x1B, 0x61, 0x02,
            ],
            &[
                0x1D, 0x48, 0x02, 0x1D, 0x6B, 0x49, 0x06, b'{', b'B', b'A', b'{', b'{', b'1',
            ],
            &[0x1D, 0x28, 0x6B, 0x04, 0x00, 0x31, 0x41, 0x32, 0x00],
            &[0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x43, 0x06],
            &[0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x45, 0x31],
            &[0x1D, 0x28, 0x6B, 0x05, 0x00, 0x31, 0x50, 0x30, b'h', b'i'],
            &[0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x51, 0x30],
            &[0x1B, 0x64, 0x03, 0x1D, 0x56, 0x41, 0x00],
        ]
        .concat();
        assert_eq!(b.into_bytes(), want);
    }

    #[test]
    fn barcode_and_qr_errors() {
        let mut b = ReceiptBuilder::new(CodePage::Pc858);
        assert_eq!(b.code128("").unwrap_err(), EncodeError::Code128Empty);
        assert_eq!(
            b.code128("AB\u{e9}").unwrap_err(),
            EncodeError::Code128Character {
                found: 'é',
                position: 2
            }
        );
        assert_eq!(
            b.code128(&"x".repeat(254)).unwrap_err(),
            EncodeError::Code128TooLong { length: 256 }
        );
        assert_eq!(b.qr_code("").unwrap_err(), EncodeError::QrEmpty);
        assert!(matches!(
            b.qr_code(&"x".repeat(MAX_QR_BYTES + 1)),
            Err(EncodeError::QrTooLong { .. })
        ));
        // Failed calls write nothing.
        assert_eq!(b.as_bytes(), &[0x1B, 0x40, 0x1B, 0x74, 19]);
    }

    #[test]
    fn pickup_slip_exact_bytes() {
        let got = pickup_slip("W-42", "Zoë M.", &[(2, "Socks"), (1, "Cap")], "P1").unwrap();
        let want: Vec<u8> = [
            &[0x1B, 0x40, 0x1B, 0x74, 19][..],
            &[0x1B, 0x61, 0x01, 0x1B, 0x45, 0x01],
            b"ORDER PICKUP\n",
            &[0x1B, 0x45, 0x00],
            b"Order W-42\n",
            b"Zo\x89 M.\n",
            &[0x1B, 0x61, 0x00],
            b"\n",
            b"  2 x Socks\n",
            b"  1 x Cap\n",
            b"\n",
            &[0x1B, 0x61, 0x01],
            &[0x1D, 0x28, 0x6B, 0x04, 0x00, 0x31, 0x41, 0x32, 0x00],
            &[0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x43, 0x06],
            &[0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x45, 0x31],
            &[0x1D, 0x28, 0x6B, 0x05, 0x00, 0x31, 0x50, 0x30, b'P', b'1'],
            &[0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x51, 0x30],
            b"Show this code at pickup\n",
            &[0x1B, 0x64, 0x03, 0x1D, 0x56, 0x41, 0x00],
        ]
        .concat();
        assert_eq!(got, want);
    }

    #[test]
    fn return_receipt_exact_bytes() {
        let got = return_receipt("R7", "W-42", &[(1, "Cap")], "€12.00", &["too small"]).unwrap();
        let want: Vec<u8> = [
            &[0x1B, 0x40, 0x1B, 0x74, 19][..],
            &[0x1B, 0x61, 0x01, 0x1B, 0x45, 0x01],
            b"RETURN RECEIPT\n",
            &[0x1B, 0x45, 0x00],
            b"Return R7\n",
            b"Online order W-42\n",
            &[0x1B, 0x61, 0x00],
            b"\n",
            b"  1 x Cap\n",
            b"Reason: too small\n",
            b"\n",
            &[0x1B, 0x45, 0x01],
            b"Refund: \xd512.00\n",
            &[0x1B, 0x45, 0x00, 0x1B, 0x61, 0x01],
            &[0x1D, 0x48, 0x02, 0x1D, 0x6B, 0x49, 0x04, b'{', b'B', b'R', b'7'],
            &[0x1B, 0x64, 0x03, 0x1D, 0x56, 0x41, 0x00],
        ]
        .concat();
        assert_eq!(got, want);
    }

    #[test]
    fn journal_tap_reads_back_what_the_builder_prints() {
        let bytes = return_receipt(
            "R7",
            "W-42",
            &[(1, "Cap")],
            "€12.00 to card 4111 1111 1111 1111",
            &[],
        )
        .unwrap();
        let mut tap = JournalTap::new(JournalConfig::default());
        let receipts = tap.push(&bytes);
        assert_eq!(receipts.len(), 1);
        assert_eq!(
            receipts[0].lines,
            [
                "RETURN RECEIPT",
                "Return R7",
                "Online order W-42",
                "",
                "  1 x Cap",
                "",
                "Refund: €12.00 to card ************1111",
                "R7",
            ]
        );
        assert!(tap.finish().is_empty());
    }
}
