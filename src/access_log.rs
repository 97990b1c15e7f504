//! The access log: one JSON line per request on the proxy listeners, built
//! on the request path and written by a thread of its own through a bounded
//! queue, so a slow disk never slows a request; when the queue is full the
//! record is dropped and counted (`tokengate_log_records_dropped_total`).

use crate::config::AccessLogConfig;
use crate::log_sink::Sink;
use crate::metrics::RecordLogMetrics;
use serde::Serialize;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest request target kept in a record, in bytes.
const MAX_TARGET: usize = 2048;

/// Lines written in one call at most, in bytes.
const BATCH: usize = 64 * 1024;

/// One request, as the access log shows it. Ids and names are text the
/// gateway itself produced or validated; the target is redacted.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessRecord<'a> {
    pub time: String,
    pub log: &'static str,
    pub req_id: &'a str,
    pub method: &'a str,
    /// The request target as received, with the values of secret-bearing
    /// query parameters replaced (`redact_target`).
    pub path: String,
    pub client_ip: String,
    pub identity_id: Option<String>,
    pub identity_name: Option<&'a str>,
    pub token_id: Option<String>,
    pub project: Option<&'a str>,
    /// `tokengate_requests_total`'s outcome label.
    pub outcome: &'static str,
    /// Why a request was refused: the deny code (`expired`, `ip_not_trusted`)
    /// or the refusal's message.
    pub reason: Option<&'a str>,
    /// The status sent to the client; 0 when none was (the client left).
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub request_bytes: usize,
    pub response_bytes: usize,
    pub duration_ms: f64,
    pub upstream_ms: Option<f64>,
}

/// Milliseconds with microsecond precision, for the record's durations.
pub fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// The current time as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Is `name` (a query parameter's name, percent-decoded) one whose value
/// may be a credential? Decided on the name's letters and digits alone,
/// case-insensitively, so `access_token`, `Access-Token` and `accessToken`
/// are one name; any name that ends in a credential word counts.
pub fn secret_bearing(name: &[u8]) -> bool {
    const ENDINGS: [&str; 14] = [
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "key",
        "signature",
        "sig",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "code",
        "session",
    ];
    let folded: String = String::from_utf8_lossy(name)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    ENDINGS.iter().any(|e| folded.ends_with(e)) || folded.ends_with("sessionid")
}

/// `target` (path and query as received, any bytes) for the log: at most
/// `MAX_TARGET` bytes, and every value of a secret-bearing query parameter
/// replaced by `[REDACTED]`. Both `&` and `;` separate parameters, since
/// some servers split on either.
pub fn redact_target(target: &[u8]) -> String {
    let target = &target[..target.len().min(MAX_TARGET)];
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    };
    let mut out = String::from_utf8_lossy(path).into_owned();
    let Some(query) = query else {
        return out;
    };
    out.push('?');
    let mut rest = query;
    loop {
        let end = rest
            .iter()
            .position(|&b| b == b'&' || b == b';')
            .unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.iter().position(|&b| b == b'=') {
            Some(eq) if secret_bearing(&crate::proxy::names::percent_decode(&pair[..eq])) => {
                out.push_str(&String::from_utf8_lossy(&pair[..eq]));
                out.push_str("=[REDACTED]");
            }
            _ => out.push_str(&String::from_utf8_lossy(pair)),
        }
        if end == rest.len() {
            return out;
        }
        out.push(char::from(rest[end]));
        rest = &rest[end + 1..];
    }
}

/// The access log: a queue and the thread that empties it.
pub struct AccessLog {
    queue: Option<SyncSender<Vec<u8>>>,
    metrics: RecordLogMetrics,
    stopping: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl AccessLog {
    /// Opens the destination and starts the writer; nothing when it is off.
    pub fn start(cfg: &AccessLogConfig, metrics: RecordLogMetrics) -> io::Result<AccessLog> {
        let sink = Sink::open(&cfg.destination)?;
        let stopping = Arc::new(AtomicBool::new(false));
        if sink.is_off() {
            return Ok(AccessLog {
                queue: None,
                metrics,
                stopping,
                writer: Mutex::new(None),
            });
        }
        let (tx, rx) = mpsc::sync_channel(cfg.queue);
        let writer = {
            let stopping = stopping.clone();
            let errors = metrics.write_errors.clone();
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || write_loop(&rx, sink, &stopping, &errors))?
        };
        Ok(AccessLog {
            queue: Some(tx),
            metrics,
            stopping,
            writer: Mutex::new(Some(writer)),
        })
    }

    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues one record, or counts it dropped when the writer is behind.
    pub fn write(&self, record: &AccessRecord<'_>) {
        let Some(queue) = &self.queue else { return };
        let Ok(json) = serde_json::to_string(record) else {
            self.metrics.write_errors.inc();
            return;
        };
        match queue.try_send(crate::log_sink::line(&json)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.metrics.dropped.inc(),
            Err(TrySendError::Disconnected(_)) => self.metrics.write_errors.inc(),
        }
    }

    /// Writes what is queued and stops the writer, waiting at most `wait`
    /// (a destination that blocks must not hold the gateway's exit).
    pub fn finish(&self, wait: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(handle) = handle else { return };
        let deadline = Instant::now() + wait;
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            let _ = handle.join();
        } else {
            log::warn!("access log: the writer did not finish within {wait:?}");
        }
    }
}

/// The writer thread: takes lines as they come, writes them in batches,
/// and once stopping is set, writes what is left and ends.
fn write_loop(
    rx: &Receiver<Vec<u8>>,
    mut sink: Sink,
    stopping: &AtomicBool,
    errors: &prometheus::IntCounter,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) if !stopping.load(Ordering::Relaxed) => continue,
            Err(_) => return,
        };
        batch.extend_from_slice(&first);
        let mut lines = 1u64;
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(line) => {
                    batch.extend_from_slice(&line);
                    lines += 1;
                }
                Err(_) => break,
            }
        }
        match sink.write_lines(&batch) {
            Ok(()) => failing = false,
            Err(e) => {
                errors.inc_by(lines);
                // Once per failing spell, not once per batch.
                if !failing {
                    log::error!("access log: cannot write: {e}");
                }
                failing = true;
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Destination;

    #[test]
    fn credential_names_are_recognised_in_any_spelling() {
        for name in [
            "token",
            "access_token",
            "Access-Token",
            "accessToken",
            "client_secret",
            "PASSWORD",
            "api_key",
            "apiKey",
            "X-Amz-Signature",
            "sig",
            "code",
            "sessionid",
            "auth",
        ] {
            assert!(secret_bearing(name.as_bytes()), "{name}");
        }
        for name in [
            "projectId",
            "workspaceId",
            "secretPath",
            "environment",
            "limit",
            "",
        ] {
            assert!(!secret_bearing(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn targets_keep_their_shape_and_lose_credential_values() {
        assert_eq!(redact_target(b"/v1/things"), "/v1/things");
        assert_eq!(
            redact_target(b"/v1/s?projectId=p1&access_token=abc;Api-Key=k&flag&=x&code=&z=1"),
            "/v1/s?projectId=p1&access_token=[REDACTED];Api-Key=[REDACTED]&flag&=x&code=[REDACTED]&z=1"
        );
        assert_eq!(
            redact_target(b"/a?acc%65ss_token=abc&token=1=2"),
            "/a?acc%65ss_token=[REDACTED]&token=[REDACTED]"
        );
        assert_eq!(redact_target(b"/a?"), "/a?");
        assert_eq!(redact_target(b"/\xff?\xfe=1"), "/\u{fffd}?\u{fffd}=1");
        let long = vec![b'a'; 5000];
        assert_eq!(redact_target(&long).len(), MAX_TARGET);
    }

    fn record(req_id: &str) -> AccessRecord<'_> {
        AccessRecord {
            time: now_rfc3339(),
            log: "access",
            req_id,
            method: "GET",
            path: "/x".into(),
            client_ip: "127.0.0.1".into(),
            identity_id: None,
            identity_name: None,
            token_id: None,
            project: None,
            outcome: "forwarded",
            reason: None,
            status: 200,
            upstream_status: Some(200),
            request_bytes: 0,
            response_bytes: 2,
            duration_ms: 1.5,
            upstream_ms: Some(1.0),
        }
    }

    #[test]
    fn records_reach_the_file_in_order_and_finish_writes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let cfg = AccessLogConfig {
            destination: Destination::File(path.clone()),
            queue: 1000,
        };
        let log = AccessLog::start(&cfg, RecordLogMetrics::unregistered()).unwrap();
        assert!(log.is_on());
        for i in 0..100 {
            log.write(&record(&format!("r{i}")));
        }
        log.finish(Duration::from_secs(5));
        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["log"], "access");
                assert_eq!(v["durationMs"], 1.5);
                v["reqId"].as_str().unwrap().to_string()
            })
            .collect();
        let expected: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn a_full_device_counts_write_errors_and_off_writes_nothing() {
        let cfg = AccessLogConfig {
            destination: Destination::File("/dev/full".into()),
            queue: 10,
        };
        let metrics = RecordLogMetrics::unregistered();
        let log = AccessLog::start(&cfg, metrics.clone()).unwrap();
        log.write(&record("a"));
        log.write(&record("b"));
        log.finish(Duration::from_secs(5));
        assert_eq!(metrics.write_errors.get(), 2);
        let off = AccessLog::start(
            &AccessLogConfig {
                destination: Destination::Off,
                queue: 1,
            },
            RecordLogMetrics::unregistered(),
        )
        .unwrap();
        assert!(!off.is_on());
        off.write(&record("c"));
    }
}
