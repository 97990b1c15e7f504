//! Fuzz target `token`: the access token format (`token::AccessToken::parse`,
//! `expose`, `Id::parse`) on arbitrary text and on arbitrary token parts.
#![no_main]

// Each target uses part of the shared input helpers.
#[allow(dead_code)]
mod common;

use libfuzzer_sys::fuzz_target;
use tokengate::token::{AccessToken, Id, PREFIX, TOKEN_LEN};

// The input is text as a client sends it; its first 64 bytes are also the
// parts of a token the gateway could have issued, and the next two a byte of
// that token to change and what to change it to.
fuzz_target!(|data: &[u8]| {
    text(common::utf8_prefix(data));
    if data.len() >= 66 {
        let mut identity = [0u8; 16];
        let mut token = [0u8; 16];
        let mut secret = [0u8; 32];
        identity.copy_from_slice(&data[..16]);
        token.copy_from_slice(&data[16..32]);
        secret.copy_from_slice(&data[32..64]);
        parts(identity, token, secret, Some((data[64], data[65])));
    }
});

fn text(s: &str) {
    if let Ok(t) = AccessToken::parse(s) {
        // The encoding is canonical (no padding, no stray trailing bits), so
        // an accepted string is the only spelling of its token: a store key
        // or revocation can never be reached by a second spelling.
        assert_eq!(t.expose(), s, "accepted token is not canonical");
        assert_eq!(s.len(), TOKEN_LEN);
        hides_secret(&t, s);
    }
    if let Some(id) = Id::parse(s) {
        // Any accepted spelling (any case, with or without dashes, braces,
        // urn:uuid:) names one id, whose two printed forms parse back to it.
        let shown = id.to_string();
        assert_eq!(Id::parse(&shown), Some(id));
        assert_eq!(Id::parse(&id.hex()), Some(id));
        assert_eq!(shown.len(), 36);
        assert_eq!(id.hex(), shown.replace('-', ""));
        assert_eq!(shown, shown.to_ascii_lowercase());
    }
}

fn parts(identity: [u8; 16], token: [u8; 16], secret: [u8; 32], flip: Option<(u8, u8)>) {
    let t = AccessToken::from_parts(Id(identity), Id(token), secret);
    let s = t.expose();
    assert_eq!(s.len(), TOKEN_LEN);
    assert!(s.starts_with(PREFIX));
    let back = AccessToken::parse(&s).expect("an exposed token parses");
    assert_eq!(back, t);
    assert_eq!(back.secret_hash(), t.secret_hash());
    hides_secret(&t, &s);
    if let Some((at, to)) = flip {
        let mut bytes = s.clone().into_bytes();
        let i = usize::from(at) % bytes.len();
        bytes[i] = to;
        if bytes != s.as_bytes() {
            // Any one changed byte is refused: by the prefix, the encoding
            // (the last character's two unused bits must be zero) or the
            // checksum.
            if let Ok(other) = std::str::from_utf8(&bytes) {
                if let Ok(u) = AccessToken::parse(other) {
                    panic!("one changed byte still parses: {other} -> {u:?}");
                }
            }
        }
    }
}

/// `Debug` and `Display` are what ends up in logs: the secret must have no
/// influence on them, so a token with every secret bit flipped prints the
/// same, and neither shows the token's body.
fn hides_secret(t: &AccessToken, exposed: &str) {
    let twin = AccessToken::from_parts(t.identity_id, t.token_id, flipped(t));
    assert_ne!(twin.secret_hash(), t.secret_hash());
    assert_eq!(format!("{t:?}"), format!("{twin:?}"));
    assert_eq!(format!("{t}"), format!("{twin}"));
    let body = &exposed[PREFIX.len()..];
    for shown in [format!("{t:?}"), format!("{t}")] {
        assert!(!shown.contains(body), "{shown} shows the token");
        assert!(shown.contains(&t.token_id.to_string()));
    }
}

/// The secret of `t` with every bit inverted, read back from its exposed
/// form (the secret itself is private to the token module).
fn flipped(t: &AccessToken) -> [u8; 32] {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&t.expose()[PREFIX.len()..])
        .expect("an exposed token is base64url");
    let mut secret = [0u8; 32];
    for (s, r) in secret.iter_mut().zip(&raw[32..64]) {
        *s = !r;
    }
    secret
}
