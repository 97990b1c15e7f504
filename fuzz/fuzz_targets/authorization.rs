//! Fuzz target `authorization`: an `Authorization` header value read as the
//! proxy reads it (`http::HeaderValue`, `token::bearer`,
//! `AccessToken::parse`) and as the management API compares the admin key
//! (`api::admin_key_hash`, `api::is_admin_key`).
#![no_main]

// Each target uses part of the shared input helpers.
#[allow(dead_code)]
mod common;

use libfuzzer_sys::fuzz_target;
use tokengate::api::{admin_key_hash, is_admin_key};
use tokengate::token::{bearer, AccessToken};

struct Input<'a> {
    /// The configured admin key.
    key: &'a str,
    /// The header value's bytes as they arrive.
    header: &'a [u8],
    /// Upper or lower case for each letter of a respelled `Bearer`.
    case: u8,
}

// Fields: admin key, header value (the rest).
fuzz_target!(|data: &[u8]| {
    let mut f = common::Fields::new(data);
    let key = f.text();
    let header = f.rest();
    let input = Input {
        key,
        header,
        case: (key.len() ^ header.len()) as u8,
    };
    let Ok(value) = http::HeaderValue::from_bytes(input.header) else {
        return;
    };
    // The proxy treats a value that is not visible ASCII as malformed.
    let Ok(text) = value.to_str() else {
        return;
    };
    if let Some(cred) = bearer(text) {
        assert!(!cred.is_empty());
        assert_eq!(cred, cred.trim(), "credential keeps surrounding spaces");
        assert!(text.contains(cred));
        let trimmed = text.trim();
        assert!(trimmed.len() > 6 && trimmed[..6].eq_ignore_ascii_case("bearer"));
        assert_eq!(&trimmed[6..7], " ", "scheme must be followed by a space");
        // Whoever re-sends the credential under any spelling of the scheme
        // is read the same way.
        let scheme: String = "Bearer"
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if input.case >> i & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        assert_eq!(bearer(&format!("{scheme} {cred}")), Some(cred));
        assert_eq!(bearer(&format!("  {scheme}   {cred}  ")), Some(cred));
        if let Ok(t) = AccessToken::parse(cred) {
            assert_eq!(t.expose(), cred);
        }
    }

    let hash = admin_key_hash(input.key);
    assert_eq!(hash.is_none(), input.key.is_empty());
    assert!(!is_admin_key(hash.as_ref(), None));
    assert!(!is_admin_key(None, Some(text)));
    // The admin key matches exactly the values whose credential is the key:
    // no prefix, no other case, no empty key matching an empty bearer.
    let matches = is_admin_key(hash.as_ref(), Some(text));
    let expected = !input.key.is_empty() && bearer(text) == Some(input.key);
    assert_eq!(matches, expected, "header {text:?} key {:?}", input.key);
    if !input.key.is_empty() && input.key.trim() == input.key {
        assert!(is_admin_key(
            hash.as_ref(),
            Some(&format!("Bearer {}", input.key))
        ));
    }
});
