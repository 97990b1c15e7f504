//! Lookalike names (pure): which query parameters, headers, cookies, body
//! fields and path segments some framework could read as a project source.
//! A name matches when, after percent-decoding, Unicode compatibility folding
//! (fullwidth letters, the long s, the Kelvin sign), case folding and dropping
//! everything but ASCII letters and digits, it equals a source name; or when
//! one of its decorated parts does (`workspaceId[]`, `filter[workspaceId]`,
//! `workspaceId.`). Matching too much only makes the gateway stricter; matching
//! too little lets an upstream act on a project the gateway never checked.

use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;

/// The normalised names of every configured query, header and body source.
/// One set for all of them: an upstream that merges parameters from several
/// places does not care where a name came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameSet(Vec<String>);

impl NameSet {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> NameSet {
        let mut set: Vec<String> = names
            .into_iter()
            .map(fold)
            .filter(|n| !n.is_empty())
            .collect();
        set.sort();
        set.dedup();
        NameSet(set)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Does `raw` (a name as it arrived, possibly percent-encoded) name a project source?
    pub fn matches(&self, raw: &str) -> bool {
        if self.0.is_empty() {
            return false;
        }
        // Plain ASCII names (nearly all of them) are compared without allocating.
        if raw.is_ascii() && !raw.contains('%') {
            let any = |part: &str| self.0.iter().any(|n| ascii_fold_eq(part, n));
            return any(raw) || (raw.contains(is_decoration) && raw.split(is_decoration).any(any));
        }
        let decoded = percent_decode_fully(raw);
        if self.contains(&fold(&decoded)) {
            return true;
        }
        decoded
            .split(is_decoration)
            .any(|part| self.contains(&fold(part)))
    }

    /// Does `parent.key` (a key nested under another, as frameworks that
    /// flatten nested input name it) fold to a source name? The joined name
    /// folds to the two folded parts one after the other.
    pub fn matches_joined(&self, parent: &str, key: &str) -> bool {
        if parent.is_ascii() && key.is_ascii() {
            let joined = || {
                parent
                    .bytes()
                    .chain(key.bytes())
                    .filter(u8::is_ascii_alphanumeric)
                    .map(|b| b.to_ascii_lowercase())
            };
            return self.0.iter().any(|n| n.bytes().eq(joined()));
        }
        self.matches(&format!("{parent}.{key}"))
    }

    fn contains(&self, folded: &str) -> bool {
        !folded.is_empty() && self.0.iter().any(|n| n == folded)
    }
}

/// `fold(text) == folded` for ASCII `text` and a non-empty folded name,
/// without allocating.
pub fn ascii_fold_eq(text: &str, folded: &str) -> bool {
    !folded.is_empty() && ascii_folds_equal(text, folded)
}

/// `fold(x) == fold(y)` for ASCII `x` and `y`, without allocating.
fn ascii_folds_equal(x: &str, y: &str) -> bool {
    let (mut a, mut b) = (
        x.bytes().filter(u8::is_ascii_alphanumeric),
        y.bytes().filter(u8::is_ascii_alphanumeric),
    );
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p.eq_ignore_ascii_case(&q) => {}
            _ => return false,
        }
    }
}

/// The ways parsers split one `name=value` pair: at the first `=`, and, as
/// `qs` does for bracketed names, at a later `]=` (`filter=x[workspaceId]=p`
/// is the name `filter=x[workspaceId]` to it). Both readings are claims.
pub fn pair_readings(pair: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let first = match pair.iter().position(|b| *b == b'=') {
        Some(i) => (&pair[..i], &pair[i + 1..]),
        None => (pair, &b""[..]),
    };
    let bracketed = pair
        .windows(2)
        .position(|w| w == b"]=")
        .filter(|&i| i + 1 > first.0.len())
        .map(|i| (&pair[..i + 1], &pair[i + 2..]));
    std::iter::once(first).chain(bracketed)
}

/// Characters frameworks use to decorate or nest a name (`a[b]`, `a.b`,
/// `a:b`, `a(b)`), or at which a lenient parser stops reading one (`a b`).
fn is_decoration(c: char) -> bool {
    (c.is_ascii_punctuation() && c != '_' && c != '-') || c.is_whitespace()
}

/// Do a configured path literal and a request path segment name the same
/// thing to a lenient router? The segment is percent-decoded, both are
/// folded (case, `-`, `_`, `.`, spaces and invisible characters ignored),
/// and a file extension on the segment (`secrets.json`) is ignored too, as
/// routers with suffix matching do.
pub fn loosely_equal(literal: &str, segment: &str) -> bool {
    let segment = decode_lossy(segment, false);
    let same = |s: &str| {
        if s.is_ascii() && literal.is_ascii() {
            ascii_folds_equal(literal, s)
        } else {
            fold(literal) == fold(s)
        }
    };
    same(&segment) || segment.split_once('.').is_some_and(|(stem, _)| same(stem))
}

/// Folds a name to what a lenient framework would compare: compatibility
/// characters to their plain form, then upper and lower case together (so the
/// dotless i and the long s meet their ASCII letters as Java's
/// `equalsIgnoreCase` has them), keeping only ASCII letters and digits.
pub fn fold(name: &str) -> String {
    if name.is_ascii() {
        return name
            .bytes()
            .filter(u8::is_ascii_alphanumeric)
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect();
    }
    let mut out = String::with_capacity(name.len());
    for c in name.nfkc() {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            }
            continue;
        }
        for upper in c.to_uppercase() {
            for lower in upper.to_lowercase() {
                if lower.is_ascii_alphanumeric() {
                    out.push(lower);
                }
            }
        }
    }
    out
}

/// Percent-decodes until nothing changes (a few rounds at most), so a name
/// encoded twice is seen as a server that decodes twice would see it.
/// Invalid UTF-8 is replaced, never an error: this only decides matching.
fn percent_decode_fully(raw: &str) -> String {
    let mut cur = raw.to_string();
    for _ in 0..4 {
        let next = decode_lossy(&cur, false);
        if next == cur {
            break;
        }
        cur = next.into_owned();
    }
    cur
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
pub fn percent_decode(raw: &[u8]) -> Vec<u8> {
    decode(raw, false, false).unwrap_or_default()
}

/// Decodes `%XX` escapes, and `+` as a space when `plus` (form and query
/// text). A `%` not followed by two hex digits is `None` when `strict`, and
/// is kept as it is otherwise.
pub fn decode(raw: &[u8], plus: bool, strict: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => match raw.get(i + 1..i + 3).and_then(hex_byte) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None if strict => return None,
                None => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// `raw` percent-decoded (and `+` as a space when `plus`), invalid UTF-8
/// replaced; borrowed when there is nothing to decode.
pub fn decode_lossy(raw: &str, plus: bool) -> Cow<'_, str> {
    if !(raw.contains('%') || (plus && raw.contains('+'))) {
        return Cow::Borrowed(raw);
    }
    let bytes = decode(raw.as_bytes(), plus, false).unwrap_or_default();
    Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
}

/// The byte two ASCII hex digits spell.
pub fn hex_byte(h: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    match h {
        [a, b] => Some((digit(*a)? * 16 + digit(*b)?) as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> NameSet {
        NameSet::new(["workspaceId", "projectId", "x-project-id"])
    }

    #[test]
    fn plain_and_lookalike_names_match() {
        let s = set();
        for name in [
            "workspaceId",
            "WorkspaceId",
            "WORKSPACEID",
            "workspace_id",
            "workspace-id",
            "workspace.id",
            "workspaceId[]",
            "workspaceId[0]",
            "workspaceId[x]",
            "filter[workspaceId]",
            "a.b.workspaceId",
            "workspaceId.",
            "workspaceId%00",
            "workspace%49d",
            "workspace%2549d",
            "%77orkspaceId",
            "ｗｏｒｋｓｐａｃｅＩｄ",
            "workſpaceId",
            "project\u{0131}d",
            "X_Project_Id",
            "x-project-id",
            "xprojectid",
            "project_id",
            "workspaceId x",
            "workspaceId\tx",
        ] {
            assert!(s.matches(name), "{name} should match");
        }
    }

    #[test]
    fn other_names_do_not_match() {
        let s = set();
        for name in [
            "environment",
            "workspace",
            "project",
            "id",
            "myworkspaceId",
            "workspaceIds",
            "secretPath",
            "",
            "[]",
        ] {
            assert!(!s.matches(name), "{name} should not match");
        }
        assert!(!NameSet::new([]).matches("workspaceId"));
    }

    #[test]
    fn loose_segments() {
        for seg in [
            "secrets",
            "Secrets",
            "SE_CRETS",
            "secrets.json",
            "secrets%20",
            "secrets%E2%80%8B",
            "se-crets.x.y",
        ] {
            assert!(loosely_equal("secrets", seg), "{seg}");
        }
        for seg in ["secret", "secretsx", "x.secrets", "secrets%3Fx"] {
            assert!(!loosely_equal("secrets", seg), "{seg}");
        }
    }

    #[test]
    fn pair_splits() {
        let r: Vec<_> = pair_readings(b"filter=x[workspaceId]=p").collect();
        assert_eq!(
            r,
            [
                (&b"filter"[..], &b"x[workspaceId]=p"[..]),
                (&b"filter=x[workspaceId]"[..], &b"p"[..])
            ]
        );
        assert_eq!(pair_readings(b"a[b]=c").count(), 1);
        assert_eq!(
            pair_readings(b"a").collect::<Vec<_>>(),
            [(&b"a"[..], &b""[..])]
        );
    }

    #[test]
    fn joined_names() {
        let s = set();
        assert!(s.matches_joined("workspace", "id"));
        assert!(s.matches_joined("Project", "_Id"));
        assert!(s.matches_joined("ｗorkspace", "id"));
        assert!(!s.matches_joined("workspace", "name"));
        assert!(!s.matches_joined("data", "id"));
    }

    #[test]
    fn folding() {
        assert_eq!(fold("Work-Space_ID.x"), "workspaceidx");
        assert_eq!(fold("\u{212A}ey"), "key");
        assert_eq!(fold("İd"), "id");
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode(b"a%41%zz%4"), b"aA%zz%4");
        assert_eq!(hex_byte(b"fF"), Some(0xff));
        assert_eq!(hex_byte(b"g0"), None);
    }
}
