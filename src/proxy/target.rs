//! The request target and the request's text (pure): only targets the
//! gateway fully understands are accepted. Origin-form (`/path?query`), or
//! absolute-form `http(s)://authority/path` naming the gateway itself (the
//! authority is the request's `Host` or the address the connection arrived
//! on); `*`, authority-form and anything else (`xyz:/api/...`, `api/...`) is
//! refused, because Pingora forwards such targets as they are while the
//! gateway would have checked only a placeholder path. The query string may
//! not use `;` as a separator nor hold malformed or non-UTF-8 escapes or
//! control characters, no header value may hold control characters, and no
//! header may override the URL or method.

use super::names::{ascii_fold_eq, decode};
use super::path::{check_decoded_text, TextProblem};
use std::net::SocketAddr;
use std::ops::Range;

/// The path and query of an accepted target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The target was absolute-form: it is sent upstream in origin-form.
    pub absolute: bool,
}

impl Target<'_> {
    /// Where the path and query lie in `raw` (the target they were split
    /// from), so they can be read again without being copied.
    pub fn span(&self, raw: &[u8]) -> Span {
        let range = |s: &str| {
            let start = s.as_ptr() as usize - raw.as_ptr() as usize;
            start..start + s.len()
        };
        Span {
            path: range(self.path),
            query: self.query.map(range),
        }
    }
}

/// The place of an accepted target's path and query in the raw target: the
/// request path reads them again after it had to let go of the request
/// (to read its body), instead of copying them on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    path: Range<usize>,
    query: Option<Range<usize>>,
}

impl Span {
    pub fn path<'r>(&self, raw: &'r [u8]) -> &'r str {
        text(raw, &self.path)
    }

    pub fn query<'r>(&self, raw: &'r [u8]) -> Option<&'r str> {
        self.query.as_ref().map(|r| text(raw, r))
    }
}

/// The (ASCII, checked by `split`) text at `range`; empty if `raw` changed.
fn text<'r>(raw: &'r [u8], range: &Range<usize>) -> &'r str {
    raw.get(range.clone())
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

/// Splits the raw request target, or says why it is refused. `host` is the
/// request's Host header, `local` the address the connection arrived on.
pub fn split<'a>(
    raw: &'a [u8],
    host: Option<&[u8]>,
    local: Option<&SocketAddr>,
) -> Result<Target<'a>, &'static str> {
    if raw.iter().any(|&b| b <= b' ' || b >= 0x7f) {
        return Err("request target must be printable ASCII");
    }
    let text = std::str::from_utf8(raw).map_err(|_| "request target must be printable ASCII")?;
    let (path_and_query, absolute) = if text.starts_with('/') {
        (text, false)
    } else if let Some(rest) = strip_scheme(text) {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, pq) = rest.split_at(end);
        let own = !authority.is_empty()
            && !authority.contains('@')
            && (host.is_some_and(|h| authority.as_bytes().eq_ignore_ascii_case(h))
                || local.is_some_and(|l| authority.eq_ignore_ascii_case(&l.to_string())));
        if !own {
            return Err("an absolute request target must name this gateway");
        }
        if !pq.starts_with('/') {
            return Err("request target must have a path starting with '/'");
        }
        (pq, true)
    } else {
        return Err("request target must be a path starting with '/'");
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    Ok(Target {
        path,
        query,
        absolute,
    })
}

/// The rest of `http://...` or `https://...`, scheme matched case-insensitively.
fn strip_scheme(text: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = text.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &text[scheme.len()..])
    })
}

/// `Ok` for a query string every server splits and decodes the same way.
pub fn check_query(query: &str) -> Result<(), &'static str> {
    if query.contains(';') {
        return Err("query string must not contain ';' (some servers split on it)");
    }
    if query.bytes().any(|b| b < b' ' || b == 0x7f) {
        return Err("query string contains a control character");
    }
    for pair in query.split('&') {
        let name = pair.split('=').next().unwrap_or("");
        let decoded = decode(name.as_bytes(), true, true).unwrap_or_default();
        if overrides_method(&decoded) {
            return Err(
                "method override parameters (_method) are not accepted: send the method itself",
            );
        }
    }
    // Each name and value is checked decoded, as the upstream will see it.
    // Raw text was checked above; only escapes can bring in other bytes.
    for part in query.split(['&', '=']).filter(|p| p.contains('%')) {
        let decoded = decode(part.as_bytes(), true, true)
            .ok_or("query string has a malformed percent-encoding")?;
        let Ok(text) = std::str::from_utf8(&decoded) else {
            return Err("query string does not decode to valid UTF-8");
        };
        if check_decoded_text(text) == Err(TextProblem::Control) {
            return Err("query string contains a control character");
        }
    }
    Ok(())
}

/// Is `name` a parameter some frameworks read as the request's method
/// (Rails' and Laravel's `_method`, Express's `method-override` set up on a
/// query key, `X-HTTP-Method-Override` sent as a parameter)? Folded: case
/// ignored, `-` and `.` read as `_`. The gateway would have checked the
/// method it saw and the upstream run another.
pub fn overrides_method(name: &[u8]) -> bool {
    let folded: String = String::from_utf8_lossy(name)
        .trim()
        .chars()
        .map(|c| match c {
            '-' | '.' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let bare = folded.trim_start_matches('_');
    (folded.starts_with('_') && bare == "method")
        || bare.ends_with("method_override")
        || bare.ends_with("methodoverride")
        || bare.ends_with("http_method")
}

/// Headers some frameworks let replace the request's URL or method (IIS and
/// Symfony route on `X-Original-URL`, gunicorn trusts `SCRIPT_NAME` and
/// `PATH_INFO` from the proxy's address), folded as `proxy::names` folds
/// names: the gateway would have checked one resource and the upstream
/// served another.
const OVERRIDES: [&str; 10] = [
    "xoriginalurl",
    "xoriginaluri",
    "xrewriteurl",
    "xoverrideurl",
    "xforwardeduri",
    "xforwardedpath",
    "xenvoyoriginalpath",
    "xhttpmethodoverride",
    "xhttpmethod",
    "xmethodoverride",
];

/// Name endings that mark the same overrides under a prefix (`X-Script-Name`,
/// which the much-copied Flask `ReverseProxied` middleware strips off the path,
/// `X-Forwarded-Script-Name`, `HTTP_PATH_INFO`), and the path prefix some
/// middlewares also strip (`X-Forwarded-Prefix`).
const OVERRIDE_SUFFIXES: [&str; 3] = ["scriptname", "pathinfo", "forwardedprefix"];

/// Does ASCII `name`, folded, end with `suffix` (folded)? Without allocating.
fn ascii_fold_ends_with(name: &str, suffix: &str) -> bool {
    let mut folded = name
        .bytes()
        .rev()
        .filter(u8::is_ascii_alphanumeric)
        .map(|b| b.to_ascii_lowercase());
    suffix.bytes().rev().all(|s| folded.next() == Some(s))
}

/// `Ok` when no header rewrites the URL or method and no header value holds
/// a control character other than tab.
pub fn check_headers<'h>(
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
) -> Result<(), &'static str> {
    for (name, value) in headers {
        if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err("a header value contains a control character");
        }
        // Header names are ASCII (the parser admits nothing else).
        if OVERRIDES.iter().any(|o| ascii_fold_eq(name, o))
            || OVERRIDE_SUFFIXES
                .iter()
                .any(|s| ascii_fold_ends_with(name, s))
        {
            return Err("headers that override the URL or method (X-Original-URL, X-Rewrite-URL, X-HTTP-Method-Override) are not accepted");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn method_override_names_in_any_spelling() {
        for name in [
            "_method",
            "_METHOD",
            "__method",
            "-method",
            " _method ",
            "x-http-method-override",
            "X_Method_Override",
            "http_method",
            "methodOverride",
            "X-HTTP-Method",
            "x.http.method",
        ] {
            assert!(overrides_method(name.as_bytes()), "{name}");
        }
        for name in [
            "method",
            "Method",
            "payment_method",
            "methods",
            "_methods",
            "x",
        ] {
            assert!(!overrides_method(name.as_bytes()), "{name}");
        }
        assert!(check_query("a=1&_method=DELETE").is_err());
        assert!(check_query("a=1&%5Fmethod=DELETE").is_err());
        assert!(check_query("method=card&payment_method=x").is_ok());
    }

    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    fn ok(raw: &str) -> Target<'_> {
        split(raw.as_bytes(), Some(b"gw.local:8080"), Some(&local())).unwrap()
    }

    fn refused(raw: &[u8]) -> bool {
        split(raw, Some(b"gw.local:8080"), Some(&local())).is_err()
    }

    #[test]
    fn origin_form() {
        let t = ok("/api/v3/secrets/raw?workspaceId=p1");
        assert_eq!(t.path, "/api/v3/secrets/raw");
        assert_eq!(t.query, Some("workspaceId=p1"));
        assert!(!t.absolute);
        assert_eq!(ok("/").query, None);
        assert_eq!(ok("/x?").query, Some(""));
    }

    #[test]
    fn spans_read_the_same_text_again() {
        for raw in ["/api/x?a=1", "/", "/x?", "http://gw.local:8080/a?b=c"] {
            let t = ok(raw);
            let span = t.span(raw.as_bytes());
            assert_eq!(span.path(raw.as_bytes()), t.path, "{raw}");
            assert_eq!(span.query(raw.as_bytes()), t.query, "{raw}");
        }
    }

    #[test]
    fn absolute_form_naming_the_gateway() {
        let t = ok("http://gw.local:8080/api/x?a=1");
        assert_eq!((t.path, t.query, t.absolute), ("/api/x", Some("a=1"), true));
        assert_eq!(ok("HTTPS://GW.LOCAL:8080/a").path, "/a");
        assert_eq!(ok("http://127.0.0.1:8080/a").path, "/a");
    }

    #[test]
    fn other_targets_are_refused() {
        for raw in [
            &b"xyz:/api/v1/projects/p-other/secrets"[..],
            b"api/v1/projects/p-other/secrets",
            b"*",
            b"gw.local:8080",
            b"http://evil.example/api/v1/projects/p-other",
            b"http://gw.local:8080@evil/api",
            b"http://user@gw.local:8080/api",
            b"http://gw.local:8080",
            b"http://gw.local:8080?a=1",
            b"ftp://gw.local:8080/a",
            b"//gw.local:8080/a/../b",
            b"/a\xef\xbc\x8e",
            b"/a\x00b",
            b"",
        ] {
            // `//host/...` is origin-form; its empty segment is refused by the path check.
            if raw.starts_with(b"//") {
                assert!(super::super::path::check(ok("//gw.local:8080/a/../b").path).is_err());
                continue;
            }
            assert!(refused(raw), "{}", String::from_utf8_lossy(raw));
        }
        assert!(split(b"http://gw.local:8080/a", None, None).is_err());
    }

    #[test]
    fn queries() {
        for q in [
            "a=1&b=2",
            "workspaceId=p1",
            "a=%20b&c=d+e",
            "",
            "x",
            "a=caf%C3%A9",
        ] {
            assert_eq!(check_query(q), Ok(()), "{q}");
        }
        for q in [
            "a=1;workspaceId=p2",
            "a=%zz",
            "a=%2",
            "workspaceId%00=p",
            "a=%0a",
            "a=%c0%ae",
            "a=%ff",
            "a=%c2%85",
            "a=\u{1}",
        ] {
            assert!(check_query(q).is_err(), "{q}");
        }
    }

    #[test]
    fn headers() {
        assert!(check_headers([("a", &b"a\tb"[..]), ("b", b"caf\xc3\xa9")]).is_ok());
        assert!(check_headers([("a", &b"a\x00b"[..])]).is_err());
        assert!(check_headers([("a", &b"a\x7f"[..])]).is_err());
        for name in [
            "x-original-url",
            "X-Rewrite-URL",
            "x_original_url",
            "x-http-method-override",
            "X-Method-Override",
            "SCRIPT_NAME",
            "script-name",
            "PATH_INFO",
            "X-Script-Name",
            "x-forwarded-script-name",
            "X-Forwarded-Prefix",
            "http_path_info",
        ] {
            assert!(check_headers([(name, &b"/x"[..])]).is_err(), "{name}");
        }
        assert!(check_headers([("x-original-host", &b"x"[..])]).is_ok());
    }
}
