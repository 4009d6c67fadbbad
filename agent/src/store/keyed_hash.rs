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

    /// A short public name for the key, so a snapshot hashed with another key is
    /// refused instead of silently matching no card. Reveals nothing of the key.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.hash(FINGERPRINT, "")[..8])
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
    fn short_keys_are_refused() {
        assert!(KeyedHasher::new(&[0; 31]).is_none());
    }
}
