//! Request paths the gateway and the upstream could read differently are
//! refused before routing (pure): dot segments, empty segments, backslashes,
//! and percent-encodings of characters that need none (`%2e`, `%69`) or that
//! change the structure (`%2f`, `%5c`, `%25`). Otherwise a path could pass a
//! public-route or project check here and mean another resource upstream.

/// `Ok` for a canonical path, or why it is refused.
pub fn check(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("request path must start with '/'");
    }
    if path.contains('\\') {
        return Err("request path must not contain '\\'");
    }
    let body = path.strip_prefix('/').unwrap_or(path);
    let body = body.strip_suffix('/').unwrap_or(body);
    if !body.is_empty() {
        for seg in body.split('/') {
            if seg.is_empty() {
                return Err("request path must not contain empty segments ('//')");
            }
            if seg == "." || seg == ".." {
                return Err("request path must not contain '.' or '..' segments");
            }
        }
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let Some(c) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                return Err("request path has a malformed percent-encoding");
            };
            if c.is_ascii_alphanumeric()
                || matches!(c, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\' | b'%')
            {
                return Err("request path percent-encodes a character that must be sent as is");
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// True when `path` is `prefix` or below it, segment by segment
/// (`/public` covers `/public` and `/public/x`, not `/publicity`).
pub fn is_under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass() {
        for p in [
            "/",
            "/api/v3/secrets/raw",
            "/api/v1/projects/p-1.a_b~/x/",
            "/a%20b",
            "/x%3Fy",
            "/v1/a.b/..c",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for p in [
            "/public/../api/v1/identities",
            "/public/%2e%2e/admin",
            "/public/..%2fadmin",
            "/public\\..\\x",
            "/api/v1//projects/secret",
            "/./api",
            "/api/v1/%69dentities",
            "/api/v1/auth/token-auth%2Fidentities",
            "/a/%2",
            "/a/%zz",
            "/a%252e",
            "relative",
            "/api/v1/projects/proj1/../secret/x",
        ] {
            assert!(check(p).is_err(), "{p} should be refused");
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(is_under("/public", "/public"));
        assert!(is_under("/public/x", "/public"));
        assert!(!is_under("/publicXYZ/secret", "/public"));
        assert!(is_under("/public/x", "/public/"));
        assert!(!is_under("/other", "/public"));
    }
}
