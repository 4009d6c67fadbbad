//! Cutting a device's byte stream into messages at a terminator.
//!
//! Devices send a message (a scan line, a swipe) followed by a terminator (`\r`,
//! `\n` or `\r\n`), but reads hand the bytes over in arbitrary pieces: a message may
//! arrive in several reads, several messages in one read, and a two-byte terminator
//! split across two reads. [`MessageSplitter`] keeps the bytes between reads.
//!
//! **Invariants:** a complete message never contains the terminator; empty messages
//! (two terminators in a row) are skipped; the splitter never holds more than
//! [`MAX_MESSAGE_LEN`] plus a terminator's worth of bytes: a longer message is
//! dropped whole (its head reported as [`Frame::TooLong`], its tail discarded up to
//! the next terminator) so that no truncated scan is ever mistaken for a real one.

use std::fmt;

/// The longest message a driver accepts, in bytes. The longest real messages are
/// 2D codes (GS1 DataMatrix, QR) of a few hundred bytes; 4096 leaves room.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// What the splitter found in the bytes it was given.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete message, terminator removed.
    Message(Vec<u8>),
    /// A message grew past the length cap without a terminator; it is dropped.
    TooLong {
        /// The cap that was exceeded, in bytes.
        limit: usize,
    },
}

/// Shows only the length of a message: it may hold a card number.
impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Message(bytes) => write!(f, "Message(<{} bytes>)", bytes.len()),
            Frame::TooLong { limit } => f.debug_struct("TooLong").field("limit", limit).finish(),
        }
    }
}

/// Cuts a byte stream into messages at a terminator; see the module docs.
#[derive(Debug, Clone)]
pub struct MessageSplitter {
    /// The bytes that end a message; never empty.
    terminator: Vec<u8>,
    /// The longest message accepted.
    max_len: usize,
    /// Bytes received since the last terminator.
    pending: Vec<u8>,
    /// True while the tail of a too-long message is being thrown away.
    discarding: bool,
}

impl MessageSplitter {
    /// A splitter for `terminator` (must not be empty) with the message cap
    /// `max_len`.
    ///
    /// # Panics
    ///
    /// If `terminator` is empty: a configuration that validated never has one.
    pub fn new(terminator: &[u8], max_len: usize) -> MessageSplitter {
        assert!(!terminator.is_empty(), "a message terminator cannot be empty");
        MessageSplitter {
            terminator: terminator.to_vec(),
            max_len,
            pending: Vec::new(),
            discarding: false,
        }
    }

    /// Adds bytes as they were read and appends what they complete to `frames`.
    pub fn push(&mut self, bytes: &[u8], frames: &mut Vec<Frame>) {
        let keep = self.terminator.len() - 1;
        for &byte in bytes {
            self.pending.push(byte);
            if self.pending.ends_with(&self.terminator) {
                let message_len = self.pending.len() - self.terminator.len();
                self.pending.truncate(message_len);
                let message = std::mem::take(&mut self.pending);
                if self.discarding {
                    self.discarding = false;
                } else if !message.is_empty() {
                    frames.push(Frame::Message(message));
                }
            } else if self.discarding {
                // Keep only what may be the start of the terminator.
                if self.pending.len() > keep {
                    self.pending.drain(..self.pending.len() - keep);
                }
            } else if self.pending.len() > self.max_len + keep {
                // Even if the last bytes start a terminator, the message before
                // them is longer than the cap.
                frames.push(Frame::TooLong { limit: self.max_len });
                self.pending.drain(..self.pending.len() - keep);
                self.discarding = true;
            }
        }
    }

    /// Whether bytes of an unfinished message are waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Ends the current message without a terminator (the device went silent):
    /// returns it, unless it is empty or is the tail of a too-long message.
    pub fn flush(&mut self) -> Option<Frame> {
        let message = std::mem::take(&mut self.pending);
        if std::mem::replace(&mut self.discarding, false) || message.is_empty() {
            None
        } else {
            Some(Frame::Message(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(terminator: &[u8], max_len: usize, reads: &[&[u8]]) -> (Vec<Frame>, MessageSplitter) {
        let mut splitter = MessageSplitter::new(terminator, max_len);
        let mut frames = Vec::new();
        for read in reads {
            splitter.push(read, &mut frames);
        }
        (frames, splitter)
    }

    fn msg(bytes: &[u8]) -> Frame {
        Frame::Message(bytes.to_vec())
    }

    #[test]
    fn one_message_per_terminator() {
        let (frames, splitter) = split(b"\r", 100, &[b"abc\rdef\r"]);
        assert_eq!(frames, vec![msg(b"abc"), msg(b"def")]);
        assert!(!splitter.has_pending());
    }

    #[test]
    fn message_across_reads_is_joined() {
        let (frames, _) = split(b"\r", 100, &[b"ab", b"c", b"\rd"]);
        assert_eq!(frames, vec![msg(b"abc")]);
    }

    #[test]
    fn two_byte_terminator_split_across_reads() {
        let (frames, splitter) = split(b"\r\n", 100, &[b"abc\r", b"\ndef\r\n"]);
        assert_eq!(frames, vec![msg(b"abc"), msg(b"def")]);
        assert!(!splitter.has_pending());
    }

    #[test]
    fn lone_first_byte_of_a_two_byte_terminator_stays_in_the_message() {
        let (frames, _) = split(b"\r\n", 100, &[b"a\rb\r\n"]);
        assert_eq!(frames, vec![msg(b"a\rb")]);
    }

    #[test]
    fn empty_messages_are_skipped() {
        let (frames, _) = split(b"\n", 100, &[b"\n\nabc\n\n"]);
        assert_eq!(frames, vec![msg(b"abc")]);
    }

    #[test]
    fn flush_returns_the_unfinished_message_once() {
        let (frames, mut splitter) = split(b"\r", 100, &[b"abc\rxyz"]);
        assert_eq!(frames, vec![msg(b"abc")]);
        assert_eq!(splitter.flush(), Some(msg(b"xyz")));
        assert_eq!(splitter.flush(), None);
    }

    #[test]
    fn message_at_the_cap_is_kept() {
        let mut long = vec![b'7'; 8];
        long.extend_from_slice(b"\r\n");
        let (frames, _) = split(b"\r\n", 8, &[&long]);
        assert_eq!(frames, vec![msg(&[b'7'; 8])]);
    }

    #[test]
    fn message_over_the_cap_is_dropped_up_to_the_next_terminator() {
        let long = vec![b'7'; 20];
        let (frames, splitter) = split(b"\r", 8, &[&long, &long, b"\rok\r"]);
        assert_eq!(frames, vec![Frame::TooLong { limit: 8 }, msg(b"ok")]);
        assert!(!splitter.has_pending());
    }

    #[test]
    fn dropped_message_with_split_terminator_resynchronises() {
        let long = vec![b'7'; 20];
        let (frames, _) = split(b"\r\n", 8, &[&long, b"\r", b"\nok\r\n"]);
        assert_eq!(frames, vec![Frame::TooLong { limit: 8 }, msg(b"ok")]);
    }

    #[test]
    fn memory_stays_bounded_while_discarding() {
        let mut splitter = MessageSplitter::new(b"\r\n", 8);
        let mut frames = Vec::new();
        for _ in 0..1000 {
            splitter.push(&[b'x'; 64], &mut frames);
            assert!(splitter.pending.len() <= 8 + 1);
        }
        assert_eq!(frames, vec![Frame::TooLong { limit: 8 }]);
        assert_eq!(
            splitter.flush(),
            None,
            "the tail of a dropped message is not a message"
        );
    }

    #[test]
    fn debug_shows_no_content() {
        let shown = format!("{:?}", msg(b"4111111111111111"));
        assert!(!shown.contains("4111"), "{shown}");
    }
}
