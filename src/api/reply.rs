//! What a management handler answers: success bodies, and the mapping of every
//! failure (client mistake, refusal, store outage) to a status and JSON error.

use super::ApiResponse;
use crate::auth::Deny;
use crate::error::error_json;
use crate::model::FieldError;
use crate::rate_limit::Refusal;
use crate::store::StoreError;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// Why a management request failed. Messages never contain a token.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// A client-facing refusal with its status.
    Status(u16, String),
    /// The same, with headers that go with the status (`Allow` on a 405,
    /// `Retry-After` on a lockout's 429).
    StatusWith(u16, String, Vec<(&'static str, String)>),
    /// 422 naming the offending field.
    Validation(FieldError),
    /// The store could not answer: 503 with a generic message.
    Store(StoreError),
    /// The caller's identity is over its rate limit: 429 with `Retry-After`
    /// and the rate-limit headers, as on the request path.
    RateLimited(Refusal),
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::Status(400, msg.into())
    }

    pub fn unauthorized(msg: impl Into<String>) -> ApiError {
        ApiError::Status(401, msg.into())
    }

    pub fn forbidden(msg: impl Into<String>) -> ApiError {
        ApiError::Status(403, msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError::Status(404, msg.into())
    }

    /// The methods the route takes, in `Allow` (RFC 9110) and in the message.
    pub fn method_not_allowed(allowed: &[&str]) -> ApiError {
        let list = allowed.join(", ");
        ApiError::StatusWith(
            405,
            format!("method not allowed on this route; use {list}"),
            vec![("allow", list)],
        )
    }

    pub fn into_response(self, req_id: &str) -> ApiResponse {
        match self {
            ApiError::Status(status, msg) => ApiResponse {
                status,
                body: error_json(status, &msg, req_id, None),
                headers: Vec::new(),
            },
            ApiError::StatusWith(status, msg, headers) => ApiResponse {
                status,
                body: error_json(status, &msg, req_id, None),
                headers,
            },
            ApiError::RateLimited(r) => ApiResponse {
                status: 429,
                body: error_json(429, &r.message(), req_id, None),
                headers: r.headers().into(),
            },
            ApiError::Validation(e) => {
                let mut detail = Map::new();
                detail.insert("field".into(), Value::String(e.field.clone()));
                detail.insert("message".into(), Value::String(e.message.clone()));
                let details = Value::Array(vec![Value::Object(detail)]);
                ApiResponse {
                    status: 422,
                    body: error_json(422, &e.to_string(), req_id, Some(details)),
                    headers: Vec::new(),
                }
            }
            ApiError::Store(e) => {
                // The detail is for the operator; the client learns only to retry.
                log::error!("management API {req_id}: {e}");
                ApiResponse {
                    status: 503,
                    body: error_json(
                        503,
                        "the token store is unavailable; try again later",
                        req_id,
                        None,
                    ),
                    headers: Vec::new(),
                }
            }
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> ApiError {
        ApiError::Validation(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::Store(e)
    }
}

impl From<Deny> for ApiError {
    fn from(d: Deny) -> ApiError {
        match d {
            Deny::RateLimited(r) => ApiError::RateLimited(r),
            d => ApiError::Status(d.status(), d.message()),
        }
    }
}

/// A JSON object with one key, Infisical's envelope (`{"identity": {...}}`).
pub(crate) struct Keyed<T>(pub &'static str, pub T);

impl<T: Serialize> Serialize for Keyed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0, &self.1)?;
        m.end()
    }
}

/// A 200 answer with `body` as JSON.
pub(crate) fn ok<T: Serialize>(body: &T) -> Result<ApiResponse, ApiError> {
    match serde_json::to_vec(body) {
        Ok(body) => Ok(ApiResponse {
            status: 200,
            body,
            headers: Vec::new(),
        }),
        // Our views hold only strings, numbers and lists, so this cannot
        // happen; if it ever does, fail like an outage rather than a 500.
        Err(e) => Err(ApiError::Store(StoreError::Corrupt(format!(
            "cannot serialise the answer: {e}"
        )))),
    }
}

/// A 200 answer `{message}`.
pub(crate) fn message(msg: &'static str) -> Result<ApiResponse, ApiError> {
    ok(&Keyed("message", msg))
}
