//! ESC/POS: reading what a POS prints, and driving line displays and receipt printers.
//!
//! * [`journal`] — the journal tap: the byte stream going to a receipt printer in,
//!   receipts of text lines out, images and barcodes skipped, card numbers masked.
//! * [`display`] — customer line displays (2 × 20 characters): CD5220 and Epson
//!   ESC/POS command sets.
//! * [`printer`] — receipt printer output: pickup slips and return receipts.
//! * [`code_pages`] — the character tables both directions share.
//!
//! **Invariants:** everything here is pure (bytes in, values out; values in, bytes
//! out) and never panics on any input. No text leaves the journal tap without its
//! payment card numbers masked. Encoders never let text inject a command: control
//! characters in text are dropped.

pub mod code_pages;
pub mod display;
pub mod journal;
pub mod printer;

pub use code_pages::CodePage;
pub use display::{
    DisplayCodePage, DisplayLine, DisplayLines, DisplayProtocol, display_two_lines, display_two_lines_in,
    order_ready, scanned_item, welcome,
};
pub use journal::{JournalConfig, JournalTap, Receipt, ReceiptEnd, mask_pans};
pub use printer::{EncodeError, ReceiptBuilder, pickup_slip, return_receipt};

/// Horizontal placement of text on a display line or a printed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Alignment {
    /// Flush left (the default).
    #[default]
    Left,
    /// Centred; an odd leftover space goes to the right.
    Center,
    /// Flush right.
    Right,
}
