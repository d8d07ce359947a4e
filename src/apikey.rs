//! API keys: their format, how a new one is made, and the hash that is stored instead of it.
//!
//! A key reads `cgk_<id>_<secret>`: `cgk_` names it (so secret scanners and people can tell a
//! cellgate key), `<id>` is 12 characters of lowercase base32 (60 random bits: the public part,
//! looked up, logged, listed) and `<secret>` 26 characters of lowercase base32 (130 random bits).
//! Only [`KeyHash`] of the secret is stored: SHA-256 over a version tag, the id and the secret.
//!
//! Why a plain SHA-256 is enough here, where passwords need a slow hash: a password is chosen by
//! a person from a small space, so a leaked hash is attacked by guessing likely passwords. A key's
//! secret is 130 bits from the operating system's random source; a leaked hash table gives an
//! attacker nothing better than trying 2^129 secrets on average per key, which no hash speed
//! makes possible. The id in the hashed input binds a hash to its key, so a hash copied onto
//! another key's record verifies nothing. Hashes are compared in constant time (every byte, no
//! early exit), so timing says nothing about how much of a guess was right.
//!
//! This module is a leaf: the registry sources store and load [`KeyHash`]es, the identify stage
//! parses what a client sent and verifies it against the record found by id.

use std::fmt;

use sha2::{Digest, Sha256};

/// What every key starts with.
pub const PREFIX: &str = "cgk_";
/// Characters in a key id.
pub const ID_LEN: usize = 12;
/// Characters in a key secret (26 × 5 = 130 bits).
pub const SECRET_LEN: usize = 26;
/// Characters in a whole key.
pub const KEY_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN;

/// Lowercase RFC 4648 base32: no characters that read alike in most fonts but 0/O and 1/l,
/// which it does not use.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Domain separation: a hash of this kind can never equal a hash made for another purpose.
const HASH_TAG: &[u8] = b"cellgate-apikey-v1\0";

/// Why a string is not a key (the answer to the client does not say which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("an API key starts with `cgk_`")]
    Prefix,
    #[error("an API key is `cgk_` + 12 + `_` + 26 characters")]
    Length,
    #[error("an API key's id and secret are lowercase base32 (a-z, 2-7)")]
    Alphabet,
}

/// A key as a client sent it, split; borrows the client's text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    /// The public id (safe to log).
    pub id: &'a str,
    secret: &'a str,
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn base32(s: &str) -> bool {
    // The alphabet as two ranges: a comparison per byte, not a scan of the alphabet.
    s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
}

/// Splits `cgk_<id>_<secret>`, checking its shape and alphabet (nothing about whether it exists).
pub fn parse(key: &str) -> Result<ParsedKey<'_>, KeyError> {
    let rest = key.strip_prefix(PREFIX).ok_or(KeyError::Prefix)?;
    if key.len() != KEY_LEN || rest.as_bytes().get(ID_LEN) != Some(&b'_') {
        return Err(KeyError::Length);
    }
    let (id, secret) = (&rest[..ID_LEN], &rest[ID_LEN + 1..]);
    if !base32(id) || !base32(secret) {
        return Err(KeyError::Alphabet);
    }
    Ok(ParsedKey { id, secret })
}

/// Whether `id` has the shape of a key id (for ids given to the CLI or read from a registry).
#[must_use]
pub fn valid_id(id: &str) -> bool {
    id.len() == ID_LEN && base32(id)
}

/// A key's public id, held inline (no allocation): what the cell, the access log and the
/// metrics-free audit trail may see of a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; ID_LEN]);

impl KeyId {
    /// The id of a parsed key (its shape already checked).
    #[must_use]
    pub fn of(key: &ParsedKey<'_>) -> Self {
        let mut buf = [b'a'; ID_LEN];
        buf.copy_from_slice(&key.id.as_bytes()[..ID_LEN]);
        Self(buf)
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only base32 characters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.as_str())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stored form of a key's secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash([u8; 32]);

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({self})")
    }
}

impl fmt::Display for KeyHash {
    /// `sha256:<64 hex digits>`, as the registry stores it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for KeyHash {
    type Err = &'static str;

    /// Reads `sha256:<64 hex digits>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or("a key hash is sha256:<64 hex digits>")?;
        if hex.len() != 64 {
            return Err("a key hash is sha256:<64 hex digits>");
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|_| "not hex")?;
            out[i] = u8::from_str_radix(s, 16).map_err(|_| "a key hash is hex digits")?;
        }
        Ok(Self(out))
    }
}

impl KeyHash {
    /// The hash of key `id` with `secret`.
    #[must_use]
    pub fn of(id: &str, secret: &str) -> Self {
        let mut h = Sha256::new();
        h.update(HASH_TAG);
        h.update(id.as_bytes());
        h.update(b"\0");
        h.update(secret.as_bytes());
        Self(h.finalize().into())
    }

    /// The digest, as a registry record is packed.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// A digest read back from a packed record.
    #[must_use]
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// Whether `key` is the key this hash was made from: every byte compared, whatever differs.
    #[must_use]
    pub fn verifies(&self, key: &ParsedKey<'_>) -> bool {
        let candidate = Self::of(key.id, key.secret);
        let pairs = self.0.iter().copied().zip(candidate.0.iter().copied());
        // black_box: the compiler may not turn the fold into an early exit.
        std::hint::black_box(differences(pairs)) == 0
    }
}

/// 0 when every pair is equal. Reads every pair whatever it finds: no early exit, so the time
/// taken says nothing about where two hashes first differ.
fn differences(pairs: impl Iterator<Item = (u8, u8)>) -> u8 {
    pairs.fold(0u8, |acc, (a, b)| acc | (a ^ b))
}

/// A new key: the full text (shown once, never stored) and what is stored of it.
pub struct NewKey {
    pub id: String,
    pub key: String,
    pub hash: KeyHash,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// `n` random base32 characters from the operating system's random source.
fn random_base32(n: usize) -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    // 256 is a multiple of 32: taking the low 5 bits of a uniform byte is uniform.
    Ok(bytes
        .into_iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect())
}

/// Makes a new key.
pub fn generate() -> Result<NewKey, ring::error::Unspecified> {
    let id = random_base32(ID_LEN)?;
    let secret = random_base32(SECRET_LEN)?;
    let hash = KeyHash::of(&id, &secret);
    let key = format!("{PREFIX}{id}_{secret}");
    Ok(NewKey { id, key, hash })
}

/// Why a presented key is refused; each is its own reason in the metrics, one answer (401)
/// to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    /// The api_key source is the only one that could have named the tenant, and no key came.
    #[error("an API key is required")]
    Missing,
    #[error("the API key is malformed")]
    Malformed,
    #[error("no such API key")]
    Unknown,
    #[error("the API key's secret does not match")]
    WrongSecret,
    #[error("the API key was revoked")]
    Revoked,
    #[error("the API key has expired")]
    Expired,
    /// An id the snapshot lacks, not looked up: the registry miss cap was spent.
    #[error("the API key could not be looked up (miss cap reached)")]
    Unchecked,
}

impl KeyRefusal {
    /// The metric label.
    #[must_use]
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::WrongSecret => "wrong_secret",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Unchecked => "unchecked",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_comparison_reads_every_byte_wherever_the_first_difference_is() {
        let a = KeyHash::of("abcdefghijkl", "x").to_bytes();
        for at in [0, 1, 16, 31] {
            let mut b = a;
            b[at] ^= 0x80;
            let read = std::cell::Cell::new(0);
            let pairs = a.iter().copied().zip(b.iter().copied()).inspect(|_| {
                read.set(read.get() + 1);
            });
            assert_ne!(differences(pairs), 0);
            assert_eq!(
                read.get(),
                32,
                "a difference at byte {at} stopped the comparison"
            );
        }
        assert_eq!(differences(a.iter().copied().zip(a.iter().copied())), 0);
    }

    #[test]
    fn a_new_key_parses_and_verifies_against_its_hash_only() {
        let k = generate().unwrap();
        assert_eq!(k.key.len(), KEY_LEN);
        let parsed = parse(&k.key).unwrap();
        assert_eq!(parsed.id, k.id);
        assert!(k.hash.verifies(&parsed));
        let other = generate().unwrap();
        assert!(!k.hash.verifies(&parse(&other.key).unwrap()));
        assert_ne!(k.id, other.id, "60 random bits");
        // One character of the secret changed: refused.
        let mut wrong = k.key.clone().into_bytes();
        let last = wrong.len() - 1;
        wrong[last] = if wrong[last] == b'a' { b'b' } else { b'a' };
        let wrong = String::from_utf8(wrong).unwrap();
        assert!(!k.hash.verifies(&parse(&wrong).unwrap()));
    }

    #[test]
    fn a_hash_is_bound_to_its_key_id() {
        let k = generate().unwrap();
        let secret = &k.key[PREFIX.len() + ID_LEN + 1..];
        let moved = format!("{PREFIX}{}_{secret}", "a".repeat(ID_LEN));
        assert!(!k.hash.verifies(&parse(&moved).unwrap()));
    }

    #[test]
    fn malformed_keys_say_what_is_wrong() {
        let good = generate().unwrap().key;
        assert_eq!(parse(&good.replace("cgk_", "sk_")), Err(KeyError::Prefix));
        assert_eq!(parse(&good[..KEY_LEN - 1]), Err(KeyError::Length));
        assert_eq!(parse(&format!("{good}a")), Err(KeyError::Length));
        assert_eq!(
            parse(&good.to_uppercase().replace("CGK_", "cgk_")),
            Err(KeyError::Alphabet)
        );
        let moved = format!("{}{}", &good[..PREFIX.len() + ID_LEN], "x");
        assert!(parse(&moved).is_err());
        let underscore_elsewhere = format!("cgk_{}_{}", "a".repeat(11), "b".repeat(27));
        assert_eq!(parse(&underscore_elsewhere), Err(KeyError::Length));
        assert_eq!(parse("cgk_ééééééééééé_"), Err(KeyError::Length));
        let debug = format!("{:?}", parse(&good).unwrap());
        assert!(
            !debug.contains(&good[PREFIX.len() + ID_LEN + 1..]),
            "{debug}"
        );
    }

    #[test]
    fn hashes_round_trip_through_their_stored_form() {
        let k = generate().unwrap();
        let text = k.hash.to_string();
        assert!(text.starts_with("sha256:") && text.len() == 71, "{text}");
        assert_eq!(text.parse::<KeyHash>().unwrap(), k.hash);
        for bad in ["sha1:00", "sha256:zz", &text[..70], "00"] {
            assert!(bad.parse::<KeyHash>().is_err(), "{bad}");
        }
        assert!(valid_id(&k.id));
        assert!(!valid_id("ABCDEFGHIJKL"));
        assert!(
            !format!("{k:?}").contains(&k.key),
            "a new key's Debug hides the key"
        );
    }
}
