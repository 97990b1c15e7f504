//! The operator commands' HTTP client for the gateway's management API: builds
//! URLs safely, sends the credential, and turns every failure into one line.

use serde_json::Value;
use std::time::Duration;
use url::Url;

/// Applies to connecting and to the whole exchange: an operator command should
/// fail fast rather than hang a shell script.
const TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP methods the management API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// One management API call, built from the command line without any I/O.
/// Deliberately not `Debug`: the renew body carries an access token.
pub struct Request {
    pub method: Method,
    /// Path segments after the gateway URL; each is percent-encoded on its own,
    /// so an id containing `/` or `?` cannot reach another route.
    pub path: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    /// Whether to send the admin credential. Renewal must not: it is
    /// authenticated by the token in its body, and the contract says so.
    pub auth: bool,
}

impl Request {
    pub fn new(method: Method, path: Vec<String>) -> Self {
        Request {
            method,
            path,
            query: Vec::new(),
            body: None,
            auth: true,
        }
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn query(mut self, key: &'static str, value: Option<u64>) -> Self {
        if let Some(v) = value {
            self.query.push((key, v.to_string()));
        }
        self
    }
}

/// Why a call failed, worded for the `error: ...` line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid gateway URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the gateway at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{message} (HTTP {status})")]
    Http { status: u16, message: String },
    #[error("the gateway at {url} sent an answer that is not JSON (HTTP {status}): {detail}")]
    BadAnswer {
        url: String,
        status: u16,
        detail: String,
    },
}

/// A client bound to one gateway and (optionally) one credential.
pub struct Client {
    agent: ureq::Agent,
    base: Url,
    /// Shown in messages; the credential never is.
    base_display: String,
    admin_key: Option<String>,
}

impl Client {
    pub fn new(gateway: &str, admin_key: Option<String>) -> Result<Self, ClientError> {
        let base = parse_base(gateway)?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(TIMEOUT)
            .timeout(TIMEOUT)
            // The API never redirects; following one would replay a POST
            // somewhere we did not choose.
            .redirects(0)
            .user_agent(concat!("tokengate-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            agent,
            base_display: gateway.trim_end_matches('/').to_string(),
            base,
            admin_key: admin_key.filter(|k| !k.is_empty()),
        })
    }

    /// Sends the request and returns the JSON answer (`Null` for an empty one).
    pub fn send(&self, req: &Request) -> Result<Value, ClientError> {
        let url = build_url(&self.base, &req.path, &req.query);
        let mut r = self
            .agent
            .request(req.method.as_str(), url.as_str())
            .set("Accept", "application/json");
        if req.auth {
            if let Some(key) = &self.admin_key {
                r = r.set("Authorization", &format!("Bearer {key}"));
            }
        }
        let result = match &req.body {
            Some(body) => r.send_json(body),
            None => r.call(),
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(ureq::Error::Transport(t)) => {
                return Err(ClientError::Unreachable {
                    url: self.base_display.clone(),
                    detail: transport_detail(&t),
                })
            }
        };
        let status = resp.status();
        let location = resp.header("location").map(str::to_string);
        let text = resp.into_string().map_err(|e| ClientError::Unreachable {
            url: self.base_display.clone(),
            detail: format!("reading the answer: {e}"),
        })?;
        if (200..300).contains(&status) {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| ClientError::BadAnswer {
                url: self.base_display.clone(),
                status,
                detail: e.to_string(),
            });
        }
        let mut message = error_message(&text);
        if let Some(loc) = location.filter(|_| (300..400).contains(&status)) {
            message = format!("unexpected redirect to {loc}");
        }
        if status == 401 && req.auth && self.admin_key.is_none() {
            message.push_str(" (no credential given: set TOKENGATE_ADMIN_KEY or --admin-key)");
        }
        Err(ClientError::Http { status, message })
    }
}

/// Checks the gateway URL up front so a typo is reported as such, not as an
/// unreachable host.
fn parse_base(gateway: &str) -> Result<Url, ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: gateway.to_string(),
        reason: reason.to_string(),
    };
    let url = Url::parse(gateway).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" => {}
        // This build carries no TLS stack (ureq without TLS features): say so
        // instead of failing with a transport error after the fact.
        "https" => return Err(bad("https is not supported by this client; use http:// (for example through a local tunnel or TLS terminator)")),
        other => return Err(bad(&format!("unsupported scheme {other:?}; use http://"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(url)
}

/// Appends encoded segments to the base path (which may carry a prefix such as
/// `/gateway`) and the query pairs.
pub fn build_url(base: &Url, path: &[String], query: &[(&'static str, String)]) -> Url {
    let mut url = base.clone();
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty();
        segs.extend(path);
    }
    if !query.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in query {
            q.append_pair(k, v);
        }
    }
    url
}

/// The gateway's error bodies are Infisical-shaped (`{message, error, ...}`);
/// fall back to the raw text, shortened, for anything else (a proxy in between).
pub fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        match v.get("message") {
            Some(Value::String(s)) if !s.is_empty() => return s.clone(),
            Some(Value::Null) | None => {}
            Some(other) => return other.to_string(),
        }
        if let Some(Value::String(s)) = v.get("error") {
            return s.clone();
        }
    }
    let text = body.trim();
    if text.is_empty() {
        return "no message".to_string();
    }
    let short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        format!("{short}...")
    } else {
        short
    }
}

/// ureq's own Display repeats the URL; keep the kind and the cause only.
fn transport_detail(t: &ureq::Transport) -> String {
    let mut out = t.kind().to_string();
    if let Some(m) = t.message() {
        out.push_str(": ");
        out.push_str(m);
    }
    if let Some(src) = std::error::Error::source(t) {
        out.push_str(": ");
        out.push_str(&src.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_each_segment_and_keep_a_prefix() {
        let base = parse_base("http://gw:8080/prefix/").unwrap();
        let url = build_url(
            &base,
            &[
                "api".into(),
                "v1".into(),
                "identities".into(),
                "a/b?c".into(),
            ],
            &[("offset", "0".into()), ("limit", "5".into())],
        );
        assert_eq!(
            url.as_str(),
            "http://gw:8080/prefix/api/v1/identities/a%2Fb%3Fc?offset=0&limit=5"
        );
        let base = parse_base("http://127.0.0.1:8080").unwrap();
        let url = build_url(&base, &["api".into(), "v1".into()], &[]);
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/api/v1");
    }

    #[test]
    fn bad_gateway_urls_are_refused_up_front() {
        assert!(parse_base("https://gw").is_err());
        assert!(parse_base("ftp://gw").is_err());
        assert!(parse_base("gw:8080").is_err());
        assert!(parse_base("http://gw/?x=1").is_err());
    }

    #[test]
    fn error_messages_come_from_the_json_body() {
        let body =
            r#"{"reqId":"r","statusCode":404,"message":"identity not found","error":"NotFound"}"#;
        assert_eq!(error_message(body), "identity not found");
        assert_eq!(error_message(r#"{"error":"Forbidden"}"#), "Forbidden");
        assert_eq!(
            error_message("<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_message(""), "no message");
        let e = ClientError::Http {
            status: 404,
            message: "identity not found".into(),
        };
        assert_eq!(e.to_string(), "identity not found (HTTP 404)");
    }

    #[test]
    fn unreachable_gateway_is_one_clear_line() {
        // Port 1 on localhost: nothing listens there, the connect is refused at once.
        let client = Client::new("http://127.0.0.1:1", Some("k".into())).unwrap();
        let err = client
            .send(&Request::new(Method::Get, vec!["api".into(), "v1".into()]))
            .unwrap_err();
        let line = err.to_string();
        assert!(
            line.starts_with("cannot reach the gateway at http://127.0.0.1:1: "),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}
