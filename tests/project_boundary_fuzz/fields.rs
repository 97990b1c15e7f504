//! Mutation classes on named fields: query parameters, headers, JSON members, form and multipart fields spelled so that only a lenient parser reads them as a project.
//!
//! Each class adds one project reference and leaves the rest of the base
//! alone, so a leak is attributed to the one trick that caused it.

use crate::request::{
    case_flip, field, insert_seps, json_escape_some, pct_some, Ctx, Draft, Mutate, Rng, P1,
};

// ---------------------------------------------------------------------------
// Query names and values.

fn query_case(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let f = field(rng);
    let name = case_flip(rng, f);
    d.add_query(rng, &format!("{name}={}", c.v));
}

fn query_separators(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let f = field(rng);
    let name = insert_seps(rng, f, &["_", "-", ".", "%5f", "%2E", "%2d"]);
    d.add_query(rng, &format!("{name}={}", c.v));
}

fn query_array(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let deco = rng.pick(&["[]", "[0]", "[x]", "[][]", "[1]", "%5B%5D", "[", "]"]);
    let f = field(rng);
    d.add_query(rng, &format!("{}{deco}={}", f, c.v));
}

fn query_nested(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let outer = rng.pick(&["a", "filter", "data", "x[y]"]);
    let (open, close) = rng.pick(&[("[", "]"), ("%5B", "%5D")]);
    let f = field(rng);
    d.add_query(rng, &format!("{outer}{open}{}{close}={}", f, c.v));
}

fn query_nul(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let name = field(rng);
    let at = rng.below(name.len() + 1);
    let name = format!("{}%00{}", &name[..at], &name[at..]);
    d.add_query(rng, &format!("{name}={}", c.v));
}

fn query_pct_name(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let f = field(rng);
    let name = pct_some(rng, f);
    d.add_query(rng, &format!("{name}={}", c.v));
}

fn query_semicolon(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let pair = format!("{}={}", field(rng), c.v);
    if d.query_start().is_some() {
        d.target.extend_from_slice(format!(";{pair}").as_bytes());
    } else {
        d.target
            .extend_from_slice(format!("?environment=dev;{pair}").as_bytes());
    }
}

fn query_repeat(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let f = field(rng);
    d.add_query(rng, &format!("{}={}", f, c.v));
}

fn query_value(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let v = c.v;
    let value = match rng.below(7) {
        0 => pct_some(rng, v),
        1 => format!("p1,{v}"),
        2 => format!("{v}%00"),
        3 => format!("p1%00{v}"),
        4 => format!("%20{v}"),
        5 => format!("{v}+"),
        _ => format!("{v}%0d%0a"),
    };
    let f = field(rng);
    d.add_query(rng, &format!("{}={value}", f));
}

// ---------------------------------------------------------------------------
// Headers.

fn header_case(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    d.header(case_flip(rng, "x-project-id"), c.v);
}

fn header_underscore(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let name = match rng.below(3) {
        0 => "x_project_id",
        1 => "x-project_id",
        _ => "x_project-id",
    };
    let name = if rng.chance(50) {
        case_flip(rng, name)
    } else {
        name.to_string()
    };
    d.header(name, c.v);
}

fn header_lookalike(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let name = rng.pick(&[
        "projectId",
        "workspaceId",
        "project-id",
        "workspace-id",
        "project_id",
        "workspace_id",
        "x-projectid",
        "xprojectid",
        "X_ProjectId",
        "Workspace-Id",
    ]);
    d.header(name, c.v);
}

fn header_repeat(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let v = c.v;
    match rng.below(3) {
        0 => {
            d.header("x-project-id", P1);
            d.header("x-project-id", v);
        }
        1 => {
            d.header("x-project-id", v);
            d.header("x-project-id", P1);
        }
        _ => {
            let value = rng.pick(&[format!("p1, {v}"), format!("{v},p1"), format!("{v} , p1")]);
            d.header("x-project-id", value);
        }
    }
}

fn header_value_ctl(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let v = c.v.as_bytes();
    let value: Vec<u8> = match rng.below(5) {
        0 => [&b"p1\x00"[..], v].concat(),
        1 => [&b"\x0b"[..], v].concat(),
        2 => [v, &b"\x7f"[..]].concat(),
        3 => [&b"\t"[..], v, b"\t"].concat(),
        _ => [&b"p1\x01"[..], v].concat(),
    };
    d.header("x-project-id", value);
}

/// The gateway's own injected header, sent by the client: a lenient reader
/// of that header accepts these spellings too, so the gateway must drop them.
fn header_spoof_injected(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let name = rng.pick(&[
        "x-tokengate-project-id",
        "X-TokenGate-Project-Id",
        "x_tokengate_project_id",
        "X_TOKENGATE_PROJECT_ID",
        "x-tokengate_project-id",
    ]);
    d.header(name, c.v);
}

// ---------------------------------------------------------------------------
// JSON bodies.

fn quoted(v: &str) -> String {
    format!("\"{v}\"")
}

fn json_key_case(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let f = field(rng);
    let key = case_flip(rng, f);
    d.json_member(rng, &quoted(&key), &quoted(c.v));
}

fn json_key_separators(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let f = field(rng);
    let key = insert_seps(rng, f, &["_", "-", ".", "\\u0000", "\\u005f"]);
    d.json_member(rng, &quoted(&key), &quoted(c.v));
}

fn json_key_decorated(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let key = match rng.below(3) {
        0 => format!("{}[]", field(rng)),
        1 => format!("{}[0]", field(rng)),
        _ => format!("data[{}]", field(rng)),
    };
    d.json_member(rng, &quoted(&key), &quoted(c.v));
}

fn json_key_escape(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let f = field(rng);
    let key = json_escape_some(rng, f);
    d.json_member(rng, &quoted(&key), &quoted(c.v));
}

fn json_nested(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let inner = format!("{{\"{}\":\"{}\"}}", field(rng), c.v);
    let (key, value) = match rng.below(4) {
        0 => ("\"data\"", inner),
        1 => ("\"secret\"", inner),
        2 => ("\"items\"", format!("[{inner}]")),
        _ => ("\"a\"", format!("{{\"b\":{inner}}}")),
    };
    d.json_member(rng, key, &value);
}

fn json_repeated(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let key = quoted(field(rng));
    if d.json.is_none() {
        d.json_member(rng, &key, &quoted(P1));
    }
    d.json_member(rng, &key, &quoted(c.v));
}

fn json_array_value(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let value = rng.pick(&[format!("[\"{}\"]", c.v), format!("[\"p1\",\"{}\"]", c.v)]);
    let f = field(rng);
    d.json_member(rng, &quoted(f), &value);
}

fn json_top_array(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let one = format!("{{\"{}\":\"{}\"}}", field(rng), c.v);
    let body = if rng.chance(50) {
        format!("[{one}]")
    } else {
        format!("[{{\"workspaceId\":\"p1\"}},{one}]")
    };
    d.raw_body(body, &[b"application/json"]);
}

fn json_prefixed_or_trailing(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let obj = format!("{{\"{}\":\"{}\",\"secretValue\":\"v\"}}", field(rng), c.v);
    let body = match rng.below(4) {
        0 => format!("\u{feff}{obj}"),
        1 => format!("{obj} trailing"),
        2 => format!(")]}}',\n{obj}"),
        _ => format!("{{\"workspaceId\":\"p1\"}}{obj}"),
    };
    d.raw_body(body, &[b"application/json"]);
}

/// JSON naming the project under Content-Types a gateway may not treat as JSON.
fn body_content_type(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let types: [&[&[u8]]; 24] = [
        &[b"application/json; charset=\xff"],
        &[b"application/json; charset=\xc3\xbf"],
        &[b"application/json;charset=utf-8"],
        &[b"APPLICATION/JSON"],
        &[b"Application/Json"],
        &[b"application/json "],
        &[b"application/vnd.api+json"],
        &[b"application/problem+json; charset=utf-8"],
        &[b"text/json"],
        &[b"application/x-json"],
        &[b"text/plain"],
        &[b"text/plain; charset=utf-8"],
        &[],
        &[b"application/x-www-form-urlencoded"],
        &[b"application/octet-stream"],
        &[b"application/json, text/plain"],
        &[b"application/json", b"text/plain"],
        &[b"text/plain", b"application/json"],
        &[b"application/json;;"],
        &[b"*/*"],
        &[b"application/jsonx"],
        &[b"application/ json"],
        &[b"json"],
        &[b"application/json; boundary=x"],
    ];
    let f = field(rng);
    d.json_member(rng, &quoted(f), &quoted(c.v));
    let body = d.body_bytes().unwrap_or_default();
    let ct = rng.pick(&types);
    d.raw_body(body, ct);
}

// ---------------------------------------------------------------------------
// Form and multipart bodies.

fn form_body(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let types: [&[&[u8]]; 8] = [
        &[b"application/x-www-form-urlencoded"],
        &[b"application/x-www-form-urlencoded; charset=utf-8"],
        &[b"application/x-www-form-urlencoded; charset=\xff"],
        &[b"APPLICATION/X-WWW-FORM-URLENCODED"],
        &[],
        &[b"text/plain"],
        &[b"application/octet-stream"],
        &[b"application/json"],
    ];
    let mut pairs = vec![format!("{}={}", field(rng), c.v), "environment=dev".into()];
    rng.shuffle(&mut pairs);
    let ct = rng.pick(&types);
    d.raw_body(pairs.join("&"), ct);
}

/// A form field name a lenient parser still reads as a project field.
fn lookalike_form_name(rng: &mut Rng) -> String {
    let name = field(rng);
    match rng.below(6) {
        0 => case_flip(rng, name),
        1 => insert_seps(rng, name, &["_", "-", ".", "%5F"]),
        2 => format!("{name}[]"),
        3 => format!("a[{name}]"),
        4 => format!("{name}%00"),
        _ => pct_some(rng, name),
    }
}

fn form_lookalike(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let types: [&[&[u8]]; 2] = [&[b"application/x-www-form-urlencoded"], &[]];
    let body = format!("{}={}&environment=dev", lookalike_form_name(rng), c.v);
    let ct = rng.pick(&types);
    d.raw_body(body, ct);
}

fn multipart_field(rng: &mut Rng, d: &mut Draft, c: &Ctx) {
    let boundary = rng.pick(&[
        "XyZ",
        "----WebKitFormBoundary7MA4YWxkTrZu0gW",
        "a'()+_,-./:=?",
        "b;c",
        "with space",
        "0123456789012345678901234567890123456789012345678901234567890123456789",
    ]);
    let ct = match rng.below(7) {
        0 => format!("multipart/form-data; boundary={boundary}"),
        1 => format!("multipart/form-data; boundary=\"{boundary}\""),
        2 => format!("Multipart/Form-Data; BOUNDARY={boundary}"),
        3 => format!("multipart/mixed; boundary={boundary}"),
        4 => "multipart/form-data".to_string(),
        5 => format!("multipart/form-data; charset=utf-8; boundary={boundary}"),
        _ => String::new(),
    };
    let name = if rng.chance(50) {
        field(rng).to_string()
    } else {
        let f = field(rng);
        case_flip(rng, f)
    };
    let nl = if rng.chance(80) { "\r\n" } else { "\n" };
    let mut body = String::new();
    if rng.chance(50) {
        body.push_str(&format!(
            "--{boundary}{nl}Content-Disposition: form-data; name=\"environment\"{nl}{nl}dev{nl}"
        ));
    }
    body.push_str(&format!(
        "--{boundary}{nl}Content-Disposition: form-data; name=\"{name}\"{nl}{nl}{}{nl}--{boundary}--{nl}",
        c.v
    ));
    if ct.is_empty() {
        d.raw_body(body, &[]);
    } else {
        d.raw_body(body, &[ct.as_bytes()]);
    }
}

/// Every class that names `Ctx::v` some way; the name is what the report shows.
/// Every field class; the name is what the report shows.
pub const CLASSES: &[(&str, Mutate)] = &[
    ("query.name-case", query_case),
    ("query.name-separators", query_separators),
    ("query.name-array", query_array),
    ("query.name-nested", query_nested),
    ("query.name-nul", query_nul),
    ("query.name-pct", query_pct_name),
    ("query.semicolon", query_semicolon),
    ("query.repeated", query_repeat),
    ("query.value-encoding", query_value),
    ("header.name-case", header_case),
    ("header.name-underscore", header_underscore),
    ("header.name-lookalike", header_lookalike),
    ("header.repeated", header_repeat),
    ("header.value-control", header_value_ctl),
    ("header.spoof-injected", header_spoof_injected),
    ("json.key-case", json_key_case),
    ("json.key-separators", json_key_separators),
    ("json.key-decorated", json_key_decorated),
    ("json.key-escaped", json_key_escape),
    ("json.nested", json_nested),
    ("json.repeated-key", json_repeated),
    ("json.array-value", json_array_value),
    ("json.top-level-array", json_top_array),
    ("json.prefix-or-trailer", json_prefixed_or_trailing),
    ("body.content-type", body_content_type),
    ("form.body", form_body),
    ("form.name-lookalike", form_lookalike),
    ("multipart.field", multipart_field),
];
