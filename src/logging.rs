//! Process logging: env_logger's filtering (`RUST_LOG`) and output, with every
//! record, Pingora's own included, passed through `redact` before it is written.
//!
//! Redaction happens in the formatter, on the whole formatted record, so no
//! level, target or multi-line message can go around it; Pingora logs through
//! the `log` facade, so its debug and trace records (whole request headers,
//! raw bytes of malformed requests) come this way too. Secrets known only at
//! run time (the admin key) are registered once they are read.

use crate::redact::Redactor;
use std::io::Write;
use std::sync::RwLock;

static REDACTOR: RwLock<Redactor> = RwLock::new(Redactor::new());

/// The installed logger; a reload replaces what it holds (`reconfigure`).
static LOGGER: RwLock<Option<env_logger::Logger>> = RwLock::new(None);

/// Forwards every record to the logger `LOGGER` holds at the time.
struct Swappable;

impl log::Log for Swappable {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        read(&LOGGER).as_ref().is_some_and(|l| l.enabled(metadata))
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Some(l) = read(&LOGGER).as_ref() {
            l.log(record);
        }
    }

    fn flush(&self) {
        if let Some(l) = read(&LOGGER).as_ref() {
            l.flush();
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A logger on stderr as `cfg` says: `RUST_LOG` when set, else `log.level`;
/// text or one JSON object per line.
fn build(cfg: &crate::config::LogConfig) -> env_logger::Logger {
    let json = cfg.json;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(cfg.level.as_str()))
        // Pingora's body reader logs whole read buffers (request bodies, and
        // the next pipelined request's headers) at debug and trace: nothing
        // an operator needs, and the redaction's hardest input.
        .filter_module(
            "pingora_core::protocols::http::v1::body",
            log::LevelFilter::Info,
        )
        .format(move |buf, record| {
            let time = buf.timestamp().to_string();
            let line = if json {
                render_json(&time, record.level(), record.target(), record.args())
            } else {
                render(&time, record.level(), record.target(), record.args())
            };
            writeln!(buf, "{line}")
        })
        .build()
}

/// Installs the logger as the config's `log` says. A logger set up earlier
/// (by an embedding test) is left in place.
pub fn init_with(cfg: &crate::config::LogConfig) {
    if log::set_logger(&Swappable).is_ok() {
        reconfigure(cfg);
    }
}

/// Applies a reloaded `log` section: later records follow its format and level.
pub fn reconfigure(cfg: &crate::config::LogConfig) {
    let logger = build(cfg);
    log::set_max_level(logger.filter());
    *LOGGER
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(logger);
}

/// Hides `secret` in every later log line.
pub fn register_secret(secret: &str) {
    REDACTOR
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .add_secret(secret);
}

/// `text` with token-shaped and registered secrets hidden, as every log
/// line is; the access and audit logs pass their records through it too.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let redactor = REDACTOR
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match redactor.redact(text) {
        std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(text),
        std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s),
    }
}

/// One log line, redacted: `[time LEVEL target] message`, env_logger's layout.
fn render(time: &str, level: log::Level, target: &str, args: &std::fmt::Arguments<'_>) -> String {
    let line = format!("[{time} {level:<5} {target}] {args}");
    let redactor = REDACTOR
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    redactor.redact(&line).into_owned()
}

/// One log line as a JSON object (`time`, `level`, `target`, `message`),
/// redacted as a whole: redaction only puts `[REDACTED]` where token-shaped
/// or registered text was, which leaves the JSON valid.
fn render_json(
    time: &str,
    level: log::Level,
    target: &str,
    args: &std::fmt::Arguments<'_>,
) -> String {
    let line = serde_json::json!({
        "time": time,
        "level": level.as_str(),
        "target": target,
        "message": args.to_string(),
    })
    .to_string();
    let redactor = REDACTOR
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    redactor.redact(&line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{AccessToken, Id};

    #[test]
    fn json_lines_are_objects_and_redacted() {
        let token = AccessToken::generate(Id::random()).expose();
        let line = render_json(
            "2026-01-01T00:00:00Z",
            log::Level::Warn,
            "tokengate::proxy",
            &format_args!("a \"quoted\" {token}\nsecond line"),
        );
        assert!(!line.contains(&token[5..]), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "tokengate::proxy");
        assert_eq!(v["time"], "2026-01-01T00:00:00Z");
        assert_eq!(v["message"], "a \"quoted\" tgat_[REDACTED]\nsecond line");
        assert!(!line.contains('\n'), "one line: {line}");
    }

    #[test]
    fn every_line_is_redacted_with_registered_secrets() {
        let token = AccessToken::generate(Id::random()).expose();
        let key = "logging-test-admin-key-9d41c7";
        register_secret(key);
        let line = render(
            "2026-01-01T00:00:00Z",
            log::Level::Trace,
            "pingora_proxy",
            &format_args!(
                "GET /p/{token}?k={key} headers: {{\"authorization\": \"Bearer {key}\"}}"
            ),
        );
        assert!(!line.contains(&token[5..]), "{line}");
        assert!(!line.contains(key), "{line}");
        assert_eq!(
            line,
            "[2026-01-01T00:00:00Z TRACE pingora_proxy] GET /p/tgat_[REDACTED]?k=[REDACTED] \
             headers: {\"authorization\": \"[REDACTED]\"}"
        );
    }
}
