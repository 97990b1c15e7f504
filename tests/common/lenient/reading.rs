//! How a lenient reader finds project ids in a request's target and headers (pure): every reading of the target and of URL-override headers, the query split at `&` and `;`, lookalike header names, cookies split as legacy parsers split them; bodies are `body.rs`.
//!
//! Each function adds to one set, so the result is the union of readings:
//! a gateway is safe only if it verified everything in it.

use super::body::{body_json_claims, decode_wide, multipart_claims};
use std::collections::BTreeSet;

/// Query, form, multipart and JSON names that carry a project, normalised.
const FIELD_NAMES: [&str; 2] = ["workspaceid", "projectid"];
/// Header names that carry a project, normalised.
const HEADER_NAMES: [&str; 3] = ["xprojectid", "workspaceid", "projectid"];
/// The gateway's injected project header, normalised.
const INJECTED: &str = "xtokengateprojectid";
/// Headers that replace the request's URL for the app behind a proxy,
/// normalised: IIS URL Rewrite and Symfony (`X-Original-URL`,
/// `X-Rewrite-URL`), nginx `auth_request` setups (`X-Original-URI`), Traefik
/// (`X-Forwarded-Uri`), others (`X-Forwarded-Path`), Envoy
/// (`X-Envoy-Original-Path`).
const URL_OVERRIDES: [&str; 6] = [
    "xoriginalurl",
    "xrewriteurl",
    "xoriginaluri",
    "xforwardeduri",
    "xforwardedpath",
    "xenvoyoriginalpath",
];

/// Values of the injected project header under every spelling that normalises to it.
pub fn injected(headers: &[(String, Vec<u8>)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| normalise(n) == INJECTED)
        .map(|(_, v)| String::from_utf8_lossy(v).trim().to_string())
        .collect()
}

/// Every project id a lenient reader could find in a request with this
/// target, these headers and this (de-chunked) body.
pub fn claims(target: &str, headers: &[(String, Vec<u8>)], body: &[u8]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    target_claims(target, &mut out);
    let mut content_types = Vec::new();
    for (name, value) in headers {
        let n = normalise(name);
        let text = String::from_utf8_lossy(value);
        if HEADER_NAMES.contains(&n.as_str()) {
            add_values(&text, &mut out);
        }
        if URL_OVERRIDES.contains(&n.as_str()) {
            target_claims(&text, &mut out);
        }
        if n == "cookie" {
            cookie_claims(&text, &mut out);
        }
        if n == "contenttype" {
            content_types.push(text.into_owned());
        }
    }
    let folded = fold_bytes(body);
    let text = String::from_utf8_lossy(&folded).into_owned();
    body_json_claims(&folded, &mut out);
    form_claims(&text, &mut out);
    if let Some(wide) = decode_wide(&folded) {
        // A form in UTF-16 is as readable to a reader that decodes it.
        form_claims(&wide, &mut out);
    }
    multipart_claims(&folded, &content_types, &mut out);
    out
}

/// The path and query of every reading of a request target.
fn target_claims(target: &str, out: &mut BTreeSet<String>) {
    for reading in target_readings(target) {
        let (path, query) = reading.split_once('?').unwrap_or((&reading, ""));
        let path = if path.starts_with('/') || path.starts_with('\\') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        path_claims(&path, out);
        form_claims(query, out);
    }
}

/// A Cookie header split at `;` (RFC 6265), and also at `,` and whitespace
/// (Python's `SimpleCookie`, Tomcat's legacy parser); values as sent, without
/// quotes and percent-decoded (PHP decodes cookie values).
fn cookie_claims(value: &str, out: &mut BTreeSet<String>) {
    let strict = value.split(';');
    let legacy = value.split(|c: char| c == ';' || c == ',' || c.is_whitespace());
    for pair in strict.chain(legacy) {
        let Some((name, v)) = pair.split_once('=') else {
            continue;
        };
        let decoded = fold_text(&pct_decode(name.trim().as_bytes(), false));
        if names_project(name) || names_project(&decoded) {
            let v = v.trim();
            let unquoted = v.trim_matches('"');
            add_values(v, out);
            add_values(unquoted, out);
            add_values(&fold_text(&pct_decode(unquoted.as_bytes(), false)), out);
        }
    }
}

/// The origin-form readings of a request target: as sent, without tabs and
/// newlines, without a fragment, without a scheme (`xyz:/a`), without an
/// authority (`//h/a`).
fn target_readings(target: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    let whole = target.trim();
    // WHATWG URL parsers drop every ASCII tab and newline before parsing.
    let whatwg: String = whole
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .collect();
    let no_fragment = whole.split('#').next().unwrap_or_default();
    for t in [whole, &whatwg, no_fragment] {
        let schemeless = strip_scheme(t);
        for r in std::iter::once(t).chain(schemeless) {
            push(r);
            if let Some(rest) = r.strip_prefix("//") {
                push(after_authority(rest));
            }
            if let Some(rest) = r.strip_prefix('*') {
                push(rest);
            }
        }
    }
    out
}

fn strip_scheme(t: &str) -> Option<&str> {
    let colon = t.find(':')?;
    let scheme = &t[..colon];
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then(|| &t[colon + 1..])
}

fn after_authority(rest: &str) -> &str {
    match rest.find(['/', '?', '\\']) {
        Some(i) => &rest[i..],
        None => "/",
    }
}

/// Percent-decoding, `+` as space when `plus` (forms); malformed escapes stay as they are.
pub(super) fn pct_decode(s: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match s[i] {
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Overlong UTF-8 for `.` and `/` read as the ASCII they spell, as some
/// decoders do.
pub(super) fn fold_bytes(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        let (ascii, used) = match rest {
            [0xc0, 0xae, ..] => (Some(b'.'), 2),
            [0xc0, 0xaf, ..] => (Some(b'/'), 2),
            [0xe0, 0x80, 0xae, ..] => (Some(b'.'), 3),
            [0xe0, 0x80, 0xaf, ..] => (Some(b'/'), 3),
            _ => (None, 1),
        };
        out.push(ascii.unwrap_or(s[i]));
        i += used;
    }
    out
}

/// Bytes to text, fullwidth forms (`．`, `／`, `ｗ`) read as ASCII (NFKC does this).
pub(super) fn fold_text(s: &[u8]) -> String {
    String::from_utf8_lossy(&fold_bytes(s))
        .chars()
        .map(|c| match c as u32 {
            0xff01..=0xff5e => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Trimmed, lower case, without NULs and other controls, `_`, `-` and `.`.
pub(super) fn normalise(name: &str) -> String {
    name.trim()
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// True when `name`, its part before `[`, or any `[...]` inside it names a project field.
pub(super) fn names_project(name: &str) -> bool {
    let base = name.split('[').next().unwrap_or_default();
    let inner = name
        .split('[')
        .skip(1)
        .map(|p| p.split(']').next().unwrap_or_default());
    std::iter::once(name)
        .chain(std::iter::once(base))
        .chain(inner)
        .any(|c| FIELD_NAMES.contains(&normalise(c).as_str()))
}

/// Adds a value as read, trimmed, cut at the first control character, and
/// split at commas (several frameworks read `a,b` as a list).
pub(super) fn add_values(v: &str, out: &mut BTreeSet<String>) {
    let cut = v.split(|c: char| c.is_control()).next().unwrap_or_default();
    let mut all = vec![v, v.trim(), cut.trim()];
    all.extend(v.split(',').map(str::trim));
    out.extend(
        all.into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    );
}

fn path_claims(path: &str, out: &mut BTreeSet<String>) {
    let bytes = path.as_bytes();
    let is_sep = |c: char| c == '/' || c == '\\';
    // Split then decode each segment (a router), or decode then split (a
    // proxy or a normaliser in front of the router), once or twice.
    let split_then_decode: Vec<String> = path
        .split(is_sep)
        .map(|s| fold_text(&pct_decode(s.as_bytes(), false)))
        .collect();
    let once = fold_text(&pct_decode(bytes, false));
    let twice = fold_text(&pct_decode(&pct_decode(bytes, false), false));
    let readings = [
        split_then_decode,
        once.split(is_sep).map(str::to_string).collect(),
        twice.split(is_sep).map(str::to_string).collect(),
    ];
    for segments in readings {
        for strip_params in [false, true] {
            let mut resolved: Vec<&str> = Vec::new();
            for seg in &segments {
                let seg = if strip_params {
                    seg.split(';').next().unwrap_or_default()
                } else {
                    seg.as_str()
                };
                match seg {
                    "" | "." => {}
                    ".." => {
                        resolved.pop();
                    }
                    s => resolved.push(s),
                }
            }
            if let [api, version, kind, id, ..] = resolved.as_slice() {
                let (api, version, kind) = (loose(api), loose(version), loose(kind));
                let versioned = version.len() > 1
                    && version.starts_with('v')
                    && version[1..].bytes().all(|b| b.is_ascii_digit());
                if api == "api"
                    && versioned
                    && matches!(
                        kind.as_str(),
                        "projects" | "project" | "workspace" | "workspaces"
                    )
                {
                    add_values(id, out);
                    // The id as a router with suffix matching binds it
                    // (`p1.json` is `p1`), and without invisible characters.
                    let visible = visible(id);
                    add_values(&visible, out);
                    add_values(visible.split('.').next().unwrap_or_default(), out);
                }
            }
        }
    }
}

/// Unicode's default-ignorable code points (DerivedCoreProperties): soft
/// hyphen, zero-width space and joiners, direction marks, variation
/// selectors, the BOM, fillers. They render as nothing, and text cleaners
/// and identifier matchers drop them.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{061c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fff8}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// A decoded segment without invisible characters and surrounding whitespace.
fn visible(seg: &str) -> String {
    seg.chars()
        .filter(|&c| !is_invisible(c))
        .collect::<String>()
        .trim()
        .to_string()
}

/// A literal segment as a lenient router compares it to its templates:
/// visible characters only, trimmed, any file extension dropped
/// (`secrets.json` is `secrets` to routers with suffix matching), lower case.
fn loose(seg: &str) -> String {
    let visible = visible(seg);
    visible.split('.').next().unwrap_or_default().to_lowercase()
}

/// Query strings and urlencoded bodies: pairs split at `&` and `;`.
fn form_claims(s: &str, out: &mut BTreeSet<String>) {
    for pair in s.split(['&', ';']) {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        if names_project(&fold_text(&pct_decode(k.as_bytes(), true))) {
            add_values(&fold_text(&pct_decode(v.as_bytes(), true)), out);
        }
    }
}
