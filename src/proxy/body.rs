//! Project claims in a request body (pure). JSON (every `json` media type,
//! and any body that starts like JSON whatever its type), form-urlencoded and
//! multipart/form-data bodies (read by `proxy::multipart`, also when a body
//! starts like one) are parsed; every field at any depth whose name is a
//! lookalike of a project source is a claim, repeated keys included. Bodies
//! of other types are scanned as form data, since lenient servers parse them
//! so. A body the gateway cannot read with certainty (an encoded body,
//! several or unparseable Content-Types, an odd charset, broken JSON, form or
//! multipart syntax) is refused: the upstream might read a project out of it
//! that the gateway could not.

use super::multipart;
use super::names::{decode, pair_readings, NameSet};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Stands for a project value that is not text (a number, an object, bytes
/// that are not UTF-8): never a valid project id, so such a claim is refused.
pub const UNUSABLE: &str = "\u{fffd}";

/// Why a body cannot be read (answered with 415).
pub type Unreadable = &'static str;

/// What the request says about its body.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyHeaders<'a> {
    /// Every Content-Type header value.
    pub content_type: &'a [&'a [u8]],
    /// Every Content-Encoding header value.
    pub content_encoding: &'a [&'a [u8]],
}

/// Adds to `out` every project claim in `body`.
pub fn claims(
    h: BodyHeaders<'_>,
    body: &[u8],
    names: &NameSet,
    out: &mut Vec<String>,
) -> Result<(), Unreadable> {
    if body.is_empty() {
        return Ok(());
    }
    if h.content_encoding
        .iter()
        .any(|v| !v.trim_ascii().eq_ignore_ascii_case(b"identity"))
    {
        return Err("request body is encoded (Content-Encoding); send it unencoded");
    }
    let media = match h.content_type {
        [] => None,
        [one] => Some(MediaType::parse(one)?),
        _ => return Err("request has more than one Content-Type"),
    };
    let latin1 = match media.as_ref().and_then(|m| m.param("charset")) {
        None => false,
        Some(cs)
            if ["utf-8", "utf8", "us-ascii", "ascii"]
                .iter()
                .any(|ok| cs.eq_ignore_ascii_case(ok)) =>
        {
            false
        }
        Some(cs)
            if ["iso-8859-1", "latin1", "latin-1"]
                .iter()
                .any(|ok| cs.eq_ignore_ascii_case(ok)) =>
        {
            true
        }
        Some(_) => return Err("request body charset must be UTF-8 or ISO-8859-1"),
    };
    let essence = media.as_ref().map_or("", |m| m.essence.as_str());
    if !essence.starts_with("multipart/") {
        // UTF-16 and UTF-32 text is full of NULs, and some JSON parsers
        // detect and decode it: text the gateway cannot read as such is refused.
        if body.contains(&0) || (!latin1 && std::str::from_utf8(body).is_err()) {
            return Err("request body is not UTF-8 text");
        }
    }
    let looks_json = starts_like_json(body);
    if essence.contains("json") || looks_json {
        json(body, names, out)?;
    }
    if essence == "application/x-www-form-urlencoded" {
        form(body, names, out, true, latin1)?;
    } else if essence.starts_with("multipart/") {
        let m = media.as_ref().ok_or("multipart body without a boundary")?;
        let boundary = m
            .param("boundary")
            .ok_or("multipart body without a boundary")?;
        multipart::claims(body, boundary, names, out)?;
    } else if !essence.contains("json") {
        // Lenient servers parse a body that starts like multipart as multipart,
        // taking the boundary from its first line, and read any body whose
        // type is not JSON (Rack: any POST without one) as a form, even one
        // that looks like JSON.
        if let Some(boundary) = leading_boundary(body) {
            multipart::claims(body, boundary, names, out)?;
        }
        form(body, names, out, false, latin1)?;
    }
    Ok(())
}

/// The boundary of a body that starts like multipart (`--boundary` + CRLF or LF).
fn leading_boundary(body: &[u8]) -> Option<&str> {
    let rest = body.strip_prefix(b"--")?;
    let end = rest.iter().position(|b| *b == b'\n')?;
    let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
    std::str::from_utf8(line).ok().filter(|l| !l.is_empty())
}

/// JSON texts that hold keys start with `{` or `[` (after whitespace or a BOM,
/// which some parsers skip and the strict parse then refuses).
pub(super) fn starts_like_json(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    matches!(
        body.iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')),
        Some(b'{' | b'[')
    )
}

/// A parsed Content-Type: lowercase essence and its parameters.
#[derive(Debug)]
pub(super) struct MediaType {
    pub(super) essence: String,
    params: Vec<(String, String)>,
}

impl MediaType {
    /// Parses `type/subtype; name=value; name="quoted"` strictly; anything
    /// else (non-ASCII, a repeated parameter) is unreadable.
    pub(super) fn parse(raw: &[u8]) -> Result<MediaType, Unreadable> {
        const BAD: Unreadable = "request Content-Type cannot be parsed";
        let text = std::str::from_utf8(raw).map_err(|_| BAD)?;
        if !text
            .bytes()
            .all(|b| b == b'\t' || (b' '..0x7f).contains(&b))
        {
            return Err(BAD);
        }
        let (essence, mut rest) = text.split_once(';').unwrap_or((text, ""));
        let essence = essence.trim().to_ascii_lowercase();
        if !essence.contains('/') || !essence.bytes().all(is_token_byte_or_slash) {
            return Err(BAD);
        }
        let mut params: Vec<(String, String)> = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            if rest.is_empty() {
                break;
            }
            // No space around `=`, values are a token or a quoted string,
            // and no `name*` (RFC 2231) forms: parsers disagree on all of it
            // (`boundary=a b`, `boundary=a, boundary=b`, `boundary*=`).
            let (name, after) = rest.split_once('=').ok_or(BAD)?;
            let name = name.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(BAD);
            }
            if name.contains('*') {
                return Err("request Content-Type uses an encoded (name*) parameter");
            }
            let (value, after) = if let Some(q) = after.strip_prefix('"') {
                quoted(q).ok_or(BAD)?
            } else {
                let end = after.find([';', ' ', '\t']).unwrap_or(after.len());
                let value = &after[..end];
                if value.is_empty() || !value.bytes().all(is_token_byte) {
                    return Err(BAD);
                }
                (value.to_string(), &after[end..])
            };
            if params.iter().any(|(n, _)| *n == name) {
                return Err("request Content-Type repeats a parameter");
            }
            params.push((name, value));
            rest = after.trim_start_matches([' ', '\t']);
            match rest.strip_prefix(';') {
                Some(r) => rest = r,
                None if rest.is_empty() => break,
                None => return Err(BAD),
            }
        }
        Ok(MediaType { essence, params })
    }

    pub(super) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A quoted string's value (after the opening quote) and the text after it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token_byte_or_slash(b: u8) -> bool {
    b == b'/' || is_token_byte(b)
}

// ---- JSON ----

/// Walks a strict JSON document, seeing every key at every depth, repeated
/// keys included (a map type would keep only one of them).
pub(super) fn json(body: &[u8], names: &NameSet, out: &mut Vec<String>) -> Result<(), Unreadable> {
    const BAD: Unreadable = "request body is not valid JSON";
    let mut de = serde_json::Deserializer::from_slice(body);
    Walk {
        names,
        out,
        parent: None,
        claimed: false,
    }
    .deserialize(&mut de)
    .map_err(|_| BAD)?;
    de.end().map_err(|_| BAD)
}

/// One JSON value on the walk through a document.
struct Walk<'n, 'o, 'p> {
    names: &'n NameSet,
    out: &'o mut Vec<String>,
    /// The key this value sits under, if any: `{"workspace": {"id": ..}}`
    /// is `workspace.id` to frameworks that flatten nested input.
    parent: Option<&'p str>,
    /// The value sits under a project-named key: text is a claim, null is
    /// none, and anything else is unusable (objects and arrays are still
    /// walked, for the keys inside them).
    claimed: bool,
}

impl Walk<'_, '_, '_> {
    fn unusable<E>(self) -> Result<(), E> {
        if self.claimed {
            self.out.push(UNUSABLE.to_string());
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.claimed {
            self.out.push(UNUSABLE.to_string());
        }
        while let Some(key) = map.next_key::<String>()? {
            let claimed = self.names.matches(&key)
                || self
                    .parent
                    .is_some_and(|p| self.names.matches_joined(p, &key));
            map.next_value_seed(Walk {
                names: self.names,
                out: self.out,
                parent: Some(&key),
                claimed,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.claimed {
            self.out.push(UNUSABLE.to_string());
        }
        while seq
            .next_element_seed(Walk {
                names: self.names,
                out: self.out,
                parent: self.parent,
                claimed: false,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        if self.claimed {
            self.out.push(s.to_string());
        }
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.unusable()
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.unusable()
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.unusable()
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.unusable()
    }
}

// ---- form-urlencoded ----

/// Reads `name=value` pairs. Strict (a form Content-Type): `;` (which some
/// servers treat as a separator), malformed escapes and non-UTF-8 are
/// unreadable. Lenient (other types, scanned in case the upstream parses
/// them as a form): split on `&` and `;`, invalid text replaced.
fn form(
    body: &[u8],
    names: &NameSet,
    out: &mut Vec<String>,
    strict: bool,
    latin1: bool,
) -> Result<(), Unreadable> {
    if strict && body.contains(&b';') {
        return Err("form body must not contain ';' (some servers split on it)");
    }
    for pair in body.split(|b| *b == b'&' || *b == b';') {
        for (name, value) in pair_readings(pair) {
            let name = form_decode(name, strict, latin1)?;
            if !value.is_empty() && names.matches(&name) {
                out.push(form_decode(value, strict, latin1)?);
            }
        }
    }
    Ok(())
}

/// Decodes `+` and escapes, then reads the bytes as UTF-8, or as ISO-8859-1
/// when the body says so (each byte one character).
fn form_decode(raw: &[u8], strict: bool, latin1: bool) -> Result<String, Unreadable> {
    let bytes = decode(raw, true, strict).ok_or("form body has a malformed percent-encoding")?;
    if latin1 {
        return Ok(bytes.iter().map(|&b| char::from(b)).collect());
    }
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(_) if strict => Err("form body is not valid UTF-8"),
        Err(e) => Ok(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> NameSet {
        NameSet::new(["workspaceId", "projectId"])
    }

    fn run(ct: Option<&str>, body: &str) -> Result<Vec<String>, Unreadable> {
        let ct: Vec<&[u8]> = ct.iter().map(|c| c.as_bytes()).collect();
        let mut out = Vec::new();
        claims(
            BodyHeaders {
                content_type: &ct,
                content_encoding: &[],
            },
            body.as_bytes(),
            &names(),
            &mut out,
        )?;
        Ok(out)
    }

    #[test]
    fn json_under_every_type() {
        for ct in [
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("application/vnd.api+json"),
            Some("text/json"),
            Some("application/x-json"),
            Some("text/plain"),
            Some("application/octet-stream"),
            None,
        ] {
            assert_eq!(
                run(ct, r#" {"workspaceId": "p1"}"#).unwrap(),
                ["p1"],
                "{ct:?}"
            );
        }
    }

    #[test]
    fn json_keys_at_any_depth_and_repeated() {
        let got = run(
            Some("application/json"),
            r#"{"WorkspaceId":"a","x":{"y":[{"project_id":"b"}]},"workspaceId":"c","workspaceId":"d","n":null,"projectId":null}"#,
        )
        .unwrap();
        assert_eq!(got, ["a", "b", "c", "d"]);
        assert_eq!(
            run(Some("application/json"), r#"{"workspaceId": 5}"#).unwrap(),
            [UNUSABLE]
        );
        assert_eq!(
            run(
                Some("application/json"),
                r#"{"workspaceId": {"projectId": "q"}}"#
            )
            .unwrap(),
            [UNUSABLE, "q"]
        );
        assert_eq!(
            run(Some("application/json"), r#"{"workspace\u0049d": "e"}"#).unwrap(),
            ["e"]
        );
    }

    #[test]
    fn broken_json_is_unreadable() {
        for (ct, body) in [
            (Some("application/json"), "not json"),
            (Some("application/json"), "\u{feff}{\"workspaceId\": \"p\"}"),
            (Some("application/json"), r#"{"workspaceId": "p"} x"#),
            (Some("application/json"), r#"{"workspaceId": "\ud800"}"#),
            (Some("text/plain"), r#"{"workspaceId": 'p'}"#),
            (None, r#"{workspaceId: "p"}"#),
            (Some("application/x-www-form-urlencoded"), r#"{"a":1,}"#),
        ] {
            assert!(run(ct, body).is_err(), "{ct:?} {body}");
        }
    }

    #[test]
    fn forms() {
        let f = Some("application/x-www-form-urlencoded");
        assert_eq!(
            run(f, "a=1&workspaceId=p1&Workspace_Id%5B%5D=p+2").unwrap(),
            ["p1", "p 2"]
        );
        assert!(run(f, "a=1;workspaceId=p1").is_err());
        assert!(run(f, "workspaceId=%zz").is_err());
        assert!(run(f, "workspaceId=%ff").is_err());
        // Scanned leniently under other types.
        assert_eq!(
            run(Some("text/plain"), "a=1;workspaceId=p3").unwrap(),
            ["p3"]
        );
        assert_eq!(run(None, "workspaceId=%zz").unwrap(), ["%zz"]);
        assert!(run(Some("text/plain"), "just some text")
            .unwrap()
            .is_empty());
        // Multipart without its type is read as multipart, strictly.
        let body = "--with space\r\nContent-Disposition: form-data; name=\"workspaceId\"\r\n\r\np4\r\n--with space--\r\n";
        assert_eq!(run(None, body).unwrap(), ["p4"]);
        assert!(run(
            Some("text/plain"),
            "--x\nContent-Disposition: form-data; name=a\n\n1\n--x--"
        )
        .is_err());
    }

    #[test]
    fn multipart_fields() {
        let ct = Some("multipart/form-data; boundary=XyZ");
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"workspaceId\"\r\n\r\np1\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.json\"\r\nContent-Type: application/json\r\n\r\n{\"projectId\":\"p2\"}\r\n\
                    --XyZ--\r\n";
        assert_eq!(run(ct, body).unwrap(), ["p1", "p2"]);
        let quoted = Some("multipart/form-data; boundary=\"a b\"");
        let body = "--a b\r\nContent-Disposition: form-data; name=PROJECT_ID\r\n\r\np3\r\n--a b--";
        assert_eq!(run(quoted, body).unwrap(), ["p3"]);
        for (ct, body) in [
            (Some("multipart/form-data"), "--x--"),
            (Some("multipart/form-data; boundary=x; boundary=y"), "--x--"),
            (Some("multipart/form-data; boundary=x"), "preamble\r\n--x--"),
            (Some("multipart/form-data; boundary=x"), "--x\nContent-Disposition: form-data; name=a\n\n1\n--x--"),
            (Some("multipart/form-data; boundary=x"), "--x\r\nContent-Disposition: form-data; name*=utf-8''workspaceId\r\n\r\np\r\n--x--"),
            (Some("multipart/form-data; boundary=x"), "--x\r\nContent-Disposition: form-data; name=a\r\nContent-Transfer-Encoding: base64\r\n\r\ncA==\r\n--x--"),
            (Some("multipart/form-data; boundary=x"), "--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1"),
        ] {
            assert!(run(ct, body).is_err(), "{ct:?} {body:?}");
        }
    }

    /// Found by an attacker-style probe: each of these was read differently
    /// by some framework (Werkzeug, Python's json, Jackson) than by the gateway.
    #[test]
    fn what_lenient_parsers_read_differently() {
        // UTF-16 JSON, which Python's and Jackson's JSON readers detect.
        let utf16: Vec<u8> = r#"{"workspaceId":"p-other"}"#.bytes().flat_map(|b| [0, b]).collect();
        let mut out = Vec::new();
        assert!(claims(h_empty(), &utf16, &names(), &mut out).is_err());
        assert!(claims(h_empty(), b"\xff\xfe{\x00", &names(), &mut out).is_err());
        assert!(claims(h_empty(), b"caf\xe9", &names(), &mut out).is_err());
        // Parameters that are neither a token nor a quoted string, or starred.
        for ct in [
            "multipart/form-data; boundary=abc xyz",
            "multipart/form-data; boundary=abc, boundary=xyz",
            "multipart/form-data; boundary=a\"bc",
            "multipart/form-data; boundary=xyz; boundary*=utf-8''abc",
            "multipart/form-data; boundary =abc",
            "multipart/form-data; boundary= abc",
        ] {
            assert!(run(Some(ct), "--abc--").is_err(), "{ct}");
        }
        // A part name that is not a token.
        let ct = Some("multipart/form-data; boundary=abc");
        assert!(run(
            ct,
            "--abc\r\nContent-Disposition: form-data; name=workspaceId x\r\n\r\np\r\n--abc--"
        )
        .is_err());
        // A JSON part must parse, by its type or its look.
        for part in [
            "Content-Type: application/json\r\n\r\n{\"y\":NaN,\"workspaceId\":\"p\"}",
            "Content-Type: application/json\r\n\r\nnot json",
            "\r\n{\"y\":1e999999,\"workspaceId\":\"p\"}",
        ] {
            let body = format!("--abc\r\nContent-Disposition: form-data; name=\"m\"; filename=\"m.json\"\r\n{part}\r\n--abc--");
            assert!(run(ct, &body).is_err(), "{part}");
        }
        // A JSON-looking body whose type is not JSON is read as a form too.
        assert_eq!(run(None, r#"{"a":"&workspaceId=p2&"}"#).unwrap(), ["p2"]);
        assert_eq!(
            run(Some("application/json"), r#"{"a":"&workspaceId=p2&"}"#).unwrap(),
            Vec::<String>::new()
        );
        // Nested objects that flatten to a source name.
        assert_eq!(
            run(
                Some("application/json"),
                r#"{"workspace":{"id":"a"},"x":{"project":[{"Id":"b"}]}}"#
            )
            .unwrap(),
            ["a", "b"]
        );
        // A form in ISO-8859-1 is read as such.
        assert_eq!(
            run(
                Some("application/x-www-form-urlencoded; charset=ISO-8859-1"),
                "workspaceId=p%E91"
            )
            .unwrap(),
            ["p\u{e9}1"]
        );
        assert_eq!(
            run(
                Some("application/x-www-form-urlencoded; charset=ISO-8859-1"),
                "worksp%AAceId=p1"
            )
            .unwrap(),
            ["p1"]
        );
    }

    #[test]
    fn unreadable_headers() {
        let mut out = Vec::new();
        let two: [&[u8]; 2] = [b"application/json", b"text/plain"];
        let h = BodyHeaders {
            content_type: &two,
            content_encoding: &[],
        };
        assert!(claims(h, b"{}", &names(), &mut out).is_err());
        let gz: [&[u8]; 1] = [b"gzip"];
        let h = BodyHeaders {
            content_type: &[],
            content_encoding: &gz,
        };
        assert!(claims(h, b"x", &names(), &mut out).is_err());
        for ct in [
            &b"application/json; charset=\xff"[..],
            b"application/json; charset=utf-16",
            b"application/json; charset=",
            b"json",
        ] {
            let one = [ct];
            let h = BodyHeaders {
                content_type: &one,
                content_encoding: &[],
            };
            assert!(
                claims(h, b"{}", &names(), &mut out).is_err(),
                "{}",
                String::from_utf8_lossy(ct)
            );
        }
        // An empty body carries nothing, whatever its headers say.
        assert!(claims(h_empty(), b"", &names(), &mut out).is_ok());
    }

    fn h_empty() -> BodyHeaders<'static> {
        BodyHeaders::default()
    }
}
