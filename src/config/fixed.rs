//! What a reload may not change: the keys bound once at start.

use super::Config;

/// The keys that differ between `old` and `new` but cannot change while
/// the gateway runs (a reload that changes them is refused): the listeners
/// and their limits are bound at start (and so is whether a listener speaks
/// TLS; its certificates, client CA and ALPN are reloaded), the store is
/// opened once, the admin key read once, and the CAs trusted for the
/// upstream are loaded into Pingora's connector at start.
pub fn fixed_keys_changed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |key, same: bool| {
        if !same {
            changed.push(key);
        }
    };
    check("server.listen", old.listen == new.listen);
    check("server.tls.listen", old.tls_listen == new.tls_listen);
    check("server.threads", old.threads == new.threads);
    check(
        "server.grace_period_seconds",
        old.grace_period_seconds == new.grace_period_seconds,
    );
    check(
        "server.header_timeout_seconds",
        old.header_timeout_seconds == new.header_timeout_seconds,
    );
    check(
        "server.max_connections",
        old.max_connections == new.max_connections,
    );
    check(
        "server.upgrade_socket",
        old.upgrade_socket == new.upgrade_socket,
    );
    check("admin.listen", old.admin_listen == new.admin_listen);
    check("admin.lockout", old.lockout == new.lockout);
    // A listener added or removed already says so.
    check(
        "admin.console",
        old.admin_listen != new.admin_listen || old.console == new.console,
    );
    check(
        "admin.tls (on or off)",
        old.admin_tls.is_some() == new.admin_tls.is_some(),
    );
    check(
        "admin.key_env / admin.key_file",
        old.admin_key_env == new.admin_key_env && old.admin_key_file == new.admin_key_file,
    );
    check("store", old.store == new.store);
    check(
        "upstream.ca_file",
        old.upstream.ca_file == new.upstream.ca_file,
    );
    changed
}
