//! Reading client input: JSON bodies, paging parameters, path ids, and the
//! shape rules for names, role slugs and organization/project ids. Every
//! problem becomes a 400 (not JSON) or a 422 naming the field, never a panic.

use super::reply::ApiError;
use crate::model::{is_valid_project_id, is_valid_scope_id, FieldError};
use crate::token::Id;
use serde_json::{Map, Value};

/// The longest identity or token name.
pub const MAX_NAME_CHARS: usize = 64;
/// The largest whole number a JSON number written with a fraction or an
/// exponent is taken as: 2^53, past which doubles skip integers.
const MAX_EXACT_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// The longest role slug.
pub const MAX_SLUG_CHARS: usize = 64;
/// The longest organization or project id.
use crate::model::MAX_SCOPE_ID_CHARS;
/// `limit` bounds and default for every list.
pub const MAX_LIMIT: u64 = 100;
pub const DEFAULT_LIMIT: u64 = 20;

/// A JSON object body. An empty body reads as `{}` because clients send none
/// for "all defaults" and for action routes such as `.../revoke`.
pub(crate) struct Body(Map<String, Value>);

impl Body {
    pub fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Map::new()));
        }
        // The serde message is not echoed verbatim: position only, so a token
        // in a malformed body can never come back in the answer.
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Ok(Body(m)),
            Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
            Err(e) => Err(ApiError::bad_request(format!(
                "request body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))),
        }
    }

    pub fn fields(&self) -> Fields<'_> {
        Fields {
            obj: &self.0,
            at: String::new(),
        }
    }
}

/// Typed access to the fields of one JSON object; `at` prefixes field names
/// in errors (e.g. `roles[1].`). `null` reads as absent.
pub(crate) struct Fields<'v> {
    pub obj: &'v Map<String, Value>,
    pub at: String,
}

impl<'v> Fields<'v> {
    pub fn path(&self, key: &str) -> String {
        format!("{}{key}", self.at)
    }

    fn err(&self, key: &str, msg: impl Into<String>) -> FieldError {
        FieldError::new(&self.path(key), msg)
    }

    pub fn get(&self, key: &str) -> Option<&'v Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    pub fn str(&self, key: &str) -> Result<Option<&'v str>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(key, "must be a string")),
        }
    }

    pub fn required_str(&self, key: &str) -> Result<&'v str, FieldError> {
        self.str(key)?.ok_or_else(|| self.err(key, "is required"))
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            // `3600.0` and `36e2` are whole numbers too (JSON has one number
            // type; OpenAPI's integer and Infisical accept them): exactly,
            // within the range a double holds without rounding.
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && (0.0..=MAX_EXACT_DOUBLE).contains(f))
                        .map(|f| f as u64)
                })
                .map(Some)
                .ok_or_else(|| self.err(key, "must be a non-negative integer")),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(key, "must be true or false")),
        }
    }

    pub fn array(&self, key: &str) -> Result<Option<&'v Vec<Value>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.err(key, "must be an array")),
        }
    }
}

/// `offset` (default 0) and `limit` (1 to 100, default 20) from the query string.
pub(crate) fn paging(query: Option<&str>) -> Result<(u64, u64), FieldError> {
    let (mut offset, mut limit) = (None, None);
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "offset" if offset.is_none() => offset = Some(v),
            "limit" if limit.is_none() => limit = Some(v),
            _ => {}
        }
    }
    let offset = match offset {
        None => 0,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| FieldError::new("offset", "must be a non-negative integer"))?,
    };
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                FieldError::new("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))
            })?,
    };
    Ok((offset, limit))
}

/// A path id: anything that is not a UUID names nothing, so it is a 404.
pub(crate) fn path_id(raw: &str, what: &str) -> Result<Id, ApiError> {
    Id::parse(raw).ok_or_else(|| ApiError::not_found(format!("{what} not found")))
}

/// A display name: trimmed, 1 to 64 characters, no control characters (names
/// end up in log lines and injected headers).
pub(crate) fn name(field: &str, raw: &str, allow_empty: bool) -> Result<String, FieldError> {
    let s = raw.trim();
    let n = s.chars().count();
    if (n == 0 && !allow_empty) || n > MAX_NAME_CHARS {
        let min = if allow_empty { 0 } else { 1 };
        return Err(FieldError::new(
            field,
            format!("must be {min} to {MAX_NAME_CHARS} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s.to_string())
}

/// A role: a builtin role or a custom slug, both 1 to 64 of `[a-z0-9-]`.
pub(crate) fn role_slug(field: &str, raw: &str) -> Result<String, FieldError> {
    let s = raw.trim();
    let ok = (1..=MAX_SLUG_CHARS).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(FieldError::new(
            field,
            format!("must be a role slug: 1 to {MAX_SLUG_CHARS} lowercase letters, digits or '-'"),
        ));
    }
    Ok(s.to_string())
}

/// A project id in its one canonical spelling (`model::is_valid_project_id`).
pub(crate) fn project_id(raw: &str) -> Result<String, FieldError> {
    if !is_valid_project_id(raw) {
        return Err(FieldError::new(
            "projectId",
            format!(
                "must be 1 to {MAX_SCOPE_ID_CHARS} of a-z, 0-9, '-', '_', starting and ending with a letter or digit (a UUID with its hyphens)"
            ),
        ));
    }
    Ok(raw.to_string())
}

/// An organization id: 1 to 128 of `[A-Za-z0-9_.-]`. `.` and `..` are
/// refused because path normalisers elsewhere would rewrite them.
pub(crate) fn scope_id(field: &str, raw: &str) -> Result<String, FieldError> {
    if !is_valid_scope_id(raw) {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_SCOPE_ID_CHARS} of A-Z, a-z, 0-9, '_', '-', '.'"),
        ));
    }
    Ok(raw.to_string())
}
