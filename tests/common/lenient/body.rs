//! How a lenient reader finds project ids in a body (pure): JSON scanned at any depth (flattening `{"workspace":{"id":..}}` to `workspace.id`), JSON in UTF-16 or UTF-32 detected as Python's and Jackson's readers do, and multipart read with every boundary and part name some parser would take.
//!
//! Nothing here needs the body to be valid: a reader that guesses finds
//! more, and the union of guesses is what the gateway must have verified.

use super::reading::{add_values, fold_text, names_project, normalise, pct_decode};
use std::collections::BTreeSet;

/// Text of a JSON body in UTF-16 or UTF-32, detected from a byte order mark
/// or, without one, from where the NULs of the first four bytes are (the rule
/// of RFC 4627 section 3, which `json.loads(bytes)` and Jackson apply: JSON
/// text starts with two ASCII characters). None for UTF-8, which needs no
/// decoding.
pub(super) fn decode_wide(b: &[u8]) -> Option<String> {
    enum Wide {
        Utf16 { big: bool },
        Utf32 { big: bool },
    }
    // Longest marks first: the UTF-32LE mark starts with the UTF-16LE one.
    let (kind, skip) = match b {
        [0, 0, 0xfe, 0xff, ..] => (Wide::Utf32 { big: true }, 4),
        [0xff, 0xfe, 0, 0, ..] => (Wide::Utf32 { big: false }, 4),
        [0xfe, 0xff, ..] => (Wide::Utf16 { big: true }, 2),
        [0xff, 0xfe, ..] => (Wide::Utf16 { big: false }, 2),
        [0, 0, _, _, ..] => (Wide::Utf32 { big: true }, 0),
        [0, _, _, _, ..] => (Wide::Utf16 { big: true }, 0),
        [_, 0, 0, 0, ..] => (Wide::Utf32 { big: false }, 0),
        [_, 0, _, _, ..] => (Wide::Utf16 { big: false }, 0),
        _ => return None,
    };
    let rest = &b[skip..];
    Some(match kind {
        Wide::Utf16 { big } => {
            let units = rest.chunks_exact(2).map(|c| {
                let pair = [c[0], c[1]];
                if big {
                    u16::from_be_bytes(pair)
                } else {
                    u16::from_le_bytes(pair)
                }
            });
            char::decode_utf16(units)
                .map(|c| c.unwrap_or('\u{fffd}'))
                .collect()
        }
        Wide::Utf32 { big } => rest
            .chunks_exact(4)
            .map(|c| {
                let quad = [c[0], c[1], c[2], c[3]];
                let n = if big {
                    u32::from_be_bytes(quad)
                } else {
                    u32::from_le_bytes(quad)
                };
                char::from_u32(n).unwrap_or('\u{fffd}')
            })
            .collect(),
    })
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

/// An open `{` or `[` while scanning, with the key it sits under (what
/// frameworks that flatten nested input put in front of its keys; arrays
/// pass it on, as `{"project":[{"Id":..}]}` binds like `project.Id`).
struct Frame {
    parent: Option<String>,
    /// For an object, the key of the member being read.
    key: Option<String>,
    object: bool,
}

/// Every `"key": "value"` (or `"key": ["v", ...]`) at any depth, every
/// occurrence, whether or not the whole text is valid JSON (`NaN`, `1e999999`
/// and other tokens a strict parser refuses are stepped over). A key counts
/// alone or joined to the key its object sits under (`workspace` + `id`).
pub(super) fn json_claims(text: &str, out: &mut BTreeSet<String>) {
    let chars: Vec<char> = text.chars().collect();
    // One frame per unclosed bracket: bounded by the text's length.
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            c @ ('{' | '[') => {
                let parent = stack.last().and_then(|f| {
                    if f.object {
                        f.key.clone()
                    } else {
                        f.parent.clone()
                    }
                });
                stack.push(Frame {
                    parent,
                    key: None,
                    object: c == '{',
                });
                i += 1;
            }
            '}' | ']' => {
                stack.pop();
                i += 1;
            }
            ',' => {
                if let Some(f) = stack.last_mut() {
                    f.key = None;
                }
                i += 1;
            }
            '"' => {
                let (key, end) = json_string(&chars, i);
                let colon = skip_ws(&chars, end);
                if chars.get(colon) == Some(&':') {
                    let parent = stack.last().and_then(|f| f.parent.as_deref());
                    let flat = parent.map(|p| format!("{p}.{key}"));
                    if names_project(&key) || flat.as_deref().is_some_and(names_project) {
                        json_value(&chars, colon + 1, out);
                    }
                    if let Some(f) = stack.last_mut() {
                        f.key = Some(key);
                    }
                }
                // Values are strings too: scanning resumes right after the key.
                i = end;
            }
            _ => i += 1,
        }
    }
}

/// The value at `chars[at..]` of a project-named key: a string, or an array of strings.
fn json_value(chars: &[char], at: usize, out: &mut BTreeSet<String>) {
    let mut j = skip_ws(chars, at);
    match chars.get(j) {
        Some('"') => add_values(&json_string(chars, j).0, out),
        Some('[') => {
            j = skip_ws(chars, j + 1);
            while chars.get(j) == Some(&'"') {
                let (v, after) = json_string(chars, j);
                add_values(&v, out);
                j = skip_ws(chars, after);
                if chars.get(j) != Some(&',') {
                    break;
                }
                j = skip_ws(chars, j + 1);
            }
        }
        _ => {}
    }
}

/// JSON bytes read as UTF-8 (most parsers), and as UTF-16 or UTF-32 when
/// their first bytes say so (`json.loads(bytes)`, Jackson).
pub(super) fn body_json_claims(body: &[u8], out: &mut BTreeSet<String>) {
    json_claims(&String::from_utf8_lossy(body), out);
    if let Some(wide) = decode_wide(body) {
        json_claims(&wide, out);
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

/// Every value some parser could give parameter `name` (lowercase) of a
/// header-like text: the plain reading; each `name=` anywhere (a
/// regex-based parser finds the second of `boundary=a, boundary=b`), cut
/// where a token ends (Werkzeug reads `a` from `a b`, `a, ...`, `a"b`) or
/// with stray quotes dropped; and `name*=charset''pct` decoded (RFC 2231,
/// which Werkzeug prefers over the plain `name`).
fn param_readings(text: &str, name: &str) -> Vec<String> {
    let mut out: Vec<String> = param(text, name).map(str::to_string).into_iter().collect();
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    // Each pass moves `from` past one occurrence of `name`.
    while let Some(at) = lower[from..].find(name) {
        let start = from + at;
        from = start + name.len();
        let word_start = lower[..start]
            .chars()
            .next_back()
            .is_none_or(|c| matches!(c, ';' | ',') || c.is_whitespace());
        if !word_start {
            continue; // `filename` is not `name`
        }
        let rest = &text[from..];
        let (starred, rest) = match rest.strip_prefix('*') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let Some(value) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        let value = value.split(';').next().unwrap_or_default().trim();
        if starred {
            let encoded = value.trim_matches('"');
            let encoded = encoded.rsplit("''").next().unwrap_or(encoded);
            out.push(fold_text(&pct_decode(encoded.as_bytes(), false)));
            continue;
        }
        out.push(value.trim_matches('"').to_string());
        let unquoted = value.strip_prefix('"').unwrap_or(value);
        let token_end = unquoted
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | '"' | ';'))
            .unwrap_or(unquoted.len());
        out.push(unquoted[..token_end].to_string());
        out.push(value.replace('"', ""));
    }
    out.retain(|v| !v.is_empty());
    out.sort();
    out.dedup();
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Every part of a multipart body under every boundary some parser could
/// take (from each Content-Type, or the body's own first line), with CRLF or
/// bare LF line ends and any preamble. A part named like a project field is
/// a claim under every reading of its name; a part that is JSON by its
/// Content-Type or its first character is read as JSON, as apps that bind
/// JSON parts do (with `json.loads` semantics: any encoding it detects, and
/// tokens like `NaN` that strict parsers refuse).
pub(super) fn multipart_claims(body: &[u8], content_types: &[String], out: &mut BTreeSet<String>) {
    let mut boundaries: Vec<String> = content_types
        .iter()
        .flat_map(|ct| param_readings(ct, "boundary"))
        .collect();
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let first_line = body[start..]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    if let Some(b) = first_line.strip_prefix(b"--") {
        boundaries.push(String::from_utf8_lossy(b).trim_end().to_string());
    }
    boundaries.sort();
    boundaries.dedup();
    for boundary in boundaries.iter().filter(|b| !b.is_empty()) {
        let delimiter = format!("--{boundary}").into_bytes();
        let mut rest = body;
        let mut parts: Vec<&[u8]> = Vec::new();
        // Each pass consumes one delimiter, so the loop ends with the body.
        while let Some(at) = find(rest, &delimiter) {
            parts.push(&rest[..at]);
            rest = &rest[at + delimiter.len()..];
        }
        parts.push(rest);
        // What precedes the first delimiter is the preamble.
        for part in parts.into_iter().skip(1) {
            part_claims(part, out);
        }
    }
}

fn part_claims(part: &[u8], out: &mut BTreeSet<String>) {
    let start = part
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(part.len());
    let part = &part[start..];
    let split = find(part, b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| find(part, b"\n\n").map(|i| (i, i + 2)));
    let Some((head_end, content_start)) = split else {
        return;
    };
    let mut content = &part[content_start..];
    while let [rest @ .., b'\r' | b'\n'] = content {
        content = rest;
    }
    let head = String::from_utf8_lossy(&part[..head_end]);
    let mut json_type = false;
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match normalise(name).as_str() {
            "contentdisposition"
                if param_readings(value, "name")
                    .iter()
                    .any(|n| names_project(n)) =>
            {
                add_values(&String::from_utf8_lossy(content), out);
            }
            "contenttype" => json_type |= value.to_ascii_lowercase().contains("json"),
            _ => {}
        }
    }
    let first = content
        .strip_prefix(b"\xef\xbb\xbf")
        .unwrap_or(content)
        .iter()
        .find(|b| !b.is_ascii_whitespace());
    if json_type || matches!(first, Some(b'{' | b'[')) {
        body_json_claims(content, out);
    }
}
