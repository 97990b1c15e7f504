//! A small JSON Schema (2020-12) validator for the subset the OpenAPI
//! document uses, so the tests can check examples and live answers against it.
//!
//! Written here rather than taken from the `jsonschema` crate: that crate
//! brings two dozen crates and turns on serde_json and regex features the
//! gateway does not use, so every test build would compile the gateway's
//! dependencies a second time. Covered: `$ref` (local, `#/...`), `type`
//! (one or a list), `enum`, `const`, `properties`, `required`,
//! `additionalProperties`, `items`, `minItems`/`maxItems`,
//! `minLength`/`maxLength`, `minimum`/`maximum`, `pattern`, `format`
//! (`uuid`, `date-time`), `allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`.
//! Any other keyword is reported as an error rather than skipped, so the
//! document cannot lean on a rule no test checks.
//!
//! Included by `tests/openapi.rs` alone (not listed in `common/mod.rs`), so
//! other test binaries neither compile it nor run its tests.

use serde_json::Value;

/// Keywords that describe and never constrain.
const ANNOTATIONS: [&str; 5] = ["description", "default", "example", "title", "$comment"];

/// Checks `instance` against `schema`; `root` is the document `$ref`s point
/// into. The error lists every violation with its place in the instance.
pub fn validate(root: &Value, schema: &Value, instance: &Value) -> Result<(), String> {
    let mut errors = Vec::new();
    check(root, schema, instance, "", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

fn check(root: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let s = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => return errors.push(format!("{at}: nothing is allowed here")),
        Value::Object(s) => s,
        _ => return errors.push(format!("{at}: the schema is not an object: {schema}")),
    };
    let mut fail = |msg: String| errors.push(format!("{at}: {msg}"));
    let mut nested: Vec<(&Value, &Value, String)> = Vec::new();
    for (key, arg) in s {
        match key.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            // Read together with `properties`, and `then`/`else` with `if`.
            "additionalProperties" | "then" | "else" => {}
            "$ref" => match arg
                .as_str()
                .and_then(|r| r.strip_prefix('#'))
                .and_then(|p| root.pointer(p))
            {
                Some(target) => nested.push((target, v, at.to_string())),
                None => fail(format!("$ref {arg} points to nothing")),
            },
            "type" => {
                let wanted: Vec<&str> = match arg {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                if !wanted.iter().any(|t| is_type(v, t)) {
                    fail(format!("{v} is not of type {arg}"));
                }
            }
            "enum" => {
                if !arg.as_array().is_some_and(|a| a.contains(v)) {
                    fail(format!("{v} is not one of {arg}"));
                }
            }
            "const" => {
                if arg != v {
                    fail(format!("{v} is not {arg}"));
                }
            }
            "properties" => {
                let (Some(props), Some(obj)) = (arg.as_object(), v.as_object()) else {
                    continue;
                };
                for (name, value) in obj {
                    match props.get(name) {
                        Some(p) => nested.push((p, value, format!("{at}/{name}"))),
                        None => match s.get("additionalProperties") {
                            Some(Value::Bool(false)) => {
                                fail(format!("property {name:?} is not allowed"))
                            }
                            Some(extra) => nested.push((extra, value, format!("{at}/{name}"))),
                            None => {}
                        },
                    }
                }
            }
            "required" => {
                if let (Some(names), Some(obj)) = (arg.as_array(), v.as_object()) {
                    for name in names.iter().filter_map(Value::as_str) {
                        if !obj.contains_key(name) {
                            fail(format!("required property {name:?} is missing"));
                        }
                    }
                }
            }
            "items" => {
                if let Some(items) = v.as_array() {
                    for (i, item) in items.iter().enumerate() {
                        nested.push((arg, item, format!("{at}/{i}")));
                    }
                }
            }
            "minItems" | "maxItems" => {
                if let Some(n) = v.as_array().map(Vec::len) {
                    bound(key, arg, n as f64, "items", &mut fail);
                }
            }
            "minLength" | "maxLength" => {
                if let Some(n) = v.as_str().map(|t| t.chars().count()) {
                    bound(key, arg, n as f64, "characters", &mut fail);
                }
            }
            "minimum" | "maximum" => {
                if let Some(n) = v.as_f64() {
                    bound(key, arg, n, "", &mut fail);
                }
            }
            "pattern" => {
                let (Some(p), Some(text)) = (arg.as_str(), v.as_str()) else {
                    continue;
                };
                match regex::Regex::new(p) {
                    Ok(re) if re.is_match(text) => {}
                    Ok(_) => fail(format!("{text:?} does not match {p}")),
                    Err(e) => fail(format!("pattern {p} does not compile: {e}")),
                }
            }
            "format" => {
                if let Some(text) = v.as_str() {
                    if let Err(e) = format(arg.as_str().unwrap_or_default(), text) {
                        fail(e);
                    }
                }
            }
            "allOf" => {
                for sub in arg.as_array().into_iter().flatten() {
                    nested.push((sub, v, at.to_string()));
                }
            }
            "anyOf" | "oneOf" => {
                let passing = arg
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|sub| validate(root, sub, v).is_ok())
                    .count();
                if passing == 0 || (key == "oneOf" && passing > 1) {
                    fail(format!("{passing} of the {key} schemas match"));
                }
            }
            "not" => {
                if validate(root, arg, v).is_ok() {
                    fail(format!("matches the schema it must not: {arg}"));
                }
            }
            "if" => {
                let branch = if validate(root, arg, v).is_ok() {
                    s.get("then")
                } else {
                    s.get("else")
                };
                if let Some(b) = branch {
                    nested.push((b, v, at.to_string()));
                }
            }
            other => fail(format!("unsupported keyword {other:?}")),
        }
    }
    for (sub, value, place) in nested {
        check(root, sub, value, &place, errors);
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        // JSON Schema counts 1.0 as an integer.
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn bound(key: &str, arg: &Value, n: f64, unit: &str, fail: &mut impl FnMut(String)) {
    let Some(limit) = arg.as_f64() else {
        return fail(format!("{key} is not a number"));
    };
    let ok = if key.starts_with("min") {
        n >= limit
    } else {
        n <= limit
    };
    if !ok {
        fail(format!("{n} {unit} is outside {key} {limit}"));
    }
}

/// The formats the document uses; others are annotations, as 2020-12 says.
fn format(name: &str, text: &str) -> Result<(), String> {
    match name {
        "uuid" => uuid::Uuid::try_parse(text)
            .ok()
            .filter(|_| text.len() == 36)
            .map(drop)
            .ok_or_else(|| format!("{text:?} is not a hyphenated UUID")),
        "date-time" => {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map(drop)
                .map_err(|e| format!("{text:?} is not an RFC 3339 date-time: {e}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::validate;
    use serde_json::json;

    #[track_caller]
    fn ok(schema: serde_json::Value, v: serde_json::Value) {
        if let Err(e) = validate(&json!({}), &schema, &v) {
            panic!("{v} should match {schema}: {e}");
        }
    }

    #[track_caller]
    fn bad(schema: serde_json::Value, v: serde_json::Value) {
        assert!(
            validate(&json!({}), &schema, &v).is_err(),
            "{v} should not match {schema}"
        );
    }

    #[test]
    fn types_nullable_enum_and_const() {
        ok(json!({"type": "integer"}), json!(3));
        ok(json!({"type": "integer"}), json!(3.0));
        bad(json!({"type": "integer"}), json!(3.5));
        bad(json!({"type": "integer"}), json!("3"));
        ok(json!({"type": ["string", "null"]}), json!(null));
        ok(json!({"type": ["string", "null"]}), json!("x"));
        bad(json!({"type": ["string", "null"]}), json!(false));
        ok(json!({"enum": ["relative", null]}), json!(null));
        bad(json!({"enum": ["relative", null]}), json!("absolute"));
        ok(json!({"const": "Bearer"}), json!("Bearer"));
        bad(json!({"const": "Bearer"}), json!("bearer"));
        ok(json!(true), json!({"anything": 1}));
        bad(json!(false), json!(1));
    }

    #[test]
    fn objects_and_arrays() {
        let s = json!({
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2}},
            "required": ["a"],
            "additionalProperties": false
        });
        ok(s.clone(), json!({"a": "x", "b": [1, 2]}));
        bad(s.clone(), json!({"b": [1]}));
        bad(s.clone(), json!({"a": "x", "c": 1}));
        bad(s.clone(), json!({"a": "x", "b": ["1"]}));
        bad(s.clone(), json!({"a": "x", "b": []}));
        bad(s, json!({"a": "x", "b": [1, 2, 3]}));
        let open = json!({"properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}});
        ok(open.clone(), json!({"a": "x", "z": 1}));
        bad(open, json!({"z": "1"}));
    }

    #[test]
    fn bounds_patterns_and_formats() {
        ok(json!({"minimum": 0, "maximum": 10}), json!(10));
        bad(json!({"minimum": 0, "maximum": 10}), json!(11));
        bad(json!({"minimum": 0}), json!(-1));
        ok(json!({"minLength": 1, "maxLength": 2}), json!("éé"));
        bad(json!({"minLength": 1}), json!(""));
        ok(json!({"pattern": "^[a-z]+$"}), json!("abc"));
        bad(json!({"pattern": "^[a-z]+$"}), json!("aBc"));
        ok(
            json!({"format": "uuid"}),
            json!("3f0c8a52-6b1e-4d7a-9c2f-1e5b7a9d4c60"),
        );
        bad(
            json!({"format": "uuid"}),
            json!("3f0c8a526b1e4d7a9c2f1e5b7a9d4c60"),
        );
        ok(
            json!({"format": "date-time"}),
            json!("2025-01-15T09:30:00.000Z"),
        );
        bad(json!({"format": "date-time"}), json!("2025-01-15 09:30"));
        // Keywords constrain only values of their own type.
        ok(json!({"minLength": 3, "format": "uuid"}), json!(5));
    }

    #[test]
    fn combinators_and_references() {
        let root = json!({"components": {"schemas": {"S": {"type": "string"}}}});
        let r = json!({"$ref": "#/components/schemas/S"});
        assert!(validate(&root, &r, &json!("x")).is_ok());
        assert!(validate(&root, &r, &json!(1)).is_err());
        assert!(validate(&root, &json!({"$ref": "#/nowhere"}), &json!(1)).is_err());
        let one_of = json!({"oneOf": [{"required": ["role"]}, {"required": ["roles"]}]});
        ok(one_of.clone(), json!({"role": "x"}));
        bad(one_of.clone(), json!({"role": "x", "roles": []}));
        bad(one_of, json!({}));
        ok(
            json!({"anyOf": [{"type": "null"}, {"type": "object"}]}),
            json!(null),
        );
        bad(
            json!({"anyOf": [{"type": "null"}, {"type": "object"}]}),
            json!(1),
        );
        ok(json!({"allOf": [{"minimum": 1}, {"maximum": 2}]}), json!(2));
        bad(json!({"allOf": [{"minimum": 1}, {"maximum": 2}]}), json!(3));
        bad(
            json!({"not": {"required": ["details"]}}),
            json!({"details": []}),
        );
        let cond = json!({
            "if": {"properties": {"isTemporary": {"const": true}}, "required": ["isTemporary"]},
            "then": {"required": ["temporaryRange"]}
        });
        ok(cond.clone(), json!({"isTemporary": false}));
        ok(
            cond.clone(),
            json!({"isTemporary": true, "temporaryRange": "1h"}),
        );
        bad(cond, json!({"isTemporary": true}));
        // An unknown keyword is an error, never a silent pass.
        bad(json!({"multipleOf": 2}), json!(3));
        bad(json!({"multipleOf": 2}), json!(4));
    }
}
