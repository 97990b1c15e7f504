//! `log`, `access_log` and `audit`: how the process log is written, and where
//! the request and management-change records go.

use super::file::{LogFile, RecordLogFile};
use super::{AccessLogConfig, AuditConfig, Destination, LogConfig, Problems};

/// `destination` is off, stdout or file; `path` goes with file and only with it.
fn validate_destination(
    p: &mut Problems,
    key: &str,
    f: &RecordLogFile,
    default: &str,
) -> Destination {
    let d = match f.destination.as_deref().unwrap_or(default) {
        "off" => Destination::Off,
        "stdout" => Destination::Stdout,
        "file" => match &f.path {
            Some(path) if !path.as_os_str().is_empty() => Destination::File(path.clone()),
            _ => {
                p.add(&format!("{key}.path"), "is required with destination file");
                Destination::Off
            }
        },
        other => {
            p.add(
                &format!("{key}.destination"),
                format!("'{other}' is not off, stdout or file"),
            );
            Destination::Off
        }
    };
    if f.path.is_some() && !matches!(d, Destination::File(_)) {
        p.add(&format!("{key}.path"), "is only used with destination file");
    }
    d
}

/// Off unless configured: a busy gateway writes one line per request.
pub(super) fn validate_access_log(p: &mut Problems, f: &RecordLogFile) -> AccessLogConfig {
    let destination = validate_destination(p, "access_log", f, "off");
    if f.required.is_some() {
        p.add("access_log.required", "is an audit setting");
    }
    let queue = p.range("access_log.queue", f.queue.unwrap_or(65_536), 1, 1 << 20) as usize;
    AccessLogConfig { destination, queue }
}

/// On (stdout) unless configured: changes are rare and each one matters.
pub(super) fn validate_audit(p: &mut Problems, f: &RecordLogFile) -> AuditConfig {
    let destination = validate_destination(p, "audit", f, "stdout");
    if f.queue.is_some() {
        p.add(
            "audit.queue",
            "audit records are written before the change is answered",
        );
    }
    let required = f.required.unwrap_or(false);
    if required && destination == Destination::Off {
        p.add("audit.required", "needs a destination other than off");
    }
    AuditConfig {
        destination,
        required,
    }
}

/// `log.format` is text or json; `log.level` is env_logger directives, each
/// a level or `module=level`.
pub(super) fn validate_log(p: &mut Problems, l: &LogFile) -> LogConfig {
    let json = match l.format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            p.add("log.format", format!("'{other}' is not text or json"));
            false
        }
    };
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let valid = !l.level.is_empty()
        && l.level.split(',').all(|d| {
            let level = d.rsplit('=').next().unwrap_or("");
            let module_ok = d.split_once('=').is_none_or(|(m, _)| {
                !m.is_empty()
                    && m.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            });
            module_ok && LEVELS.contains(&level.to_ascii_lowercase().as_str())
        });
    if !valid {
        p.add(
            "log.level",
            format!(
                "'{}' is not a level (off, error, warn, info, debug, trace) or module=level list",
                l.level
            ),
        );
    }
    LogConfig {
        json,
        level: l.level.clone(),
    }
}
