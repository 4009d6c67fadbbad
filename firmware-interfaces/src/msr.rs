//! Magnetic-stripe tracks 1 and 2 (ISO/IEC 7813) as a keyboard-wedge or serial
//! reader sends them, and the payment-card guard for loyalty-card swipes.
//!
//! [`parse_swipe`] checks a swipe rule by rule, in the order of the MSR corpus
//! README (terminator, characters, sentinels, lengths, separators, fields, track
//! agreement), and returns a [`Swipe`] or an [`MsrError`] that names the first rule
//! broken. [`read_card`] is what the agent calls: it turns a swipe into a
//! [`CardRead`] event, dropping every payment card at once.
//!
//! **Invariant: no digit of a card number leaves this module by accident.**
//!
//! * `Debug` of [`Swipe`], [`Track1`] and [`Track2`] is written by hand and redacts
//!   every field read from the card; they implement neither `Display`, `Clone` nor
//!   serde.
//! * [`MsrError`] (its `Display` and its `Debug`) never repeats a digit of the input,
//!   even when the swipe is malformed: it says which rule, which track and which
//!   position, and describes an offending character without ever quoting a digit.
//!   It may contain digits of its own (`track 1`, a position, a length).
//! * [`CardRead::PaymentCardRejected`] carries nothing at all, and the `Debug` of
//!   [`CardRead::Loyalty`] shows only the last four digits of the loyalty number.
//!
//! The one way to the digits is [`Swipe::pan`] and the track accessors; `read_card`
//! uses them only to classify the number and to hand a loyalty number over.
//!
//! Two readings of the rules worth knowing: the name field may have at most 26
//! characters with its padding and must keep at least 2 without it; and a swipe
//! whose track 1 reads `%E?` is rejected as a whole even when track 2 was read, so
//! the associate swipes again instead of the agent acting on half a card.

use std::fmt;

use serde::Serialize;

use crate::card::{CardRules, NumberClass, luhn_valid};

/// Most characters of track 1 from `%` to `?` (ISO's 79 includes the LRC, which
/// wedge readers do not send).
const TRACK1_MAX_LEN: usize = 78;
/// Most characters of track 2 from `;` to `?` (ISO's 40 includes the LRC).
const TRACK2_MAX_LEN: usize = 39;
/// Most digits of a primary account number (ISO/IEC 7812).
const PAN_MAX_DIGITS: usize = 19;
/// Fewest characters of the track 1 cardholder name, trailing padding not counted.
const NAME_MIN_LEN: usize = 2;
/// Most characters of the track 1 cardholder name field, padding included.
const NAME_MAX_LEN: usize = 26;
/// Digits of expiry date (`YYMM`) plus service code (`SSS`) after the PAN's field.
const EXPIRY_AND_SERVICE_LEN: usize = 7;

/// Which track of the stripe an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackNumber {
    /// Track 1, `%B PAN ^ NAME ^ YYMM SSS DISCRETIONARY ?`.
    One,
    /// Track 2, `; PAN = YYMM SSS DISCRETIONARY ?`.
    Two,
}

impl fmt::Display for TrackNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrackNumber::One => "track 1",
            TrackNumber::Two => "track 2",
        })
    }
}

impl TrackNumber {
    /// The separator rule of this track, for error messages.
    fn separator_rule(self) -> &'static str {
        match self {
            TrackNumber::One => "exactly two '^' are required",
            TrackNumber::Two => "at most one '=' is allowed",
        }
    }
}

/// Where in the swipe an invalid character was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Anywhere in the swipe (control characters are checked before the tracks are found).
    Swipe,
    /// The cardholder name field of track 1.
    Track1Name,
    /// Track 2, which allows only digits and `=`.
    Track2,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Location::Swipe => "the swipe",
            Location::Track1Name => "the cardholder name in track 1",
            Location::Track2 => "track 2",
        })
    }
}

/// An offending character as an error reports it: described, never quoted when it
/// is a digit, so that an error can never carry part of a card number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A digit (which one is deliberately not kept).
    Digit,
    /// A printable ASCII character other than a digit.
    Printable(char),
    /// An ASCII control character, by its code.
    Control(u8),
    /// A character outside ASCII.
    NonAscii,
}

impl Found {
    /// Describes `c` without keeping it when it is a digit.
    fn of(c: char) -> Found {
        if c.is_ascii_digit() {
            Found::Digit
        } else if c == ' ' || c.is_ascii_graphic() {
            Found::Printable(c)
        } else if c.is_ascii() {
            // An ASCII control character always fits in a byte.
            Found::Control(c as u8)
        } else {
            Found::NonAscii
        }
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Digit => f.write_str("a digit"),
            Found::Printable(c) => write!(f, "'{c}'"),
            Found::Control(b) => write!(f, "control character 0x{b:02X}"),
            Found::NonAscii => f.write_str("a non-ASCII character"),
        }
    }
}

/// Why a swipe was rejected: one variant per `error_kind` of the MSR corpus, named
/// by [`MsrError::kind`].
///
/// Positions count characters from 1 in the swipe as the reader sent it. No
/// variant holds, and no message shows, a digit read from the card.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsrError {
    /// Nothing but (at most) a terminator was read.
    #[error("the swipe is empty: the reader sent no track data")]
    EmptyInput,
    /// A character outside ASCII, which no track can carry.
    #[error(
        "the swipe has a non-ASCII character at position {position}; \
         check the keyboard layout of the reader"
    )]
    NonAscii {
        /// Where the character is.
        position: usize,
    },
    /// A control character anywhere, or a character that the field does not allow.
    #[error("{location} has an invalid character ({found}) at position {position}")]
    InvalidCharacter {
        /// Which part of the swipe the character is in.
        location: Location,
        /// Where the character is.
        position: usize,
        /// What the character is.
        found: Found,
    },
    /// A track does not begin with its start sentinel (`%` or `;`).
    #[error(
        "expected a track's start sentinel ('%' for track 1, ';' for track 2) at position \
         {position}, found {found}"
    )]
    MissingStartSentinel {
        /// Where a track should start.
        position: usize,
        /// What is there instead.
        found: Found,
    },
    /// A track has no `?` end sentinel before the next track or the end of the swipe.
    #[error("{track} starting at position {start} has no end sentinel '?'")]
    MissingEndSentinel {
        /// The unterminated track.
        track: TrackNumber,
        /// Where its start sentinel is.
        start: usize,
    },
    /// Characters after the last end sentinel.
    #[error(
        "{length} characters of unexpected data after the last end sentinel '?', from position {position}"
    )]
    TrailingData {
        /// Where the unexpected data starts.
        position: usize,
        /// How many characters it has.
        length: usize,
    },
    /// Track 1 is longer than its 78 characters.
    #[error("track 1 has {length} characters from '%' to '?'; at most 78 are allowed")]
    Track1TooLong {
        /// Characters from `%` to `?`, both included.
        length: usize,
    },
    /// Track 2 is longer than its 39 characters.
    #[error("track 2 has {length} characters from ';' to '?'; at most 39 are allowed")]
    Track2TooLong {
        /// Characters from `;` to `?`, both included.
        length: usize,
    },
    /// The reader signalled that it could not read a track (`%E?` or `;E?`).
    #[error("{track} could not be read (the reader sent 'E'); swipe the card again")]
    ReadError {
        /// The unreadable track.
        track: TrackNumber,
    },
    /// Start and end sentinel with nothing between them.
    #[error("{track} is empty: nothing between its start and end sentinels")]
    EmptyTrack {
        /// The empty track.
        track: TrackNumber,
    },
    /// Track 1 with a format code other than `B`.
    #[error("the format code of track 1 is {found}; only 'B' (financial cards) is supported")]
    UnsupportedFormatCode {
        /// The format code character.
        found: Found,
    },
    /// Track 1 without exactly two `^`, or track 2 with more than one `=`.
    #[error("{track} has {separators} field separator(s); {}", .track.separator_rule())]
    BadFieldSeparator {
        /// The track.
        track: TrackNumber,
        /// How many separators it has.
        separators: usize,
    },
    /// An empty card number, or one with a character that is not a digit.
    #[error("the card number in {track} is empty or has a character that is not a digit")]
    InvalidPan {
        /// The track.
        track: TrackNumber,
    },
    /// A card number of more than 19 digits.
    #[error("the card number in {track} has {digits} digits; at most 19 are allowed")]
    PanTooLong {
        /// The track.
        track: TrackNumber,
        /// How many digits the number has.
        digits: usize,
    },
    /// A cardholder name field longer than 26 characters, or a name shorter than 2
    /// once its trailing padding is removed.
    #[error("the cardholder name in track 1 has {length} characters; 2 to 26 are allowed")]
    BadNameLength {
        /// The field's length when too long; the name's length without padding when too short.
        length: usize,
    },
    /// Fewer than 7 digits of expiry date and service code after the card number.
    #[error(
        "{track} does not have the 4 digits of expiry date (YYMM) and 3 of service code \
         that must follow the card number's field"
    )]
    BadExpiryOrServiceCode {
        /// The track.
        track: TrackNumber,
    },
    /// An expiry month outside 01–12.
    #[error("the expiry date in {track} has a month outside 01 to 12")]
    BadExpiry {
        /// The track.
        track: TrackNumber,
    },
    /// Tracks 1 and 2 carry different card numbers.
    #[error("track 1 and track 2 carry different card numbers")]
    TrackMismatch,
}

impl MsrError {
    /// The corpus `error_kind` of this error (`"missing_end_sentinel"`, …), stable for
    /// callers, metrics and dead-letter records.
    pub fn kind(&self) -> &'static str {
        match self {
            MsrError::EmptyInput => "empty_input",
            MsrError::NonAscii { .. } => "non_ascii",
            MsrError::InvalidCharacter { .. } => "invalid_character",
            MsrError::MissingStartSentinel { .. } => "missing_start_sentinel",
            MsrError::MissingEndSentinel { .. } => "missing_end_sentinel",
            MsrError::TrailingData { .. } => "trailing_data",
            MsrError::Track1TooLong { .. } => "track1_too_long",
            MsrError::Track2TooLong { .. } => "track2_too_long",
            MsrError::ReadError { .. } => "read_error",
            MsrError::EmptyTrack { .. } => "empty_track",
            MsrError::UnsupportedFormatCode { .. } => "unsupported_format_code",
            MsrError::BadFieldSeparator { .. } => "bad_field_separator",
            MsrError::InvalidPan { .. } => "invalid_pan",
            MsrError::PanTooLong { .. } => "pan_too_long",
            MsrError::BadNameLength { .. } => "bad_name_length",
            MsrError::BadExpiryOrServiceCode { .. } => "bad_expiry_or_service_code",
            MsrError::BadExpiry { .. } => "bad_expiry",
            MsrError::TrackMismatch => "track_mismatch",
        }
    }
}

/// A well-formed swipe: track 1, track 2 or both (never neither), carrying the same
/// card number.
///
/// Its `Debug` redacts everything read from the card. It is deliberately neither
/// `Clone` nor serde: a swipe lives as long as it takes to classify it.
#[derive(Debug)]
pub struct Swipe {
    // Derived Debug is safe: it delegates to the hand-written, redacting Debug of the tracks.
    track1: Option<Track1>,
    track2: Option<Track2>,
}

impl Swipe {
    /// Track 1, if the reader sent one.
    pub fn track1(&self) -> Option<&Track1> {
        self.track1.as_ref()
    }

    /// Track 2, if the reader sent one.
    pub fn track2(&self) -> Option<&Track2> {
        self.track2.as_ref()
    }

    /// The card number (both tracks agree on it). It may be a PAN: never store or
    /// log it; classify it with [`Swipe::classify`] first.
    pub fn pan(&self) -> &str {
        match (&self.track1, &self.track2) {
            (Some(t1), _) => &t1.pan,
            (None, Some(t2)) => &t2.pan,
            // `parse_swipe` only builds swipes with at least one track.
            (None, None) => "",
        }
    }

    /// Whether the card number passes the Luhn check (reported separately from
    /// classification: a Luhn-invalid payment number is still a payment number).
    pub fn pan_luhn_valid(&self) -> bool {
        luhn_valid(self.pan())
    }

    /// What the card number is by the store's rules.
    pub fn classify(&self, rules: &CardRules) -> NumberClass {
        rules.classify(self.pan())
    }
}

/// Expiry date, service code and discretionary data: what follows the card number's
/// field separator on both tracks.
struct CardDetails {
    expiry_yymm: String,
    service_code: String,
    discretionary_data: String,
}

/// Track 1 of a swipe (format code `B`).
pub struct Track1 {
    pan: String,
    name: String,
    details: CardDetails,
}

impl Track1 {
    /// The format code; always `B`, the only one accepted.
    pub fn format_code(&self) -> char {
        'B'
    }

    /// The card number. It may be a PAN: never store or log it.
    pub fn pan(&self) -> &str {
        &self.pan
    }

    /// The cardholder name (`SURNAME/FIRST NAME.TITLE`), trailing padding removed.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The expiry date, four digits `YYMM`.
    pub fn expiry_yymm(&self) -> &str {
        &self.details.expiry_yymm
    }

    /// The three-digit service code.
    pub fn service_code(&self) -> &str {
        &self.details.service_code
    }

    /// The issuer's discretionary data up to the end sentinel (may be empty).
    pub fn discretionary_data(&self) -> &str {
        &self.details.discretionary_data
    }
}

impl fmt::Debug for Track1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Track1")
            .field("format_code", &self.format_code())
            .field("pan", &Redacted(self.pan.len()))
            .field("name", &Redacted(self.name.len()))
            .field("expiry_yymm", &Redacted(self.details.expiry_yymm.len()))
            .field("service_code", &Redacted(self.details.service_code.len()))
            .field(
                "discretionary_data",
                &Redacted(self.details.discretionary_data.len()),
            )
            .finish()
    }
}

/// Track 2 of a swipe. Without a field separator it carries only a number (common
/// on loyalty and gift cards) and no expiry date, service code or discretionary data.
pub struct Track2 {
    pan: String,
    details: Option<CardDetails>,
}

impl Track2 {
    /// The card number. It may be a PAN: never store or log it.
    pub fn pan(&self) -> &str {
        &self.pan
    }

    /// The expiry date, four digits `YYMM`, if the track has a field separator.
    pub fn expiry_yymm(&self) -> Option<&str> {
        self.details.as_ref().map(|d| d.expiry_yymm.as_str())
    }

    /// The three-digit service code, if the track has a field separator.
    pub fn service_code(&self) -> Option<&str> {
        self.details.as_ref().map(|d| d.service_code.as_str())
    }

    /// The discretionary data (digits, may be empty), if the track has a field separator.
    pub fn discretionary_data(&self) -> Option<&str> {
        self.details.as_ref().map(|d| d.discretionary_data.as_str())
    }
}

impl fmt::Debug for Track2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Track2");
        s.field("pan", &Redacted(self.pan.len()));
        match &self.details {
            Some(d) => s
                .field("expiry_yymm", &Redacted(d.expiry_yymm.len()))
                .field("service_code", &Redacted(d.service_code.len()))
                .field("discretionary_data", &Redacted(d.discretionary_data.len())),
            None => s.field("details", &None::<()>),
        };
        s.finish()
    }
}

/// Stands in for a field read from the card in `Debug` output: only its length shows.
struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted: {} chars>", self.0)
    }
}

/// What a swipe on a loyalty reader means for the agent.
///
/// Serialized with an `event` tag (`{"event": "loyalty", "number": "…"}`). Its
/// `Debug` shows only the last four digits of a loyalty number.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CardRead {
    /// A payment card (by [`CardRules::classify`]) was swiped: its data is dropped,
    /// nothing of it is kept — no number, no name, no digit.
    PaymentCardRejected,
    /// A loyalty card with this number (to be hashed before it is stored).
    Loyalty {
        /// The loyalty number, digits only.
        number: String,
    },
    /// A well-formed card whose number is neither payment nor loyalty by the store's
    /// rules (wrong prefix or length). Nothing of it is kept.
    Unrecognised,
    /// A malformed or unreadable swipe.
    Invalid {
        /// The [`MsrError::kind`] of the first rule broken.
        kind: &'static str,
        /// What was wrong and where; never contains a digit of the input.
        message: String,
    },
}

impl fmt::Debug for CardRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CardRead::PaymentCardRejected => f.write_str("PaymentCardRejected"),
            CardRead::Loyalty { number } => f
                .debug_struct("Loyalty")
                .field("number", &LastFour(number))
                .finish(),
            CardRead::Unrecognised => f.write_str("Unrecognised"),
            CardRead::Invalid { kind, message } => f
                .debug_struct("Invalid")
                .field("kind", kind)
                .field("message", message)
                .finish(),
        }
    }
}

/// A loyalty number in `Debug` output: only its last four characters show, as on a
/// receipt (the style guide: no full loyalty number in a log line).
struct LastFour<'a>(&'a str);

impl fmt::Debug for LastFour<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        let tail = self.0.get(n.saturating_sub(4)..).unwrap_or("");
        write!(f, "\"…{tail}\"")
    }
}

/// Reads a swipe as the agent needs it: payment cards are dropped at once, loyalty
/// numbers are handed over, everything else says why without any digit of the input.
pub fn read_card(raw: &str, rules: &CardRules) -> CardRead {
    match parse_swipe(raw) {
        Ok(swipe) => match swipe.classify(rules) {
            NumberClass::Payment => CardRead::PaymentCardRejected,
            NumberClass::Loyalty => CardRead::Loyalty {
                number: swipe.pan().to_owned(),
            },
            NumberClass::Other => CardRead::Unrecognised,
        },
        Err(error) => CardRead::Invalid {
            kind: error.kind(),
            message: error.to_string(),
        },
    }
}

/// Parses what a keyboard-wedge or serial reader sends for one swipe: track 1
/// (`%…?`) and/or track 2 (`;…?`), optionally followed by one `\r`, `\n` or `\r\n`.
///
/// The rules are checked in the order of the MSR corpus README, so the error names
/// the first rule broken: terminator and emptiness, characters, sentinels, then
/// track 1, track 2, and finally the agreement of both card numbers.
pub fn parse_swipe(raw: &str) -> Result<Swipe, MsrError> {
    let swipe = strip_terminator(raw);
    if swipe.is_empty() {
        return Err(MsrError::EmptyInput);
    }
    check_characters(swipe)?;
    // From here on the swipe is printable ASCII: byte offsets are character offsets.
    let (span1, span2) = find_tracks(swipe)?;
    let track1 = span1.map(parse_track1).transpose()?;
    let track2 = span2.map(parse_track2).transpose()?;
    if let (Some(t1), Some(t2)) = (&track1, &track2)
        && t1.pan != t2.pan
    {
        return Err(MsrError::TrackMismatch);
    }
    Ok(Swipe { track1, track2 })
}

/// Removes one trailing `\r\n`, `\r` or `\n` (rule 1).
fn strip_terminator(raw: &str) -> &str {
    raw.strip_suffix("\r\n")
        .or_else(|| raw.strip_suffix('\r'))
        .or_else(|| raw.strip_suffix('\n'))
        .unwrap_or(raw)
}

/// Rejects non-ASCII anywhere first, then control characters (rule 2).
fn check_characters(swipe: &str) -> Result<(), MsrError> {
    if let Some(index) = swipe.chars().position(|c| !c.is_ascii()) {
        return Err(MsrError::NonAscii { position: index + 1 });
    }
    if let Some(index) = swipe.bytes().position(|b| b < 0x20 || b == 0x7F) {
        return Err(MsrError::InvalidCharacter {
            location: Location::Swipe,
            position: index + 1,
            found: Found::of(char::from(swipe.as_bytes()[index])),
        });
    }
    Ok(())
}

/// A track's text from its start sentinel to its end sentinel, both included, and
/// its offset in the swipe.
#[derive(Clone, Copy)]
struct TrackSpan<'a> {
    start: usize,
    text: &'a str,
}

/// Finds track 1 and track 2 by their sentinels (rule 3).
fn find_tracks(swipe: &str) -> Result<(Option<TrackSpan<'_>>, Option<TrackSpan<'_>>), MsrError> {
    let bytes = swipe.as_bytes();
    let mut pos = 0;
    let mut track1 = None;
    if bytes[0] == b'%' {
        // Track 1 ends at the next '?'; a ';' first means track 2 began without it.
        match swipe[1..].find(['?', ';']).map(|i| i + 1) {
            Some(end) if bytes[end] == b'?' => {
                track1 = Some(TrackSpan {
                    start: 0,
                    text: &swipe[..=end],
                });
                pos = end + 1;
            }
            _ => {
                return Err(MsrError::MissingEndSentinel {
                    track: TrackNumber::One,
                    start: 1,
                });
            }
        }
    }
    let mut track2 = None;
    if pos < bytes.len() {
        if bytes[pos] == b';' {
            let Some(end) = swipe[pos..].find('?').map(|i| pos + i) else {
                return Err(MsrError::MissingEndSentinel {
                    track: TrackNumber::Two,
                    start: pos + 1,
                });
            };
            track2 = Some(TrackSpan {
                start: pos,
                text: &swipe[pos..=end],
            });
            pos = end + 1;
        } else if pos == 0 || swipe[pos..].contains('?') {
            // Something that ends like a track but does not start like one.
            return Err(MsrError::MissingStartSentinel {
                position: pos + 1,
                found: Found::of(char::from(bytes[pos])),
            });
        }
    }
    if pos < bytes.len() {
        return Err(MsrError::TrailingData {
            position: pos + 1,
            length: bytes.len() - pos,
        });
    }
    Ok((track1, track2))
}

/// Checks and splits track 1 (rule 4).
fn parse_track1(span: TrackSpan<'_>) -> Result<Track1, MsrError> {
    let TrackSpan { start, text } = span;
    let track = TrackNumber::One;
    if text.len() > TRACK1_MAX_LEN {
        return Err(MsrError::Track1TooLong { length: text.len() });
    }
    match text {
        "%E?" => return Err(MsrError::ReadError { track }),
        "%?" => return Err(MsrError::EmptyTrack { track }),
        _ => {}
    }
    // Between the sentinels; not empty, as `%?` was handled above.
    let body = &text[1..text.len() - 1];
    let format_code = char::from(body.as_bytes()[0]);
    if format_code != 'B' {
        return Err(MsrError::UnsupportedFormatCode {
            found: Found::of(format_code),
        });
    }
    let fields = &body[1..];
    let separators = fields.matches('^').count();
    if separators != 2 {
        return Err(MsrError::BadFieldSeparator { track, separators });
    }
    let mut parts = fields.splitn(3, '^');
    let (pan, name_field, rest) = match (parts.next(), parts.next(), parts.next()) {
        (Some(pan), Some(name), Some(rest)) => (pan, name, rest),
        // Unreachable with exactly two separators; report it as their fault anyway.
        _ => return Err(MsrError::BadFieldSeparator { track, separators }),
    };
    check_pan(pan, track)?;
    // ISO caps the field at 26 characters, padding included; a name that is only
    // padding and one letter is still too short.
    let name = name_field.trim_end_matches(' ');
    if name_field.len() > NAME_MAX_LEN {
        return Err(MsrError::BadNameLength {
            length: name_field.len(),
        });
    }
    if name.len() < NAME_MIN_LEN {
        return Err(MsrError::BadNameLength { length: name.len() });
    }
    // The name starts after '%', the format code, the PAN and its '^'.
    let name_start = start + 2 + pan.len() + 1;
    if let Some(index) = name_field.bytes().position(|b| !is_track1_name_byte(b)) {
        return Err(MsrError::InvalidCharacter {
            location: Location::Track1Name,
            position: name_start + index + 1,
            found: Found::of(char::from(name_field.as_bytes()[index])),
        });
    }
    let details = split_details(rest, track)?;
    Ok(Track1 {
        pan: pan.to_owned(),
        name: name.to_owned(),
        details,
    })
}

/// Checks and splits track 2 (rule 5). The checks run in the README's order, which
/// puts the expiry checks before the card-number checks.
fn parse_track2(span: TrackSpan<'_>) -> Result<Track2, MsrError> {
    let TrackSpan { start, text } = span;
    let track = TrackNumber::Two;
    if text.len() > TRACK2_MAX_LEN {
        return Err(MsrError::Track2TooLong { length: text.len() });
    }
    match text {
        ";E?" => return Err(MsrError::ReadError { track }),
        ";?" => return Err(MsrError::EmptyTrack { track }),
        _ => {}
    }
    let body = &text[1..text.len() - 1];
    if let Some(index) = body.bytes().position(|b| !(b.is_ascii_digit() || b == b'=')) {
        return Err(MsrError::InvalidCharacter {
            location: Location::Track2,
            position: start + 1 + index + 1,
            found: Found::of(char::from(body.as_bytes()[index])),
        });
    }
    let separators = body.matches('=').count();
    if separators > 1 {
        return Err(MsrError::BadFieldSeparator { track, separators });
    }
    let (pan, details) = match body.split_once('=') {
        Some((pan, rest)) => (pan, Some(split_details(rest, track)?)),
        None => (body, None),
    };
    check_pan(pan, track)?;
    Ok(Track2 {
        pan: pan.to_owned(),
        details,
    })
}

/// A card number must be 1 to 19 digits.
fn check_pan(pan: &str, track: TrackNumber) -> Result<(), MsrError> {
    if pan.is_empty() || !pan.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MsrError::InvalidPan { track });
    }
    if pan.len() > PAN_MAX_DIGITS {
        return Err(MsrError::PanTooLong {
            track,
            digits: pan.len(),
        });
    }
    Ok(())
}

/// Splits `YYMM SSS DISCRETIONARY` and checks the expiry month.
fn split_details(rest: &str, track: TrackNumber) -> Result<CardDetails, MsrError> {
    let fixed = rest
        .get(..EXPIRY_AND_SERVICE_LEN)
        .filter(|f| f.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(MsrError::BadExpiryOrServiceCode { track })?;
    let month = &fixed.as_bytes()[2..4];
    let month = (month[0] - b'0') * 10 + (month[1] - b'0');
    if !(1..=12).contains(&month) {
        return Err(MsrError::BadExpiry { track });
    }
    Ok(CardDetails {
        expiry_yymm: fixed[..4].to_owned(),
        service_code: fixed[4..].to_owned(),
        discretionary_data: rest[EXPIRY_AND_SERVICE_LEN..].to_owned(),
    })
}

/// The track 1 character set for the name: 0x20–0x5F except `%`, `^` and `?`
/// (which are sentinels and separators). Lower case is not in it.
fn is_track1_name_byte(b: u8) -> bool {
    (0x20..=0x5F).contains(&b) && !matches!(b, b'%' | b'^' | b'?')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(raw: &str) -> &'static str {
        match parse_swipe(raw) {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        }
    }

    /// True when `text` holds a run of `n` or more ASCII digits.
    fn has_digit_run(text: &str, n: usize) -> bool {
        text.split(|c: char| !c.is_ascii_digit())
            .any(|run| run.len() >= n)
    }

    #[test]
    fn only_one_terminator_is_stripped() {
        assert_eq!(kind_of(";90012345?\r\n"), "ok");
        assert_eq!(kind_of("\r\n"), "empty_input");
        assert_eq!(kind_of("\n"), "empty_input");
        assert_eq!(kind_of(";90012345?\n\n"), "invalid_character");
        assert_eq!(kind_of("\n\r"), "invalid_character");
    }

    #[test]
    fn non_ascii_is_reported_before_control_characters() {
        assert_eq!(kind_of(";9001\u{7}2345\u{e9}?"), "non_ascii");
        assert_eq!(kind_of(";9001\u{7f}2345?"), "invalid_character");
    }

    #[test]
    fn framing_errors() {
        // Track 1 followed by something that ends like a track but lacks ';'.
        assert_eq!(
            kind_of("%B9400123456789012^LOYALTY/MEMBER^4912000?9400=4912000?"),
            "missing_start_sentinel"
        );
        // Track 1 followed by garbage with no '?'.
        assert_eq!(
            kind_of("%B9400123456789012^LOYALTY/MEMBER^4912000?XYZ"),
            "trailing_data"
        );
        // Anything after track 2 is trailing, even another track.
        assert_eq!(
            kind_of(";90012345?%B9400123456789012^LOYALTY/MEMBER^4912000?"),
            "trailing_data"
        );
        assert_eq!(kind_of("?"), "missing_start_sentinel");
        assert_eq!(kind_of("%B9400"), "missing_end_sentinel");
        assert_eq!(
            kind_of("%E?;90012345"),
            "missing_end_sentinel",
            "framing comes before track checks"
        );
    }

    #[test]
    fn track1_errors_come_before_track2_errors() {
        assert_eq!(kind_of("%E?;E?"), "read_error");
        assert_eq!(kind_of("%E?;90012345?"), "read_error");
        assert_eq!(
            kind_of("%B9400123456789012^LOYALTY/MEMBER^4912000?;E?"),
            "read_error"
        );
        assert_eq!(kind_of(";?"), "empty_track");
        assert_eq!(kind_of("%A9400^X^4912000?;?"), "unsupported_format_code");
    }

    #[test]
    fn track1_field_rules() {
        assert_eq!(kind_of("%B^LOYALTY/MEMBER^4912000?"), "invalid_pan");
        assert_eq!(kind_of("%B9400 1234^LOYALTY/MEMBER^4912000?"), "invalid_pan");
        assert_eq!(
            kind_of("%B94001234567890123456^LOYALTY/MEMBER^4912000?"),
            "pan_too_long"
        );
        assert_eq!(
            kind_of("%B9400^X                         ^4912000?"),
            "bad_name_length"
        );
        assert_eq!(kind_of("%B9400^Doe/Jane^4912000?"), "invalid_character");
        assert_eq!(kind_of("%B9400^DOE%JANE^4912000?"), "invalid_character");
        assert_eq!(kind_of("%B9400^DOE/JANE^491200?"), "bad_expiry_or_service_code");
        assert_eq!(kind_of("%B9400^DOE/JANE^49120A0?"), "bad_expiry_or_service_code");
        assert_eq!(kind_of("%B9400^DOE/JANE^4900000?"), "bad_expiry");
        assert_eq!(kind_of("%B9400^DOE/JANE^4912000?"), "ok");
    }

    #[test]
    fn track2_checks_expiry_before_the_card_number() {
        assert_eq!(kind_of(";=4912000?"), "invalid_pan");
        assert_eq!(kind_of(";=49120?"), "bad_expiry_or_service_code");
        assert_eq!(kind_of(";94001234567890123456=4913000?"), "bad_expiry");
        assert_eq!(kind_of(";94001234567890123456?"), "pan_too_long");
        assert_eq!(kind_of(";9400=49120=00?"), "bad_field_separator");
    }

    #[test]
    fn name_padding_is_trimmed_and_leading_spaces_kept() {
        let swipe = parse_swipe("%B9400^ DOE/JANE   ^4912000ABC?").unwrap();
        let t1 = swipe.track1().unwrap();
        assert_eq!(t1.name(), " DOE/JANE");
        assert_eq!(t1.discretionary_data(), "ABC");
        assert!(swipe.track2().is_none());
    }

    #[test]
    fn track2_without_separator_has_no_details() {
        let swipe = parse_swipe(";90012345?").unwrap();
        let t2 = swipe.track2().unwrap();
        assert_eq!(t2.pan(), "90012345");
        assert_eq!(t2.expiry_yymm(), None);
        assert_eq!(t2.service_code(), None);
        assert_eq!(t2.discretionary_data(), None);
    }

    #[test]
    fn debug_redacts_every_card_field() {
        let raw = "%B4111111111111111^TEST/VISA^2812201123456?;4111111111111111=2812201123456?";
        let swipe = parse_swipe(raw).unwrap();
        let text = format!("{swipe:?} {:?} {:?}", swipe.track1(), swipe.track2());
        assert!(!has_digit_run(&text, 3), "{text}");
        assert!(!text.contains("TEST"), "{text}");
        let bare = parse_swipe(";90012345?").unwrap();
        assert!(!format!("{bare:?}").contains("9001"));
    }

    #[test]
    fn errors_never_quote_a_digit() {
        let cases = [
            "4111111111111111=2812101?",            // missing ';'
            "%4111111111111111^TEST/VISA^2812101?", // no format code
            ";4111111111111111=2812101?4111111111111111",
            "%B4111111111111111^TEST/VISA^2812101?;4111111111111112=2812101?",
        ];
        for raw in cases {
            let error = parse_swipe(raw).unwrap_err();
            let text = format!("{error} {error:?}");
            assert!(!has_digit_run(&text, 3), "{raw}: {text}");
            assert!(!text.contains('4'), "{raw}: {text}");
        }
    }

    #[test]
    fn read_card_classifies_by_the_store_rules() {
        let rules = CardRules::default();
        assert_eq!(
            read_card(";4111111111111111=2812101?", &rules),
            CardRead::PaymentCardRejected
        );
        assert_eq!(read_card(";8012345678?", &rules), CardRead::Unrecognised);
        assert_eq!(
            read_card(";7012345678?", &rules),
            CardRead::Loyalty {
                number: "7012345678".into()
            }
        );
        let private_label = CardRules {
            allowed_payment_prefixes: vec!["6012".into()],
            ..CardRules::default()
        };
        assert_eq!(
            read_card(";6012000000000001?", &private_label),
            CardRead::Loyalty {
                number: "6012000000000001".into()
            }
        );
        assert_eq!(
            read_card(";6011111111111117?", &private_label),
            CardRead::PaymentCardRejected
        );
    }

    #[test]
    fn malformed_payment_swipe_is_invalid_without_digits() {
        let read = read_card(";41111111X1111111=2812101000?", &CardRules::default());
        let CardRead::Invalid { kind, message } = &read else {
            panic!("expected Invalid, got {read:?}");
        };
        assert_eq!(*kind, "invalid_character");
        assert!(message.contains("'X'"), "{message}");
        assert!(!message.contains("4111"), "{message}");
    }

    #[test]
    fn card_read_debug_masks_the_loyalty_number_and_json_carries_it() {
        let read = CardRead::Loyalty {
            number: "9400123456789012".into(),
        };
        assert_eq!(format!("{read:?}"), "Loyalty { number: \"…9012\" }");
        let json = serde_json::to_string(&read).unwrap();
        assert_eq!(json, r#"{"event":"loyalty","number":"9400123456789012"}"#);
        let rejected = serde_json::to_string(&CardRead::PaymentCardRejected).unwrap();
        assert_eq!(rejected, r#"{"event":"payment_card_rejected"}"#);
    }
}
