//! The audit log: one JSON line per management change and token life event
//! (who, from where, which request, what it was before and after) and per
//! refused management call. Written synchronously, before the answer leaves,
//! so with `audit.required` a change whose record cannot be written is
//! refused (Vault's rule).

use crate::config::AuditConfig;
use crate::log_sink::Sink;
use crate::metrics::RecordLogMetrics;
use serde::Serialize;
use serde_json::Value;
use std::io;
use std::sync::Mutex;

/// Who asked. Never a secret: the admin key is only named, a token only by
/// its public ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// `admin_key`; `identity` (a management caller with a token); `token`
    /// (a token's holder renewing or revoking it); `unauthenticated`.
    pub kind: &'static str,
    pub identity_id: Option<String>,
    pub token_id: Option<String>,
}

impl Actor {
    pub fn admin_key() -> Actor {
        Actor {
            kind: "admin_key",
            identity_id: None,
            token_id: None,
        }
    }

    pub fn with_ids(kind: &'static str, identity_id: String, token_id: String) -> Actor {
        Actor {
            kind,
            identity_id: Some(identity_id),
            token_id: Some(token_id),
        }
    }
}

/// One audit record.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord<'a> {
    pub time: String,
    pub log: &'static str,
    /// `identity.created`, `token.revoked`, `management.refused`, ...
    pub event: &'a str,
    pub req_id: &'a str,
    pub client_ip: String,
    pub actor: &'a Actor,
    /// The ids the event is about (`identityId`, `tokenId`, `projectId`).
    pub target: &'a Value,
    pub before: Option<&'a Value>,
    pub after: Option<&'a Value>,
    /// For refusals: the status answered and its message.
    pub status: Option<u16>,
    pub reason: Option<&'a str>,
}

pub struct AuditLog {
    sink: Mutex<Sink>,
    required: bool,
    metrics: RecordLogMetrics,
}

impl AuditLog {
    /// Opens the destination: a file that cannot be opened stops start-up.
    pub fn start(cfg: &AuditConfig, metrics: RecordLogMetrics) -> io::Result<AuditLog> {
        Ok(AuditLog {
            sink: Mutex::new(Sink::open(&cfg.destination)?),
            required: cfg.required,
            metrics,
        })
    }
}

/// Writes nothing, for embedding and tests.
impl Default for AuditLog {
    fn default() -> AuditLog {
        AuditLog {
            sink: Mutex::new(Sink::off()),
            required: false,
            metrics: RecordLogMetrics::unregistered(),
        }
    }
}

impl AuditLog {
    pub fn is_on(&self) -> bool {
        !self
            .sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_off()
    }

    /// Must a change be refused when its record cannot be written?
    pub fn required(&self) -> bool {
        self.required
    }

    /// Writes one record now. A failure is counted and logged; the caller
    /// decides what it means for the request (`required`).
    pub fn write(&self, record: &AuditRecord<'_>) -> io::Result<()> {
        let result = serde_json::to_string(record)
            .map_err(io::Error::other)
            .and_then(|json| {
                let line = crate::log_sink::line(&json);
                self.sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .write_lines(&line)
            });
        if let Err(e) = &result {
            self.metrics.write_errors.inc();
            log::error!(
                "audit log: cannot write the {} record of {}: {e}",
                record.event,
                record.req_id
            );
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Destination;
    use serde_json::json;

    fn record<'a>(actor: &'a Actor, target: &'a Value, after: &'a Value) -> AuditRecord<'a> {
        AuditRecord {
            time: "2026-01-01T00:00:00Z".into(),
            log: "audit",
            event: "identity.created",
            req_id: "r1",
            client_ip: "127.0.0.1".into(),
            actor,
            target,
            before: None,
            after: Some(after),
            status: None,
            reason: None,
        }
    }

    #[test]
    fn records_are_lines_of_json_and_failures_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let cfg = AuditConfig {
            destination: Destination::File(path.clone()),
            required: true,
        };
        let log = AuditLog::start(&cfg, RecordLogMetrics::unregistered()).unwrap();
        assert!(log.is_on() && log.required());
        let actor = Actor::admin_key();
        let target = json!({"identityId": "i1"});
        let after = json!({"name": "a"});
        log.write(&record(&actor, &target, &after)).unwrap();
        let line = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["actor"]["kind"], "admin_key");
        assert_eq!(v["after"]["name"], "a");
        assert_eq!(v["before"], Value::Null);

        let metrics = RecordLogMetrics::unregistered();
        let full = AuditConfig {
            destination: Destination::File("/dev/full".into()),
            required: true,
        };
        let log = AuditLog::start(&full, metrics.clone()).unwrap();
        assert!(log.write(&record(&actor, &target, &after)).is_err());
        assert_eq!(metrics.write_errors.get(), 1);
        assert!(!AuditLog::default().is_on());
    }
}
