//! Request paths the gateway and the upstream could read differently are
//! refused before routing (pure): dot segments, empty segments, backslashes,
//! `;` path parameters (`..;`), percent-encodings of characters that need
//! none (`%2e`, `%69`) or that change the structure (`%2f`, `%5c`, `%25`,
//! `%3b`), encodings that do not decode to valid UTF-8 (overlong `%c0%ae`),
//! control characters, and non-ASCII lookalikes of ASCII (fullwidth `．`,
//! `／`, letters). Otherwise a path could pass a public-route or project
//! check here and mean another resource upstream.

use super::names::hex_byte;
use unicode_normalization::UnicodeNormalization;

/// `Ok` for a canonical path, or why it is refused.
pub fn check(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("request path must start with '/'");
    }
    if path.contains('\\') {
        return Err("request path must not contain '\\'");
    }
    if path.contains(';') {
        return Err("request path must not contain ';' (path parameters)");
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
    // Printable ASCII without escapes (nearly every path) decodes to itself:
    // none of the checks below can fail on it, and nothing is copied.
    if bytes
        .iter()
        .all(|&b| b != b'%' && (0x21..0x7f).contains(&b))
    {
        return Ok(());
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let Some(c) = bytes.get(i + 1..i + 3).and_then(hex_byte) else {
                return Err("request path has a malformed percent-encoding");
            };
            if c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'-' | b'.' | b'_' | b'~' | b'/' | b'\\' | b'%' | b';' | b'?' | b'#'
                )
            {
                return Err("request path percent-encodes a character that must be sent as is");
            }
            decoded.push(c);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    let Ok(decoded) = std::str::from_utf8(&decoded) else {
        return Err("request path does not decode to valid UTF-8");
    };
    if decoded.chars().any(is_invisible) {
        return Err("request path contains an invisible character");
    }
    check_decoded_text(decoded).map_err(|why| match why {
        TextProblem::Control => "request path contains a control character",
        TextProblem::Lookalike => {
            "request path contains a non-ASCII lookalike of an ASCII character"
        }
    })
}

/// Format characters that render as nothing (soft hyphen, zero-width space
/// and joiners, direction marks, the BOM): servers that strip them would
/// read `fol\u{200b}ders` as `folders`.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
    )
}

/// Why decoded text is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TextProblem {
    Control,
    Lookalike,
}

/// Decoded text may hold neither control characters (C0, DEL, C1) nor
/// non-ASCII characters whose compatibility form contains ASCII (fullwidth
/// `．` and `／`, the one-dot leader, fullwidth letters): servers that
/// normalise Unicode would read those as the ASCII they resemble.
pub fn check_decoded_text(text: &str) -> Result<(), TextProblem> {
    for c in text.chars() {
        if c.is_control() {
            return Err(TextProblem::Control);
        }
        if !c.is_ascii() && std::iter::once(c).nfkc().any(|n| n.is_ascii()) {
            return Err(TextProblem::Lookalike);
        }
    }
    Ok(())
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
            "/v1/a.b/..c",
            "/caf%C3%A9",
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
            "/public/..;/api/v1/projects/p/secrets",
            "/public;x=1/a",
            "/public/%3b/a",
            "/public/%c0%ae%c0%ae/api",
            "/public/%e0%80%ae/api",
            "/public/%ff/api",
            "/public/%ef%bc%8e%ef%bc%8e/api",
            "/public/%ef%bc%8fapi",
            "/public/%e2%80%a4%e2%80%a4/api",
            "/%EF%BC%A1PI/v1",
            "/a%00b",
            "/a%0ab",
            "/a%7fb",
            "/a%c2%85b",
            "/x%3Fy",
            "/x%23y",
            "/api/v1/fol%E2%80%8Bders",
            "/api/v1/folders%C2%AD",
        ] {
            assert!(check(p).is_err(), "{p} should be refused");
        }
    }
}
