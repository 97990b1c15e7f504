//! Request ids: the client's `X-Request-Id` when it is one that can be
//! passed on safely, otherwise a fresh one. The id goes upstream, into error
//! bodies (`reqId`), into log lines and back to the client.

use http::HeaderMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

pub const HEADER: &str = "x-request-id";
/// The longest id taken from a client.
pub const MAX_LEN: usize = 128;

/// Whether a client's id is kept: 1 to 128 of `[A-Za-z0-9._:-]`, so it is
/// safe in a header, a log line and JSON as it is, and nothing the log
/// redaction would hide (an access token fits that alphabet): the id in the
/// logs must be the one the client and the upstream see, and a token must
/// not travel upstream disguised as an id.
pub fn acceptable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        && std::str::from_utf8(id)
            .is_ok_and(|s| matches!(crate::logging::redact(s), std::borrow::Cow::Borrowed(_)))
}

/// The request's id: its one acceptable `X-Request-Id`, else a fresh one
/// (also when it sent several: which one would the upstream read?).
pub fn of_request(headers: &HeaderMap) -> String {
    let mut sent = headers.get_all(HEADER).iter();
    match (sent.next(), sent.next()) {
        (Some(id), None) if acceptable(id.as_bytes()) => {
            String::from_utf8_lossy(id.as_bytes()).into_owned()
        }
        _ => fresh(),
    }
}

/// A fresh id, "req-" and 16 hex digits: a random start for this process,
/// counted up, so ids do not repeat within a process and rarely across
/// processes, without asking the OS for randomness per request.
pub fn fresh() -> String {
    static START: LazyLock<u64> = LazyLock::new(|| {
        let mut b = [0u8; 8];
        crate::token::fill_random(&mut b);
        u64::from_le_bytes(b)
    });
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = START.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    format!("req-{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(HEADER, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_clients_plain_id_is_kept() {
        assert_eq!(of_request(&headers(&["abc-123_x.y:z"])), "abc-123_x.y:z");
        let long = "a".repeat(MAX_LEN);
        assert_eq!(of_request(&headers(&[&long])), long);
    }

    #[test]
    fn anything_else_gets_a_fresh_id() {
        for sent in [
            vec![],
            vec![""],
            vec!["has space"],
            vec!["quote\"d"],
            vec!["a/b"],
            vec!["é"],
            vec!["one", "two"],
        ] {
            let id = of_request(&headers(&sent));
            assert!(id.starts_with("req-") && id.len() == 20, "{sent:?} -> {id}");
        }
        let too_long = "a".repeat(MAX_LEN + 1);
        assert!(of_request(&headers(&[&too_long])).starts_with("req-"));
        // An access token fits the alphabet, in any case of its prefix.
        let token = crate::token::AccessToken::generate(crate::token::Id::random()).expose();
        for disguised in [
            token.clone(),
            token.replacen("tgat_", "TGAT_", 1),
            format!("trace:{token}"),
            // Without its prefix, and the part that holds the secret alone.
            token["tgat_".len()..].to_string(),
            token["tgat_".len() + 43..].to_string(),
        ] {
            assert!(
                of_request(&headers(&[&disguised])).starts_with("req-"),
                "{disguised}"
            );
        }
    }

    #[test]
    fn fresh_ids_do_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| fresh()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
