//! A deliberately lenient upstream for project-boundary tests: it records, for every request, the set of project ids some permissive framework could read from it.
//!
//! Frameworks disagree on how to read a request: some decode `%2f` before
//! splitting a path or strip `;params` from segments, PHP reads `workspace.Id`
//! as `workspace_Id`, Rails reads `a[workspaceId]`, many parse a body as JSON
//! or as a form whatever its Content-Type, and JSON parsers keep the first or
//! the last of a repeated key; Python's `json.loads` decodes UTF-16 bytes,
//! Werkzeug reads `boundary=a b` as `a`, IIS and Symfony route on
//! `X-Original-URL`, Rails and older Spring drop a `.json` suffix, legacy
//! cookie parsers split at `,`. This server takes the union of those readings,
//! so a gateway that forwards a request must have verified every id in it.
//!
//! It speaks HTTP/1.1 by hand rather than through hyper because hyper refuses
//! the odd request targets whose reading is the point. The gateway's injected
//! `x-tokengate-project-id` is never a source: it is recorded on its own,
//! under every spelling that normalises to it, since a lenient reader of that
//! header would also accept `x_tokengate_project_id`.

mod body;
mod reading;

use reading::fold_bytes;
pub use reading::{claims, injected};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Response header that marks an answer as coming from this upstream, so a
/// test can tell it from an answer the gateway wrote itself.
pub const MARKER: &str = "x-lenient-upstream";

const IO_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1 << 20;

/// One request as this upstream read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Every project id the request could be read as naming.
    pub claimed: BTreeSet<String>,
    /// Values of the injected project header (any spelling), in arrival order.
    pub injected: Vec<String>,
    /// False when the request could not be read whole; `claimed` is then partial.
    pub complete: bool,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

/// The server on its own accept thread, one thread per connection; stopped on drop.
pub struct Lenient {
    port: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Lenient {
    pub fn start() -> Lenient {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind lenient upstream");
        let port = listener.local_addr().expect("lenient upstream addr").port();
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("lenient-{port}"))
            .spawn(move || accept_loop(listener, thread_shared))
            .expect("spawn lenient upstream");
        Lenient {
            port,
            shared,
            thread: Some(thread),
        }
    }

    /// "http://127.0.0.1:P"
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// "127.0.0.1:P"
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn count(&self) -> usize {
        self.shared.seen.lock().expect("lenient lock").len()
    }

    /// Requests received after the first `n`.
    pub fn since(&self, n: usize) -> Vec<Seen> {
        let seen = self.shared.seen.lock().expect("lenient lock");
        seen.get(n..).map(<[Seen]>::to_vec).unwrap_or_default()
    }
}

impl Drop for Lenient {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(
            &format!("127.0.0.1:{}", self.port)
                .parse()
                .expect("loopback address"),
            Duration::from_secs(1),
        );
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                // Connection threads end on their own within IO_TIMEOUT.
                let _ = std::thread::Builder::new()
                    .name("lenient-conn".into())
                    .spawn(move || serve(stream, &shared));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// A request as bytes: head split into lines, body de-chunked.
struct Raw {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    if shared.stop.load(Ordering::SeqCst) {
        return;
    }
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let (raw, complete) = match read_request(&mut stream) {
        Ok(raw) => (raw, true),
        Err(Some(partial)) => (partial, false),
        Err(None) => return,
    };
    let seen = Seen {
        claimed: claims(&raw.target, &raw.headers, &raw.body),
        injected: injected(&raw.headers),
        method: raw.method,
        target: raw.target,
        complete,
    };
    let answer = serde_json::json!({
        "claimed": seen.claimed,
        "injected": seen.injected,
        "complete": seen.complete,
    })
    .to_string();
    // Recorded before answering, so the test sees it once the gateway answers.
    shared.seen.lock().expect("lenient lock").push(seen);
    let status = if complete {
        "200 OK"
    } else {
        "400 Bad Request"
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{MARKER}: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = stream.write_all(resp.as_bytes());
    let _ = stream.flush();
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request. `Err(None)` when nothing arrived (a probe or a closed
/// pooled connection); `Err(Some(partial))` when the head arrived but the
/// body could not be read whole.
fn read_request(stream: &mut TcpStream) -> Result<Raw, Option<Raw>> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut fill = |buf: &mut Vec<u8>| -> bool {
        if Instant::now() >= deadline || buf.len() > MAX_HEAD + MAX_BODY {
            return false;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    };
    let (head_end, body_start) = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break (i, i + 4);
        }
        if let Some(i) = find(&buf, b"\n\n") {
            break (i, i + 2);
        }
        if buf.len() > MAX_HEAD || !fill(&mut buf) {
            if buf.is_empty() {
                return Err(None);
            }
            return Err(Some(parse_head(&buf)));
        }
    };
    let mut raw = parse_head(&buf[..head_end]);
    let header = |name: &str| {
        raw.headers
            .iter()
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let chunked = header("transfer-encoding")
        .iter()
        .any(|v| v.contains("chunked"));
    let length = header("content-length")
        .iter()
        .find_map(|v| v.trim().parse::<usize>().ok());
    if chunked {
        loop {
            if let Some(body) = dechunk(&buf[body_start..]) {
                raw.body = body;
                return Ok(raw);
            }
            if !fill(&mut buf) {
                return Err(Some(raw));
            }
        }
    }
    let want = length.unwrap_or(0).min(MAX_BODY);
    while buf.len() < body_start + want {
        if !fill(&mut buf) {
            return Err(Some(raw));
        }
    }
    raw.body = buf[body_start..body_start + want].to_vec();
    Ok(raw)
}

fn parse_head(head: &[u8]) -> Raw {
    let text = fold_bytes(head);
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let parts: Vec<&str> = line.split(' ').collect();
    let method = parts.first().copied().unwrap_or_default().to_string();
    // Spaces inside the target are kept: a lenient reader takes everything
    // between the method and the version.
    let end = match parts.last() {
        Some(v) if parts.len() > 2 && v.starts_with("HTTP/") => parts.len() - 1,
        _ => parts.len(),
    };
    let target = parts.get(1..end).map(|p| p.join(" ")).unwrap_or_default();
    let headers = lines
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            let name = String::from_utf8_lossy(&l[..colon]).trim().to_string();
            let value = l[colon + 1..].trim_ascii().to_vec();
            Some((name, value))
        })
        .collect();
    Raw {
        method,
        target,
        headers,
        body: Vec::new(),
    }
}

/// The body of a chunked message; None until the last chunk is in.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    // Each pass consumes at least one line, so the loop ends with the data.
    loop {
        let line_end = find(data, b"\n")?;
        let line = String::from_utf8_lossy(&data[..line_end]);
        let size =
            usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16).ok()?;
        data = &data[line_end + 1..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size..)?;
        data = data
            .strip_prefix(b"\r\n")
            .or_else(|| data.strip_prefix(b"\n"))?;
    }
}
