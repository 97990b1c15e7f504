//! Reading the OpenAPI document (`docs/openapi.json`): the file, its
//! operations, `$ref` resolution and the schema of an operation's answer.
//! Included by `tests/openapi.rs` alone, like `schema.rs`.

use serde_json::Value;
use std::collections::BTreeSet;
use tokengate::api::ROUTES;

pub const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
/// The operation keys of an OpenAPI path item.
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

pub fn doc_text() -> String {
    std::fs::read_to_string(DOC_PATH).unwrap_or_else(|e| panic!("{DOC_PATH}: {e}"))
}

pub fn doc() -> Value {
    serde_json::from_str(&doc_text()).unwrap_or_else(|e| panic!("{DOC_PATH} is not JSON: {e}"))
}

/// `v`, or what its `$ref` (`#/...`, inside `doc`) points to, followed to the end.
#[track_caller]
pub fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references are used: {r}"));
        v = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{r} points to nothing"));
    }
    v
}

/// (METHOD, path template) of every documented operation.
pub fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// (METHOD, path template) of every route the router answers.
pub fn routed() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|(m, t)| (m.to_string(), t.to_string()))
        .collect()
}

#[track_caller]
pub fn operation<'a>(doc: &'a Value, method: &str, template: &str) -> &'a Value {
    doc["paths"]
        .get(template)
        .and_then(|item| item.get(method.to_lowercase()))
        .unwrap_or_else(|| panic!("{method} {template} is not documented"))
}

/// The JSON schema of `method template`'s answer with `status`; panics when
/// the document does not describe that status for the operation.
#[track_caller]
pub fn response_schema(doc: &Value, method: &str, template: &str, status: u16) -> Value {
    let op = operation(doc, method, template);
    let resp = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{method} {template} documents no {status}"));
    resolve(doc, resp)["content"]["application/json"]["schema"].clone()
}

/// The schema of a shared answer in `components/responses` (405, route not found).
pub fn component_response_schema(doc: &Value, name: &str) -> Value {
    doc["components"]["responses"][name]["content"]["application/json"]["schema"].clone()
}

/// Every value under `v` with its JSON pointer.
pub fn walk<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                walk(child, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                walk(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push((at, v));
}
