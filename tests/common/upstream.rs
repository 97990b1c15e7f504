//! The API behind the gateway in tests: a real HTTP/1.1 echo server that records every request it receives.

use super::free_port;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// One request as the upstream saw it, after the gateway rewrote it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as on the request line.
    pub path: String,
    /// Every header line in arrival order, duplicates kept. Names are
    /// lowercase: hyper normalises them when parsing.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// First value of a header, name matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of a header, name matched case-insensitively.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    connections: AtomicU64,
    delay_ms: AtomicU64,
    status: AtomicU16,
}

/// An echo server on its own thread and tokio runtime; stopped on drop.
pub struct Upstream {
    port: u16,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Answers every request with 200 and a JSON echo of it
    /// (`{"method","path","headers":{name:[values]},"body"}`), except
    /// `/api/v3/secrets/raw[/NAME]`, which answers in Infisical's shape with
    /// secrets carrying the identity and project role the gateway injected.
    pub fn echo() -> Upstream {
        // Binding here rather than on the server thread makes the port known
        // before the constructor returns and leaves no window to lose it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        listener
            .set_nonblocking(true)
            .expect("nonblocking upstream listener");
        let port = listener.local_addr().expect("upstream addr").port();
        let state = Arc::new(State {
            status: AtomicU16::new(200),
            ..State::default()
        });
        let (tx, rx) = oneshot::channel();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("upstream-{port}"))
            .spawn(move || serve(listener, thread_state, rx))
            .expect("spawn upstream thread");
        Upstream {
            port,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// "http://127.0.0.1:P" of a port nothing listens on. The port stays bound
    /// (without listening) for the life of the test process, so no other
    /// test's server can take it and receive requests meant to fail.
    pub fn unreachable_url() -> String {
        static HELD: std::sync::OnceLock<(tokio::net::TcpSocket, u16)> = std::sync::OnceLock::new();
        let (_, port) = HELD.get_or_init(|| {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket for the unreachable port");
            socket
                .bind("127.0.0.1:0".parse().expect("loopback address"))
                .expect("bind the unreachable port");
            let port = socket.local_addr().expect("local address").port();
            (socket, port)
        });
        format!("http://127.0.0.1:{port}")
    }

    /// "http://127.0.0.1:P"
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("upstream lock").clone()
    }

    /// The most recent request; panics when there is none.
    pub fn last(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the upstream has received no request")
    }

    pub fn count(&self) -> usize {
        self.state.requests.lock().expect("upstream lock").len()
    }

    pub fn clear(&self) {
        self.state.requests.lock().expect("upstream lock").clear();
    }

    /// TCP connections accepted so far (to observe keep-alive and pooling).
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Delays every later answer, e.g. to trigger the gateway's read timeout.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Status code of every later echo answer (default 200); the body stays the echo.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: std::net::TcpListener, state: Arc<State>, mut stop: oneshot::Receiver<()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("upstream runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    state.connections.fetch_add(1, Ordering::SeqCst);
                    let state = state.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| handle(req, state.clone()));
                        // A client hanging up mid-request is not the upstream's failure.
                        let _ = http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
    });
    // Dropping the runtime here cancels the connection tasks, closing their sockets.
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    let path = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let rec = Recorded {
        method: parts.method.as_str().to_string(),
        path,
        headers,
        body,
    };
    state
        .requests
        .lock()
        .expect("upstream lock")
        .push(rec.clone());

    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }

    let (status, answer) = match secrets_answer(&rec) {
        Some(answer) => (200, answer),
        None => (state.status.load(Ordering::SeqCst), echo_answer(&rec)),
    };
    let resp = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .expect("valid echo response");
    Ok(resp)
}

fn echo_answer(rec: &Recorded) -> Value {
    let mut headers = Map::new();
    for (name, value) in &rec.headers {
        let entry = headers
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(Value::String(value.clone()));
        }
    }
    json!({
        "method": rec.method,
        "path": rec.path,
        "headers": headers,
        "body": rec.body_str(),
    })
}

/// Infisical's v3 raw-secrets answers, so the Infisical SDK can run against
/// the gateway: the secret values reveal what the gateway injected.
fn secrets_answer(rec: &Recorded) -> Option<Value> {
    let path = rec.path_only();
    let query = rec.path.split_once('?').map_or("", |(_, q)| q);
    let from_body = |field: &str| -> Option<String> {
        serde_json::from_slice::<Value>(&rec.body)
            .ok()?
            .get(field)?
            .as_str()
            .map(str::to_string)
    };
    let param = |name: &str| {
        query_param(query, name)
            .or_else(|| from_body(name))
            .unwrap_or_default()
    };
    let workspace = param("workspaceId");
    let environment = param("environment");
    let secret_path = Some(param("secretPath"))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_string());
    let value_of = |key: &str| -> String {
        match key {
            "IDENTITY" => rec.header("x-tokengate-identity-id"),
            "PROJECT_ROLE" => rec.header("x-tokengate-project-role"),
            _ => None,
        }
        .map(str::to_string)
        .or_else(|| from_body("secretValue"))
        .unwrap_or_default()
    };
    let secret = |n: usize, key: &str| {
        let id = format!("s{n}");
        json!({
            "id": id,
            "_id": id,
            "workspace": workspace,
            "environment": environment,
            "version": 1,
            "type": "shared",
            "secretKey": key,
            "secretValue": value_of(key),
            "secretComment": "",
            "secretPath": secret_path,
            "createdAt": "2025-01-01T00:00:00.000Z",
            "updatedAt": "2025-01-01T00:00:00.000Z",
            "secretValueHidden": false,
            "tags": [],
            "secretReminderNote": null,
            "secretReminderRepeatDays": null,
            "skipMultilineEncoding": false,
            "metadata": null,
            "secretMetadata": [],
        })
    };
    if path == "/api/v3/secrets/raw" && rec.method == "GET" {
        return Some(json!({
            "secrets": [secret(1, "IDENTITY"), secret(2, "PROJECT_ROLE")],
            "imports": [],
        }));
    }
    let name = path.strip_prefix("/api/v3/secrets/raw/")?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let key = percent_decode(name);
    Some(json!({ "secret": secret(1, &key) }))
}

/// First value of `name` in an x-www-form-urlencoded query.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let decoded = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match decoded {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
