//! Fuzz target `body`: project claims in request bodies
//! (`proxy::body::claims`, which reaches the JSON walk, form parsing and
//! `proxy::multipart`), on arbitrary bodies and on well-formed JSON, form
//! and multipart bodies built around a known project.
#![no_main]

// Each target uses part of the shared input helpers.
#[allow(dead_code)]
mod common;

use libfuzzer_sys::fuzz_target;
use tokengate::proxy::body::{claims, BodyHeaders, UNUSABLE};
use tokengate::proxy::names::{decode, NameSet};

/// The body fields tokengate reads by default.
const SOURCES: [&str; 4] = ["workspaceId", "projectId", "projectSlug", "workspaceSlug"];

/// A field name: `N`, `UN` or `BN` for source N as written, upper-cased or
/// bracketed (`workspaceId[]`); anything else is that text.
struct Name<'a>(&'a str);

impl Name<'_> {
    fn source(&self) -> Option<String> {
        let (kind, n) = match self.0.as_bytes() {
            [n] => (b' ', n),
            [k, n] => (*k, n),
            _ => return None,
        };
        let name = SOURCES.get(usize::from(n.checked_sub(b'0')?))?;
        match kind {
            b' ' => Some(name.to_string()),
            b'U' => Some(name.to_ascii_uppercase()),
            b'B' => Some(format!("{name}[]")),
            _ => None,
        }
    }

    fn text(&self) -> String {
        self.source().unwrap_or_else(|| self.0.to_string())
    }

    /// Must the gateway read this name as a project source?
    fn is_source(&self) -> bool {
        self.source().is_some()
    }
}

// Fields: a mode, then by mode:
// - raw: Content-Type values (one a line), Content-Encoding values (one a
//   line), the body (the rest);
// - json: Content-Type (json, json-utf8, vendor, text or none), field name,
//   nesting depth, other fields (one a line, `key=value`), the project (the rest);
// - form: field name, other fields (one a line, `key=value`), the project (the rest);
// - multipart: boundary number, field name, the project (the rest).
fuzz_target!(|data: &[u8]| {
    let names = NameSet::new(SOURCES);
    let mut f = common::Fields::new(data);
    match f.text() {
        "json" => {
            let content_type: Option<&[u8]> = match f.text() {
                "json" => Some(b"application/json"),
                "json-utf8" => Some(b"application/json; charset=utf-8"),
                "vendor" => Some(b"application/vnd.api+json"),
                "text" => Some(b"text/plain"),
                _ => None,
            };
            let name = Name(f.text());
            let depth = f.number();
            let others = pairs(f.text());
            let project = f.rest_text().to_string();
            let mut doc = serde_json::Map::new();
            for (k, v) in others {
                doc.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
            doc.insert(name.text(), serde_json::Value::String(project.clone()));
            let mut value = serde_json::Value::Object(doc);
            for i in 0..depth % 4 {
                value = if i % 2 == 0 {
                    serde_json::Value::Array(vec![value])
                } else {
                    serde_json::json!({ "data": value })
                };
            }
            let body = serde_json::to_vec(&value).expect("a value serialises");
            let ct: Vec<&[u8]> = content_type.into_iter().collect();
            let found = run(&names, &ct, &[], &body);
            if name.is_source() {
                let found = found.expect("a JSON document is readable");
                assert!(found.contains(&project), "{project:?} missed in {found:?}");
            }
        }
        "form" => {
            let name = Name(f.text());
            let others = pairs(f.text());
            let project = f.rest_text();
            let mut body = String::new();
            for (k, v) in others {
                body.push_str(&format!("{}={}&", form_encode(k), form_encode(v)));
            }
            body.push_str(&format!(
                "{}={}",
                form_encode(&name.text()),
                form_encode(project)
            ));
            let ct: [&[u8]; 1] = [b"application/x-www-form-urlencoded"];
            let found = run(&names, &ct, &[], body.as_bytes());
            if name.is_source() && !project.is_empty() {
                let found = found.expect("an encoded form is readable");
                assert!(
                    found.iter().any(|c| c == project),
                    "{project:?} missed in {found:?}"
                );
            }
        }
        "multipart" => {
            let b = format!("fuzz{:08x}", f.number() as u32);
            let name = Name(f.text());
            let project = f.rest_text();
            let n = name.text();
            if n.contains(['"', '\\', '\r', '\n']) || project.contains(&format!("\r\n--{b}")) {
                return;
            }
            let body = format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{project}\r\n--{b}--\r\n"
            );
            let ct = format!("multipart/form-data; boundary={b}");
            let found = run(&names, &[ct.as_bytes()], &[], body.as_bytes());
            // A part that looks like JSON must parse as JSON too; others are
            // read as they are.
            let json_like = project
                .trim_start_matches([' ', '\t', '\r', '\n', '\u{feff}'])
                .starts_with(['{', '[']);
            if name.is_source() && !json_like {
                let found = found.expect("a plain multipart body is readable");
                assert!(
                    found.iter().any(|c| c == project),
                    "{project:?} missed in {found:?}"
                );
            }
        }
        _ => {
            let types: Vec<&[u8]> = f
                .bytes()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .take(3)
                .collect();
            let encodings: Vec<&[u8]> = f
                .bytes()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .take(2)
                .collect();
            raw(&names, &types, &encodings, f.rest());
        }
    }
});

/// `key=value` lines.
fn pairs(text: &str) -> Vec<(&str, &str)> {
    common::lines(text)
        .take(4)
        .map(|l| l.split_once('=').unwrap_or((l, "")))
        .collect()
}

fn run(
    names: &NameSet,
    content_type: &[&[u8]],
    content_encoding: &[&[u8]],
    body: &[u8],
) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    claims(
        BodyHeaders {
            content_type,
            content_encoding,
        },
        body,
        names,
        &mut out,
    )?;
    for c in &out {
        assert!(
            c == UNUSABLE || spelled_in(c, body),
            "claim {c:?} is not in the body"
        );
    }
    Ok(out)
}

fn raw(names: &NameSet, types: &[&[u8]], encodings: &[&[u8]], body: &[u8]) {
    let result = run(names, &types, &encodings, body);
    if body.is_empty() {
        assert_eq!(result, Ok(Vec::new()));
        return;
    }
    // An encoded body could hide anything: it is never read as plain text.
    if encodings
        .iter()
        .any(|e| !e.trim_ascii().eq_ignore_ascii_case(b"identity"))
    {
        assert!(result.is_err());
    }
    if types.len() > 1 {
        assert!(result.is_err(), "several Content-Types were accepted");
    }
    // Neither UTF-16 nor any other text with NULs is read.
    let multipart = types
        .iter()
        .any(|t| t.windows(9).any(|w| w.eq_ignore_ascii_case(b"multipart")));
    if body.contains(&0) && !multipart {
        assert!(result.is_err());
    }
}

/// Is `claim` written in `body`, in any of the ways a field value can be
/// written there: as it is, form-decoded (UTF-8 or ISO-8859-1), or as a
/// JSON string with escapes?
fn spelled_in(claim: &str, body: &[u8]) -> bool {
    let texts = |b: &[u8]| -> [String; 2] {
        [
            String::from_utf8_lossy(b).into_owned(),
            b.iter().map(|&c| char::from(c)).collect(),
        ]
    };
    let decoded = decode(body, true, false).unwrap_or_default();
    if texts(body)
        .iter()
        .chain(texts(&decoded).iter())
        .any(|t| t.contains(claim))
    {
        return true;
    }
    json_strings(body).iter().any(|s| s == claim)
}

/// Every JSON string literal that starts at some `"` of `body`.
fn json_strings(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in body.iter().enumerate().filter(|(_, b)| **b == b'"') {
        let mut stream = serde_json::Deserializer::from_slice(&body[i..]).into_iter::<String>();
        if let Some(Ok(s)) = stream.next() {
            out.push(s);
        }
    }
    out
}

/// `application/x-www-form-urlencoded` encoding: everything but letters and
/// digits escaped.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
