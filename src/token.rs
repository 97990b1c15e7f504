//! The access token format: generate, parse, checksum and hash (pure, no I/O).
//!
//! A token is `tgat_` followed by the unpadded base64url encoding of
//! `identity id (16) | token id (16) | secret (32) | checksum (4)`.
//! The identity id is inside the token so the store can find every key of the
//! request in one hash slot (`{identity}`) without a lookup table; the token id
//! is public (lists, logs, revocation); only SHA-256 of the secret is stored.
//! The checksum (first 4 bytes of SHA-256 over the rest) lets a mistyped or
//! truncated token be refused before the store is asked.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;

/// Fixed prefix so secret scanners can recognise leaked tokens.
pub const PREFIX: &str = "tgat_";
const RAW_LEN: usize = 16 + 16 + 32 + 4;
/// Length of a well-formed token string.
pub const TOKEN_LEN: usize = PREFIX.len() + (RAW_LEN * 4).div_ceil(3);

/// A 16-byte public id, shown as a UUID string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; 16]);

impl Id {
    /// A fresh random (version 4 shaped) id.
    pub fn random() -> Id {
        let mut b = [0u8; 16];
        fill_random(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Id(b)
    }

    /// A fresh token id for a token of `identity`: its first 8 bytes are the
    /// identity's, the other 8 random (still version 4 shaped, since the
    /// identity's version nibble is among the 8). A store can then find a
    /// token's identity from the token id with one entry per identity
    /// rather than one per token (see `store/redis/keys.rs`).
    pub fn for_token_of(identity: Id) -> Id {
        let mut b = [0u8; 16];
        fill_random(&mut b);
        b[..8].copy_from_slice(&identity.0[..8]);
        b[8] = (b[8] & 0x3f) | 0x80;
        Id(b)
    }

    /// The first 8 bytes: shared by an identity and the ids of its tokens.
    pub fn prefix(&self) -> [u8; 8] {
        let mut p = [0u8; 8];
        p.copy_from_slice(&self.0[..8]);
        p
    }

    /// Parses the UUID text form (with or without dashes, any case).
    pub fn parse(s: &str) -> Option<Id> {
        uuid::Uuid::try_parse(s).ok().map(|u| Id(*u.as_bytes()))
    }

    /// 32 lowercase hex digits, used inside store keys.
    pub fn hex(&self) -> String {
        uuid::Uuid::from_bytes(self.0).simple().to_string()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Id::parse(&s).ok_or_else(|| serde::de::Error::custom("not a UUID"))
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// SHA-256 of a token secret: the only form of the secret that is stored.
pub type SecretHash = [u8; 32];

/// A parsed access token. `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub identity_id: Id,
    pub token_id: Id,
    secret: [u8; 32],
}

/// Why a string is not a well-formed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("token has the wrong prefix")]
    Prefix,
    #[error("token has the wrong length")]
    Length,
    #[error("token is not valid base64url")]
    Encoding,
    #[error("token checksum does not match")]
    Checksum,
}

impl AccessToken {
    /// A new token for `identity_id` with a fresh id and 256 random bits.
    pub fn generate(identity_id: Id) -> AccessToken {
        let mut secret = [0u8; 32];
        fill_random(&mut secret);
        AccessToken {
            identity_id,
            token_id: Id::for_token_of(identity_id),
            secret,
        }
    }

    /// A token from known parts (tests, imports). The secret must be random.
    pub fn from_parts(identity_id: Id, token_id: Id, secret: [u8; 32]) -> AccessToken {
        AccessToken {
            identity_id,
            token_id,
            secret,
        }
    }

    /// Checks prefix, length and checksum; touches nothing else.
    pub fn parse(s: &str) -> Result<AccessToken, FormatError> {
        let body = s.strip_prefix(PREFIX).ok_or(FormatError::Prefix)?;
        if s.len() != TOKEN_LEN {
            return Err(FormatError::Length);
        }
        let mut raw = [0u8; RAW_LEN];
        let n = URL_SAFE_NO_PAD
            .decode_slice(body, &mut raw)
            .map_err(|_| FormatError::Encoding)?;
        if n != RAW_LEN {
            return Err(FormatError::Length);
        }
        let (payload, sum) = raw.split_at(RAW_LEN - 4);
        if checksum(payload) != sum {
            return Err(FormatError::Checksum);
        }
        let mut t = AccessToken {
            identity_id: Id([0; 16]),
            token_id: Id([0; 16]),
            secret: [0; 32],
        };
        t.identity_id.0.copy_from_slice(&payload[..16]);
        t.token_id.0.copy_from_slice(&payload[16..32]);
        t.secret.copy_from_slice(&payload[32..64]);
        Ok(t)
    }

    /// The string handed to the client, once. Callers must not log it.
    pub fn expose(&self) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[..16].copy_from_slice(&self.identity_id.0);
        raw[16..32].copy_from_slice(&self.token_id.0);
        raw[32..64].copy_from_slice(&self.secret);
        let sum = checksum(&raw[..64]);
        raw[64..].copy_from_slice(&sum);
        let mut s = String::with_capacity(TOKEN_LEN);
        s.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(raw, &mut s);
        s
    }

    /// SHA-256 of the secret, compared against the stored hash.
    pub fn secret_hash(&self) -> SecretHash {
        Sha256::digest(self.secret).into()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken({}, secret: <redacted>)", self.token_id)
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token {}", self.token_id)
    }
}

fn checksum(payload: &[u8]) -> [u8; 4] {
    let d = Sha256::digest(payload);
    [d[0], d[1], d[2], d[3]]
}

/// The credential of an `Authorization: Bearer <credential>` value (scheme in
/// any case, surrounding spaces ignored); `None` for any other shape.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, cred) = authorization.trim().split_once(' ')?;
    let cred = cred.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !cred.is_empty()).then_some(cred)
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn fill_random(buf: &mut [u8]) {
    // Without OS randomness no token can be safe, so there is nothing sensible to fall back to.
    #[allow(clippy::expect_used)]
    getrandom::getrandom(buf).expect("the operating system random source failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_length() {
        let t = AccessToken::generate(Id::random());
        assert_eq!(t.token_id.prefix(), t.identity_id.prefix());
        assert_ne!(t.token_id, t.identity_id);
        let u = uuid::Uuid::from_bytes(t.token_id.0);
        assert_eq!(
            (u.get_version_num(), u.get_variant()),
            (4, uuid::Variant::RFC4122)
        );
        let s = t.expose();
        assert_eq!(s.len(), TOKEN_LEN);
        assert!(s.starts_with(PREFIX));
        assert_eq!(AccessToken::parse(&s), Ok(t));
    }

    #[test]
    fn one_changed_character_is_refused() {
        let s = AccessToken::generate(Id::random()).expose();
        let mut bytes = s.into_bytes();
        let i = PREFIX.len() + 20;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let s = String::from_utf8(bytes).unwrap();
        assert_eq!(AccessToken::parse(&s), Err(FormatError::Checksum));
    }

    #[test]
    fn bad_prefix_length_encoding() {
        let s = AccessToken::generate(Id::random()).expose();
        assert_eq!(
            AccessToken::parse(&s.replace("tgat_", "xxxx_")),
            Err(FormatError::Prefix)
        );
        assert_eq!(
            AccessToken::parse(&s[..s.len() - 1]),
            Err(FormatError::Length)
        );
        let mut bad = s.clone();
        bad.replace_range(10..11, "*");
        assert_eq!(AccessToken::parse(&bad), Err(FormatError::Encoding));
    }

    #[test]
    fn debug_and_display_hide_the_secret() {
        let t = AccessToken::generate(Id::random());
        let s = t.expose();
        let body = &s[PREFIX.len()..];
        for shown in [format!("{t:?}"), format!("{t}")] {
            assert!(!shown.contains(body));
            assert!(shown.contains(&t.token_id.to_string()));
        }
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer   abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn ids_are_uuid_shaped() {
        let id = Id::random();
        let s = id.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(Id::parse(&s), Some(id));
        assert_eq!(id.hex().len(), 32);
    }

    #[test]
    fn secret_hash_is_stable_and_distinct() {
        let a = AccessToken::generate(Id::random());
        let b = AccessToken::generate(Id::random());
        assert_eq!(a.secret_hash(), a.secret_hash());
        assert_ne!(a.secret_hash(), b.secret_hash());
    }
}
