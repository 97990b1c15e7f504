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

/// Installs the logger (`RUST_LOG`, default `info`) on stderr. A logger set
/// up earlier (by an embedding test) is left in place.
pub fn init() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        // Pingora's body reader logs whole read buffers (request bodies, and
        // the next pipelined request's headers) at debug and trace: nothing
        // an operator needs, and the redaction's hardest input.
        .filter_module(
            "pingora_core::protocols::http::v1::body",
            log::LevelFilter::Info,
        )
        .format(|buf, record| {
            let line = render(
                &buf.timestamp().to_string(),
                record.level(),
                record.target(),
                record.args(),
            );
            writeln!(buf, "{line}")
        })
        .try_init();
}

/// Hides `secret` in every later log line.
pub fn register_secret(secret: &str) {
    REDACTOR
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .add_secret(secret);
}

/// One log line, redacted: `[time LEVEL target] message`, env_logger's layout.
fn render(time: &str, level: log::Level, target: &str, args: &std::fmt::Arguments<'_>) -> String {
    let line = format!("[{time} {level:<5} {target}] {args}");
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
