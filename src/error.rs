//! Error answers: the one place that turns a status and message into
//! Infisical's JSON error shape `{reqId, statusCode, message, error}`.

use serde::Serialize;

/// Infisical's error body. `details` is only set for validation failures.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody<'a> {
    pub req_id: &'a str,
    pub status_code: u16,
    pub message: &'a str,
    pub error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// The `error` name Infisical uses for a status.
pub fn error_name(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "PermissionDenied",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        408 => "RequestTimeout",
        413 => "PayloadTooLarge",
        415 => "UnsupportedMediaType",
        422 => "ValidationFailure",
        429 => "RateLimitExceeded",
        431 => "RequestHeaderFieldsTooLarge",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "InternalServerError",
    }
}

/// Serialises an error answer. Token-shaped text is hidden in the whole body:
/// messages may quote client input (a project id, a role), and error bodies
/// end up in client logs and proxies' logs.
pub fn error_json(
    status: u16,
    message: &str,
    req_id: &str,
    details: Option<serde_json::Value>,
) -> Vec<u8> {
    let body = ErrorBody {
        req_id,
        status_code: status,
        message,
        error: error_name(status),
        details,
    };
    // JSON leaves a token's characters unescaped, and the marker adds none
    // that need escaping, so redacting the text keeps it valid JSON.
    let json = serde_json::to_string(&body).unwrap_or_default();
    if let std::borrow::Cow::Owned(redacted) = crate::redact::tokens(&json) {
        return redacted.into_bytes();
    }
    json.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_matches_infisical() {
        let v: serde_json::Value =
            serde_json::from_slice(&error_json(401, "token expired", "req-1", None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"reqId": "req-1", "statusCode": 401, "message": "token expired", "error": "Unauthorized"})
        );
        assert_eq!(error_name(422), "ValidationFailure");
        assert_eq!(crate::request_id::fresh().len(), 20);
    }

    #[test]
    fn tokens_in_messages_and_details_are_hidden() {
        let token = crate::token::AccessToken::generate(crate::token::Id::random()).expose();
        let details = serde_json::json!([{"field": "x", "message": format!("got {token}")}]);
        let body = error_json(
            400,
            &format!("identity is already a member of project {token}"),
            "req-1",
            Some(details),
        );
        let text = String::from_utf8(body).unwrap();
        assert!(!text.contains(&token[5..]), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["message"],
            "identity is already a member of project tgat_[REDACTED]"
        );
        assert_eq!(v["details"][0]["message"], "got tgat_[REDACTED]");
    }
}
