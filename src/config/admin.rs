//! `admin`: the admin listener (its address, TLS and key source), the
//! lockout of addresses that keep failing authentication, the console's
//! path and the host names a browser may use.

use super::file::{AdminFile, ConsoleFile, LockoutFile};
use super::{env_name, tls, Problems, TlsConfig};
use crate::lockout::LockoutConfig;
use std::net::SocketAddr;

/// `admin.listen`, `admin.tls` and `admin.api_key_env`. The listener needs
/// an address no proxy listener has.
pub(super) fn validate_listener(
    p: &mut Problems,
    f: &AdminFile,
    listen: &[SocketAddr],
    tls_listen: &[SocketAddr],
) -> (Option<SocketAddr>, Option<TlsConfig>) {
    let admin_listen = f.listen.as_deref().and_then(|s| p.addr("admin.listen", s));
    if let Some(a) = admin_listen.filter(|a| listen.contains(a) || tls_listen.contains(a)) {
        p.add(
            "admin.listen",
            format!("{a} is also a proxy listener; the admin listener needs its own address"),
        );
    }
    let admin_tls = tls::validate_admin(p, f.tls.as_ref(), admin_listen.is_some());
    if let Some(env) = &f.api_key_env {
        env_name(p, "admin.api_key_env", env);
    }
    (admin_listen, admin_tls)
}

/// `admin.lockout`, in milliseconds as `crate::lockout` counts.
pub(super) fn lockout(p: &mut Problems, l: &LockoutFile) -> LockoutConfig {
    LockoutConfig {
        threshold: p.range("admin.lockout.threshold", l.threshold, 0, 1_000_000) as u32,
        window_ms: 1000 * p.range("admin.lockout.window_seconds", l.window_seconds, 1, 86_400),
        duration_ms: 1000
            * p.range(
                "admin.lockout.duration_seconds",
                l.duration_seconds,
                1,
                86_400,
            ),
    }
}

/// `admin.console`: its path when it is served. The path is a directory
/// (`/` at both ends) of plain segments, and claims none of the admin
/// listener's own paths, which would otherwise stop answering.
pub(super) fn validate_console(
    p: &mut Problems,
    f: &ConsoleFile,
    admin_listener: bool,
) -> Option<String> {
    if !f.enabled || !admin_listener {
        return None;
    }
    let path = f.path.as_str();
    let plain = path.len() > 2
        && path.starts_with('/')
        && path.ends_with('/')
        && path[1..path.len() - 1].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if !plain {
        p.add(
            "admin.console.path",
            format!("'{path}' is not a directory path like /ui/ (letters, digits, '-', '_', '.')"),
        );
        return None;
    }
    let taken = [
        "/api/",
        "/healthz/",
        "/readyz/",
        "/metrics/",
        "/reload/",
        "/openapi.json/",
    ];
    if let Some(t) = taken
        .iter()
        .find(|t| path.to_ascii_lowercase().starts_with(**t))
    {
        p.add(
            "admin.console.path",
            format!(
                "'{path}' is under {}, which the admin listener answers itself",
                t.trim_end_matches('/')
            ),
        );
        return None;
    }
    Some(path.to_string())
}

/// `admin.allowed_hosts`: plain DNS names (an address needs no entry).
pub(super) fn validate_allowed_hosts(p: &mut Problems, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let plain = !n.is_empty()
            && n.len() <= 253
            && n.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if plain {
            out.push(n);
        } else {
            p.add(
                &format!("admin.allowed_hosts[{i}]"),
                format!("'{name}' is not a host name (no port, scheme or path)"),
            );
        }
    }
    out
}
