//! How a lenient reader finds project ids in a request (pure): every reading of the target, the query split at `&` and `;`, lookalike header names, and bodies read as JSON, form and multipart whatever their Content-Type.
//!
//! Each function adds to one set, so the result is the union of readings:
//! a gateway is safe only if it verified everything in it.

use std::collections::BTreeSet;

/// Query, form, multipart and JSON names that carry a project, normalised.
const FIELD_NAMES: [&str; 2] = ["workspaceid", "projectid"];
/// Header names that carry a project, normalised.
const HEADER_NAMES: [&str; 3] = ["xprojectid", "workspaceid", "projectid"];
/// The gateway's injected project header, normalised.
const INJECTED: &str = "xtokengateprojectid";

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
    for reading in target_readings(target) {
        let (path, query) = reading.split_once('?').unwrap_or((&reading, ""));
        let path = if path.starts_with('/') || path.starts_with('\\') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        path_claims(&path, &mut out);
        form_claims(query, &mut out);
    }
    let mut content_types = Vec::new();
    for (name, value) in headers {
        let n = normalise(name);
        if HEADER_NAMES.contains(&n.as_str()) {
            add_values(&String::from_utf8_lossy(value), &mut out);
        }
        if n == "contenttype" {
            content_types.push(String::from_utf8_lossy(value).into_owned());
        }
    }
    let text = String::from_utf8_lossy(&fold_bytes(body)).into_owned();
    json_claims(&text, &mut out);
    form_claims(&text, &mut out);
    multipart_claims(&text, &content_types, &mut out);
    out
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
fn pct_decode(s: &[u8], plus: bool) -> Vec<u8> {
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
fn fold_text(s: &[u8]) -> String {
    String::from_utf8_lossy(&fold_bytes(s))
        .chars()
        .map(|c| match c as u32 {
            0xff01..=0xff5e => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Trimmed, lower case, without NULs and other controls, `_`, `-` and `.`.
fn normalise(name: &str) -> String {
    name.trim()
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// True when `name`, its part before `[`, or any `[...]` inside it names a project field.
fn names_project(name: &str) -> bool {
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
fn add_values(v: &str, out: &mut BTreeSet<String>) {
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
                let kind = kind.to_ascii_lowercase();
                let versioned = version.len() > 1
                    && version.starts_with(['v', 'V'])
                    && version[1..].bytes().all(|b| b.is_ascii_digit());
                if api.eq_ignore_ascii_case("api")
                    && versioned
                    && matches!(
                        kind.as_str(),
                        "projects" | "project" | "workspace" | "workspaces"
                    )
                {
                    add_values(id, out);
                }
            }
        }
    }
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

/// A JSON string starting at `chars[start] == '"'`: its text and the index
/// after the closing quote (or the end).
fn json_string(chars: &[char], start: usize) -> (String, usize) {
    let mut s = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' => return (s, i + 1),
            '\\' => {
                let esc = chars.get(i + 1).copied().unwrap_or('\\');
                i += 2;
                match esc {
                    'b' => s.push('\u{8}'),
                    'f' => s.push('\u{c}'),
                    'n' => s.push('\n'),
                    'r' => s.push('\r'),
                    't' => s.push('\t'),
                    'u' => {
                        let hex: String = chars.iter().skip(i).take(4).collect();
                        let unit = u32::from_str_radix(&hex, 16).unwrap_or(0xfffd);
                        i += hex.len();
                        let low = chars.get(i..i + 6).map(|c| c.iter().collect::<String>());
                        let pair = low.as_deref().and_then(|l| l.strip_prefix("\\u"));
                        let low = pair.and_then(|l| u32::from_str_radix(l, 16).ok());
                        let c = match (unit, low) {
                            (0xd800..=0xdbff, Some(lo @ 0xdc00..=0xdfff)) => {
                                i += 6;
                                char::from_u32(0x10000 + ((unit - 0xd800) << 10) + (lo - 0xdc00))
                            }
                            _ => char::from_u32(unit),
                        };
                        s.push(c.unwrap_or('\u{fffd}'));
                    }
                    other => s.push(other),
                }
                continue;
            }
            c => s.push(c),
        }
        i += 1;
    }
    (s, chars.len())
}

fn skip_ws(chars: &[char], mut i: usize) -> usize {
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    i
}

/// Every `"key": "value"` (or `"key": ["v", ...]`) at any depth, every
/// occurrence, whether or not the whole text is valid JSON.
fn json_claims(text: &str, out: &mut BTreeSet<String>) {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '"' {
            i += 1;
            continue;
        }
        let (key, end) = json_string(&chars, i);
        let colon = skip_ws(&chars, end);
        if chars.get(colon) == Some(&':') && names_project(&key) {
            let mut j = skip_ws(&chars, colon + 1);
            match chars.get(j) {
                Some('"') => add_values(&json_string(&chars, j).0, out),
                Some('[') => {
                    j = skip_ws(&chars, j + 1);
                    while chars.get(j) == Some(&'"') {
                        let (v, after) = json_string(&chars, j);
                        add_values(&v, out);
                        j = skip_ws(&chars, after);
                        if chars.get(j) != Some(&',') {
                            break;
                        }
                        j = skip_ws(&chars, j + 1);
                    }
                }
                _ => {}
            }
        }
        // Values are strings too: scanning resumes right after the key.
        i = end;
    }
}

/// The value of parameter `param` in a header-like `a; b=c; d="e"` text.
fn param<'a>(text: &'a str, param: &str) -> Option<&'a str> {
    text.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(param)
            .then(|| v.trim().trim_matches('"'))
    })
}

fn multipart_claims(text: &str, content_types: &[String], out: &mut BTreeSet<String>) {
    let mut boundaries: Vec<String> = content_types
        .iter()
        .filter_map(|ct| param(ct, "boundary"))
        .map(str::to_string)
        .collect();
    // A body that starts like multipart names its own boundary.
    if let Some(first) = text.trim_start().lines().next() {
        if let Some(b) = first.strip_prefix("--") {
            boundaries.push(b.trim_end().to_string());
        }
    }
    for boundary in boundaries.iter().filter(|b| !b.is_empty()) {
        for part in text.split(&format!("--{boundary}")).skip(1) {
            let part = part.trim_start_matches(['\r', '\n']);
            let split = part
                .find("\r\n\r\n")
                .map(|i| (i, i + 4))
                .or_else(|| part.find("\n\n").map(|i| (i, i + 2)));
            let Some((head_end, content_start)) = split else {
                continue;
            };
            let content = part[content_start..].trim_end_matches(['\r', '\n']);
            for line in part[..head_end].lines() {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                if normalise(name) != "contentdisposition" {
                    continue;
                }
                let field = param(value, "name").map(str::to_string).or_else(|| {
                    param(value, "name*").map(|v| {
                        let v = v.rsplit("''").next().unwrap_or(v);
                        fold_text(&pct_decode(v.as_bytes(), false))
                    })
                });
                if field.as_deref().is_some_and(names_project) {
                    add_values(content, out);
                }
            }
        }
    }
}
