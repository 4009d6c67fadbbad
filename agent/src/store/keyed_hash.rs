//! Keyed hashes of the identifiers a shopper carries: loyalty card numbers and
//! BOPIS pickup codes.
//!
//! **Invariant:** the raw values never reach the database, the outbox or a log
//! line. The agent stores `HMAC-SHA256(tenant key, domain ‖ 0x00 ‖ value)`; the
//! cloud, which holds the same per-tenant key, computes the same hashes when it
//! publishes cards and orders (docs/protocol.md). A keyed hash, unlike a plain
//! one, cannot be reversed by hashing every possible 16-digit card number.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The smallest key accepted, in bytes (the config checks this too).
pub const MIN_KEY_LEN: usize = 32;

/// Computes the keyed hashes with the tenant's key.
#[derive(Clone)]
pub struct KeyedHasher {
    /// HMAC state with the key already absorbed; cloned for every hash so the key
    /// schedule is computed once.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyedHasher(fingerprint {})", self.fingerprint())
    }
}

/// The hash domains: the same digits as a card number and as a pickup code give
/// different hashes.
const CARD: &[u8] = b"loyalty-card";
const PICKUP: &[u8] = b"pickup-code";
const EMAIL: &[u8] = b"email";
const PHONE: &[u8] = b"phone";
const FINGERPRINT: &[u8] = b"key-fingerprint";

impl KeyedHasher {
    /// A hasher for `key`; `None` if the key is shorter than [`MIN_KEY_LEN`].
    pub fn new(key: &[u8]) -> Option<KeyedHasher> {
        if key.len() < MIN_KEY_LEN {
            return None;
        }
        let keyed = Hmac::<Sha256>::new_from_slice(key).ok()?;
        Some(KeyedHasher { keyed })
    }

    fn hash(&self, domain: &[u8], value: &str) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(domain);
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let out = mac.finalize().into_bytes();
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&out);
        hash
    }

    /// The stored form of a loyalty card number (surrounding whitespace ignored).
    pub fn card_hash(&self, card_number: &str) -> [u8; 32] {
        self.hash(CARD, card_number.trim())
    }

    /// The stored form of a BOPIS pickup code (surrounding whitespace ignored).
    pub fn pickup_code_hash(&self, code: &str) -> [u8; 32] {
        self.hash(PICKUP, code.trim())
    }

    /// The stored form of an e-mail address: trimmed and lower-cased first, so
    /// the associate's spelling of the case does not matter.
    pub fn email_hash(&self, email: &str) -> [u8; 32] {
        self.hash(EMAIL, &email.trim().to_lowercase())
    }

    /// The stored form of a phone number: its digits only (E.164 without the
    /// `+`), so spaces, dashes and a leading `+` or `00` do not matter.
    pub fn phone_hash(&self, phone: &str) -> [u8; 32] {
        self.hash(PHONE, &phone_digits(phone))
    }

    /// A short public name for the key, so a snapshot hashed with another key is
    /// refused instead of silently matching no card. Reveals nothing of the key.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.hash(FINGERPRINT, "")[..8])
    }
}

/// A phone number's digits as [`KeyedHasher::phone_hash`] hashes them: every
/// non-digit dropped, and an international `00` prefix dropped like a `+`.
pub fn phone_digits(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    match digits.strip_prefix("00") {
        Some(rest) if !phone.trim_start().starts_with('+') => rest.to_string(),
        _ => digits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_key_domain_and_value() {
        let a = KeyedHasher::new(&[1; 32]).unwrap();
        let b = KeyedHasher::new(&[2; 32]).unwrap();
        let card = "9800000000000018";
        assert_eq!(a.card_hash(card), a.card_hash(&format!(" {card}\n")));
        assert_ne!(a.card_hash(card), b.card_hash(card));
        assert_ne!(a.card_hash(card), a.pickup_code_hash(card));
        assert_ne!(a.card_hash(card), a.card_hash("9800000000000026"));
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
    }

    #[test]
    fn matches_hmac_sha256_test_vector_construction() {
        // HMAC-SHA256 with key 0x0b * 32 over "loyalty-card\0123", computed independently
        // with Python: hmac.new(b"\x0b"*32, b"loyalty-card\x00123", "sha256").hexdigest()
        let h = KeyedHasher::new(&[0x0b; 32]).unwrap();
        assert_eq!(
            hex::encode(h.card_hash("123")),
            "7fe187fcb3f3fef2041ca8b0e7636681ebd3e8d0a9262d6b6d73e2155fc13425"
        );
    }

    #[test]
    fn contact_hashes_normalise_spelling_and_keep_domains_apart() {
        let h = KeyedHasher::new(&[3; 32]).unwrap();
        assert_eq!(h.email_hash(" Ada@Example.COM "), h.email_hash("ada@example.com"));
        assert_ne!(h.email_hash("ada@example.com"), h.email_hash("eve@example.com"));
        assert_eq!(h.phone_hash("+49 170 123-4567"), h.phone_hash("491701234567"));
        assert_eq!(h.phone_hash("0049 170 1234567"), h.phone_hash("491701234567"));
        assert_ne!(h.phone_hash("491701234567"), h.phone_hash("491701234568"));
        assert_ne!(h.phone_hash("491701234567"), h.card_hash("491701234567"));
        assert_eq!(phone_digits("+00 1"), "001");
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(KeyedHasher::new(&[0; 31]).is_none());
    }
}
