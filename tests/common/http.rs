//! HTTP client helpers: ureq for ordinary requests (4xx/5xx are answers, not errors) and raw bytes over TCP for requests ureq would rewrite.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A response, whatever its status.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// Lowercase names, in arrival order, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// The body as JSON; panics with the body when it is not JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}: {}",
                self.status, self.body
            )
        })
    }

    /// First value of a header, name matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Panics with the body unless the status is `status`.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Asserts an error in Infisical's shape
    /// (`{reqId, statusCode, message, error}`) with this status, and returns
    /// its message.
    #[track_caller]
    pub fn expect_error(&self, status: u16) -> String {
        self.expect_status(status);
        let v = self.json();
        assert_eq!(
            v["statusCode"].as_u64(),
            Some(u64::from(status)),
            "statusCode field; body: {}",
            self.body
        );
        for field in ["reqId", "message", "error"] {
            assert!(
                v[field].is_string(),
                "error body lacks string field {field:?}: {}",
                self.body
            );
        }
        v["message"].as_str().unwrap_or_default().to_string()
    }
}

fn build_agent(pool: bool) -> ureq::Agent {
    let builder = ureq::AgentBuilder::new().timeout(TIMEOUT).redirects(0);
    // Without pooling every request gets its own connection: a gateway killed
    // and restarted between two requests cannot hand us a dead pooled socket.
    let builder = if pool {
        builder
    } else {
        builder.max_idle_connections(0)
    };
    builder.build()
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| build_agent(false))
}

fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Resp, String> {
    let mut req = agent.request(method, url);
    for (name, value) in headers {
        req = req.set(name, value);
    }
    let result = match body {
        Some(body) => {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                req = req.set("Content-Type", "application/json");
            }
            req.send_string(body)
        }
        None => req.call(),
    };
    let resp = match result {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(ureq::Error::Transport(t)) => return Err(format!("{method} {url}: {t}")),
    };
    let status = resp.status();
    let names = resp.headers_names();
    let mut seen = std::collections::HashSet::new();
    let mut out_headers = Vec::new();
    for name in names {
        let lower = name.to_ascii_lowercase();
        if seen.insert(lower.clone()) {
            for value in resp.all(&name) {
                out_headers.push((lower.clone(), value.to_string()));
            }
        }
    }
    let body = resp
        .into_string()
        .map_err(|e| format!("{method} {url}: reading body: {e}"))?;
    Ok(Resp {
        status,
        headers: out_headers,
        body,
    })
}

/// One request on a fresh connection. A body without a Content-Type header
/// is sent as `application/json`. ureq replaces a repeated header unless its
/// name starts with "x-"; use [`raw_http`] for exact bytes.
pub fn try_http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Resp, String> {
    send(agent(), method, url, headers, body)
}

/// Like [`try_http`]; panics when no HTTP answer arrives (refused, timeout).
#[track_caller]
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    try_http(method, url, headers, body).unwrap_or_else(|e| panic!("{e}"))
}

#[track_caller]
pub fn get(url: &str) -> Resp {
    http("GET", url, &[], None)
}

/// GET with `Authorization: Bearer <token>`.
#[track_caller]
pub fn get_with_token(url: &str, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    http("GET", url, &[("Authorization", &auth)], None)
}

/// A client that keeps connections alive between requests, for tests about
/// what happens on one reused connection.
pub struct Session {
    agent: ureq::Agent,
}

impl Session {
    pub fn new() -> Session {
        Session {
            agent: build_agent(true),
        }
    }

    pub fn try_http(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<Resp, String> {
        send(&self.agent, method, url, headers, body)
    }

    #[track_caller]
    pub fn http(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        self.try_http(method, url, headers, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

/// Builds request bytes exactly as given: headers in order, duplicates and
/// odd spellings kept, plus `Host`, `Connection: close` and, with a body,
/// `Content-Length`.
pub fn raw_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("Connection: close\r\n");
    if let Some(body) = body {
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    } else {
        req.push_str("\r\n");
    }
    req
}

/// Writes `raw_request` to `addr` ("127.0.0.1:P" or "http://127.0.0.1:P/...")
/// and returns the status and body. The request should say `Connection: close`
/// (see [`raw_request`]).
#[track_caller]
pub fn raw_http(addr: &str, raw_request: &str) -> (u16, String) {
    let resp = raw_http_resp(addr, raw_request);
    (resp.status, resp.body)
}

/// Like [`raw_http`], returning headers too.
#[track_caller]
pub fn raw_http_resp(addr: &str, raw_request: &str) -> Resp {
    try_raw_http(addr, raw_request).unwrap_or_else(|e| panic!("raw request to {addr}: {e}"))
}

pub fn try_raw_http(addr: &str, raw_request: &str) -> Result<Resp, String> {
    let host = addr.strip_prefix("http://").unwrap_or(addr);
    let host = host.split('/').next().unwrap_or(host);
    let sock: SocketAddr = host.parse().map_err(|e| format!("address {host:?}: {e}"))?;
    let stream = TcpStream::connect_timeout(&sock, TIMEOUT).map_err(|e| e.to_string())?;
    exchange(stream, raw_request)
}

/// Writes `raw_request` on a connected stream and reads one response, bounded in time.
pub fn exchange(mut stream: TcpStream, raw_request: &str) -> Result<Resp, String> {
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(raw_request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Stop as soon as one full response is in, in case the server keeps
        // the connection open despite `Connection: close`.
        if let Some(resp) = parse_response(&buf, false) {
            return Ok(resp);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no complete response within {TIMEOUT:?}; got {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !buf.is_empty() => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    parse_response(&buf, true).ok_or_else(|| {
        format!(
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        )
    })
}

/// Parses one HTTP/1.1 response; None while incomplete. At `eof`, a body
/// without a length is whatever arrived.
pub fn parse_response(buf: &[u8], eof: bool) -> Option<Resp> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let rest = &buf[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body: Vec<u8> = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        decode_chunked(rest)?
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..len)?.to_vec()
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if eof {
        rest.to_vec()
    } else {
        return None;
    };
    Some(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The body of a chunked message; None while the last chunk has not arrived.
fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
