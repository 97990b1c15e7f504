//! Unit tests of `config::parse` across the sections; the store's and the
//! project templates' own tests sit next to them.

use super::*;
use crate::rate_limit::Per;
use crate::routes::{Auth, BodyRule, ProjectRule};

pub(super) const MINIMAL: &str =
    "server: {listen: ['127.0.0.1:8080']}\nupstream: {url: 'http://127.0.0.1:3000'}\n";

pub(super) fn errors(yaml: &str) -> String {
    parse(yaml).unwrap_err().to_string()
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.threads, 2);
    assert!(matches!(c.store, StoreConfig::Embedded { .. }));
    assert_eq!(c.headers.identity_id, "x-tokengate-identity-id");
    assert!(!c.forward_authorization);
    assert_eq!(c.upstream.port, 3000);
    // Membership checks are on unless turned off explicitly, and
    // Infisical's project-scoped APIs require a project.
    assert_eq!(c.project_sources.len(), 13);
    assert_eq!(
        c.routes.select(None, "/api/v3/secrets/raw").project,
        ProjectRule::Required
    );
    assert_eq!(
        c.routes.select(None, "/api/v1/workspace/p1/tags").project,
        ProjectRule::Required
    );
    assert_eq!(
        c.routes.select(None, "/api/v1/workspace").project,
        ProjectRule::Optional
    );
    let off = parse(&format!("{MINIMAL}project: {{sources: []}}\n")).unwrap();
    assert!(off.project_sources.is_empty());
    assert!(off.routes.all().is_empty());
}

#[test]
fn routes() {
    let c = parse(&format!(
        "{MINIMAL}routes:\n  - {{path: /api/*/secrets, project: required}}\n  - {{path: /up, body: no-project}}\n  - {{path: /status, auth: public}}\npublic_routes: [/health]\n"
    ))
    .unwrap();
    assert_eq!(c.routes.all().len(), 4);
    assert_eq!(c.routes.select(None, "/up/x").body, BodyRule::NoProject);
    assert_eq!(c.routes.select(None, "/status").auth, Auth::Public);
    assert_eq!(c.routes.select(None, "/health/x").auth, Auth::Public);
    // Given routes replace the defaults.
    assert_eq!(
        c.routes.select(None, "/api/v1/folders").project,
        ProjectRule::Optional
    );
    for (bad, key) in [
        ("routes: [{path: x}]", "routes[0].path"),
        ("routes: [{path: /a, auth: maybe}]", "routes[0].auth"),
        (
            "routes: [{path: /a, project: sometimes}]",
            "routes[0].project",
        ),
        ("routes: [{path: /a, body: skip}]", "routes[0].body"),
        (
            "routes: [{path: /a, auth: public, project: required}]",
            "routes[0]",
        ),
        ("routes: [{path: /a, wat: 1}]", "wat"),
        (
            "routes: [{path: /%C3%A9, project: required}]",
            "routes[0].path",
        ),
        ("public_routes: [/a, b]", "public_routes[1]"),
        (
            "routes: [{path: /a, project: required}]\nproject: {sources: []}",
            "routes[0].project",
        ),
        (
            "forward_auth: {path: /_tokengate/auth}",
            "forward_auth.describe",
        ),
        (
            "forward_auth: {path: /_tokengate/auth, describe: guess}",
            "forward_auth.describe",
        ),
        (
            "forward_auth: {path: /, describe: path}",
            "forward_auth.path",
        ),
        (
            "forward_auth: {path: /a/, describe: path}",
            "forward_auth.path",
        ),
        (
            "forward_auth: {path: /api/auth, describe: path}",
            "forward_auth.path",
        ),
        (
            "forward_auth: {path: /a/../b, describe: path}",
            "forward_auth.path",
        ),
        (
            "forward_auth: {path: /a*, describe: path}",
            "forward_auth.path",
        ),
    ] {
        let e = errors(&format!("{MINIMAL}{bad}\n"));
        assert!(e.contains(key), "{bad}: {e}");
    }
}

#[test]
fn route_rate_limits() {
    let c = parse(&format!(
        "{MINIMAL}routes:\n  - {{path: /api, rate_limit: {{requests: 10, window_seconds: 1}}}}\n  - {{path: /bulk, rate_limit: {{requests: 5, window_seconds: 60, burst: 1, per: token}}}}\n  - {{path: /free}}\n"
    ))
    .unwrap();
    let api = c.routes.select(None, "/api/x").rate_limit.unwrap();
    assert_eq!(
        (api.requests, api.window_seconds, api.burst, api.per),
        (10, 1, 10, Per::Identity),
        "burst defaults to requests, per to identity"
    );
    let bulk = c.routes.select(None, "/bulk").rate_limit.unwrap();
    assert_eq!((bulk.burst, bulk.per), (1, Per::Token));
    assert_eq!(c.routes.select(None, "/free").rate_limit, None);
    for (bad, key) in [
        (
            "{path: /a, rate_limit: {requests: 0, window_seconds: 1}}",
            "routes[0].rate_limit.requests",
        ),
        (
            "{path: /a, rate_limit: {requests: 1, window_seconds: 90000}}",
            "routes[0].rate_limit.window_seconds",
        ),
        (
            "{path: /a, rate_limit: {requests: 2, window_seconds: 86400, burst: 3}}",
            "routes[0].rate_limit.burst",
        ),
        (
            "{path: /a, rate_limit: {requests: 1, window_seconds: 1, per: org}}",
            "routes[0].rate_limit.per",
        ),
        (
            "{path: /a, auth: public, rate_limit: {requests: 1, window_seconds: 1}}",
            "routes[0].rate_limit",
        ),
        ("{path: /a, rate_limit: {requests: 1, window: 1}}", "window"),
    ] {
        let e = errors(&format!("{MINIMAL}routes: [{bad}]\n"));
        assert!(e.contains(key), "{bad}: {e}");
    }
}

#[test]
fn connection_limits_have_defaults_and_ranges() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.keepalive_timeout_seconds, 75);
    assert_eq!(c.header_timeout_seconds, 60);
    assert_eq!(c.max_connections, 50_000);
    let c = parse(
        "server: {listen: ['127.0.0.1:8080'], keepalive_timeout_seconds: 2, header_timeout_seconds: 1, max_connections: 3}\nupstream: {url: 'http://a'}\n",
    )
    .unwrap();
    assert_eq!(
        (
            c.keepalive_timeout_seconds,
            c.header_timeout_seconds,
            c.max_connections
        ),
        (2, 1, 3)
    );
    let e = errors(
        "server: {listen: ['127.0.0.1:8080'], keepalive_timeout_seconds: 0, header_timeout_seconds: 3601, max_connections: -1}\nupstream: {url: 'http://a'}\n",
    );
    for key in [
        "server.keepalive_timeout_seconds: 0 is out of range (1 to 3600)",
        "server.header_timeout_seconds: 3601 is out of range (1 to 3600)",
        "server.max_connections: -1 is out of range (1 to 1000000)",
    ] {
        assert!(e.contains(key), "{key}: {e}");
    }
    let e = errors(
        "server: {listen: ['127.0.0.1:8080'], keepalive_timeout: 5}\nupstream: {url: 'http://a'}\n",
    );
    assert!(e.contains("keepalive_timeout"), "{e}");
}

#[test]
fn example_config_is_valid() {
    let text = include_str!("../../config/tokengate.yaml");
    let c = parse(text).unwrap();
    assert_eq!(c.project_sources.len(), 13);
    assert_eq!(c.routes.all().len(), 7);
}

#[test]
fn unknown_key_is_named() {
    let e = errors(&format!("{MINIMAL}server2: 1\n"));
    assert!(e.contains("server2"), "{e}");
    let e = errors("server: {listen: ['127.0.0.1:1'], lisen: 1}\nupstream: {url: 'http://a'}\n");
    assert!(e.contains("lisen"), "{e}");
}

#[test]
fn admin_listener_needs_its_own_address() {
    let e = errors(
        "server: {listen: ['127.0.0.1:8080']}\nadmin: {listen: '127.0.0.1:8080'}\nupstream: {url: 'http://127.0.0.1:3000'}\n",
    );
    assert!(e.contains("admin.listen"), "{e}");
}

#[test]
fn bad_values_name_their_keys() {
    let e = errors(
        "server: {listen: ['nope'], threads: 0}\nupstream: {url: 'ftp://x'}\ntrusted_proxies: ['10.0.0.0/33']\nstore: {kind: redis}\n",
    );
    for key in [
        "server.listen[0]",
        "server.threads",
        "upstream.url",
        "trusted_proxies[0]",
        "store.url",
    ] {
        assert!(e.contains(key), "{key} missing in {e}");
    }
}

#[test]
fn log_format_and_level() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.log,
        LogConfig {
            json: false,
            level: "info".into()
        }
    );
    let c = parse(&format!(
        "{MINIMAL}log: {{format: json, level: 'warn,tokengate=debug'}}\n"
    ))
    .unwrap();
    assert!(c.log.json);
    assert_eq!(c.log.level, "warn,tokengate=debug");
    let e = errors(&format!("{MINIMAL}log: {{format: xml}}\n"));
    assert!(e.contains("log.format"), "{e}");
    for bad in ["loud", "", "tokengate=", "=info", "a b=info"] {
        let e = errors(&format!("{MINIMAL}log: {{level: '{bad}'}}\n"));
        assert!(e.contains("log.level"), "{bad:?}: {e}");
    }
}

#[test]
fn only_live_keys_may_change_on_reload() {
    let old = parse(MINIMAL).unwrap();
    let live = parse(&format!(
        "{MINIMAL}trusted_proxies: ['10.0.0.0/8']\npublic_routes: ['/open']\n\
         log: {{level: debug}}\naccess_log: {{destination: stdout}}\n"
    ))
    .unwrap();
    assert!(fixed_keys_changed(&old, &live).is_empty());
    let fixed = parse(
        "server: {listen: ['127.0.0.1:8081'], threads: 3}\n\
         upstream: {url: 'https://127.0.0.1:443', ca_file: /x.pem}\n\
         admin: {listen: '127.0.0.1:9999'}\nstore: {kind: embedded, path: other.redb}\n",
    )
    .unwrap();
    assert_eq!(
        fixed_keys_changed(&old, &fixed),
        [
            "server.listen",
            "server.threads",
            "admin.listen",
            "store",
            "upstream.ca_file"
        ]
    );
    let with_admin = parse(&format!("{MINIMAL}admin: {{listen: '127.0.0.1:9999'}}\n")).unwrap();
    let moved = parse(&format!(
        "{MINIMAL}admin: {{listen: '127.0.0.1:9999', console: {{path: /ops/}}}}\n"
    ))
    .unwrap();
    assert_eq!(fixed_keys_changed(&with_admin, &moved), ["admin.console"]);
}

#[test]
fn tls_listeners_and_their_files() {
    let tls = "server:\n  listen: ['127.0.0.1:8080']\n  tls:\n    listen: ['127.0.0.1:8443']\n    \
               certificates:\n      - {cert: a.pem, key: a.key}\n      - {cert: b.pem, key: b.key, names: [B.Example.com., '*.b.test']}\n    \
               client_ca: ca.pem\nadmin: {listen: '127.0.0.1:9090', tls: {certificates: [{cert: a.pem, key: a.key}], h2: false}}\n\
               upstream: {url: 'http://127.0.0.1:3000'}\n";
    let c = parse(tls).unwrap();
    assert_eq!(c.listen.len(), 1);
    assert_eq!(c.tls_listen, ["127.0.0.1:8443".parse().unwrap()]);
    let t = c.tls.as_ref().unwrap();
    assert!(t.h2, "h2 is on by default");
    assert_eq!(t.certificates[1].names, ["b.example.com", "*.b.test"]);
    assert_eq!(t.client_ca.as_deref(), Some(std::path::Path::new("ca.pem")));
    assert!(!c.admin_tls.as_ref().unwrap().h2);
    // TLS listeners alone are enough.
    let only = "server: {tls: {listen: ['127.0.0.1:8443'], certificates: [{cert: a, key: b}]}}\nupstream: {url: 'http://a'}\n";
    assert!(parse(only).unwrap().listen.is_empty());

    for (bad, key) in [
        ("server: {}", "server.listen: at least one address"),
        ("server: {tls: {certificates: [{cert: a, key: b}]}}", "server.tls.listen"),
        ("server: {tls: {listen: ['127.0.0.1:1']}}", "server.tls.certificates: at least one"),
        (
            "server: {listen: ['127.0.0.1:1'], tls: {listen: ['127.0.0.1:1'], certificates: [{cert: a, key: b}]}}",
            "server.tls.listen[0]: 127.0.0.1:1 is listed twice",
        ),
        (
            "server: {tls: {listen: ['127.0.0.1:1'], certificates: [{cert: a, key: ''}]}}",
            "server.tls.certificates[0].key: must not be empty",
        ),
        (
            "server: {tls: {listen: ['127.0.0.1:1'], certificates: [{cert: a, key: b, names: ['*.com']}]}}",
            "server.tls.certificates[0].names[0]: '*.com' is a wildcard",
        ),
        (
            "server: {tls: {listen: ['127.0.0.1:1'], certificates: [{cert: a, key: b, names: [127.0.0.1]}]}}",
            "names[0]: '127.0.0.1' is an IP address",
        ),
        (
            "server: {tls: {listen: ['127.0.0.1:1'], certificates: [{cert: a, key: b, names: [a.test]}, {cert: c, key: d, names: [A.test]}]}}",
            "server.tls.certificates[1].names[0]: 'a.test' is also a name of server.tls.certificates[0]",
        ),
        (
            "server: {tls: {listen: ['127.0.0.1:1'], certificates: [{cert: a, key: b, nmes: [x]}]}}",
            "nmes",
        ),
        (
            "server: {listen: ['127.0.0.1:1']}\nadmin: {tls: {certificates: [{cert: a, key: b}]}}",
            "admin.tls: needs admin.listen",
        ),
        (
            "server: {listen: ['127.0.0.1:1']}\nadmin: {listen: '127.0.0.1:2', tls: {listen: ['127.0.0.1:3'], certificates: [{cert: a, key: b}]}}",
            "admin.tls.listen: the admin listener's address is admin.listen",
        ),
    ] {
        let e = errors(&format!("{bad}\nupstream: {{url: 'http://a'}}\n"));
        assert!(e.contains(key), "{bad}: {e}");
    }

    // Certificates, client CA and h2 are reloaded; listeners and
    // whether they speak TLS are not.
    let mut changed = c.clone();
    changed.tls = Some(TlsConfig {
        h2: false,
        client_ca: None,
        ..t.clone()
    });
    assert!(fixed_keys_changed(&c, &changed).is_empty());
    let plain = parse(MINIMAL).unwrap();
    assert_eq!(
        fixed_keys_changed(&c, &plain),
        ["server.tls.listen", "admin.listen", "admin.tls (on or off)"]
    );
}

#[test]
fn access_and_audit_logs() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.access_log.destination, Destination::Off);
    assert_eq!(c.access_log.queue, 65_536);
    assert_eq!(c.audit.destination, Destination::Stdout);
    assert!(!c.audit.required);
    let c = parse(&format!(
        "{MINIMAL}access_log: {{destination: file, path: /var/log/a.log, queue: 10}}\n\
         audit: {{destination: file, path: /var/log/b.log, required: true}}\n"
    ))
    .unwrap();
    assert_eq!(
        c.access_log,
        AccessLogConfig {
            destination: Destination::File("/var/log/a.log".into()),
            queue: 10
        }
    );
    assert_eq!(
        c.audit,
        AuditConfig {
            destination: Destination::File("/var/log/b.log".into()),
            required: true
        }
    );
    for (yaml, key) in [
        ("access_log: {destination: file}", "access_log.path"),
        (
            "access_log: {destination: syslog}",
            "access_log.destination",
        ),
        (
            "access_log: {destination: stdout, path: /x}",
            "access_log.path",
        ),
        ("access_log: {queue: 0}", "access_log.queue"),
        ("access_log: {required: true}", "access_log.required"),
        (
            "audit: {destination: off, required: true}",
            "audit.required",
        ),
        ("audit: {queue: 5}", "audit.queue"),
        ("audit: {destination: file, path: ''}", "audit.path"),
    ] {
        let e = errors(&format!("{MINIMAL}{yaml}\n"));
        assert!(e.contains(key), "{yaml}: {e}");
    }
}

#[test]
fn ca_file_needs_https() {
    let e =
        errors("server: {listen: ['127.0.0.1:1']}\nupstream: {url: 'http://a', ca_file: /x.pem}\n");
    assert!(e.contains("upstream.ca_file"), "{e}");
    let c =
        parse("server: {listen: ['127.0.0.1:1']}\nupstream: {url: 'https://a', ca_file: /x.pem}\n")
            .unwrap();
    assert_eq!(
        c.upstream.ca_file.as_deref(),
        Some(std::path::Path::new("/x.pem"))
    );
}

#[test]
fn duplicate_header_names_are_refused() {
    let e = errors(&format!(
        "{MINIMAL}headers: {{org_role: X-Tokengate-Identity-Id}}\n"
    ));
    assert!(e.contains("headers"), "{e}");
}

/// These were once checked after the problems had been counted, so an
/// out-of-range value passed and was clamped instead of refused.
#[test]
fn out_of_range_lockout_values_are_refused_with_their_key() {
    for (yaml, key) in [
        ("threshold: -5", "admin.lockout.threshold"),
        ("window_seconds: 0", "admin.lockout.window_seconds"),
        ("duration_seconds: 86401", "admin.lockout.duration_seconds"),
    ] {
        let e = errors(&format!(
            "{MINIMAL}admin: {{listen: '127.0.0.1:9999', lockout: {{{yaml}}}}}\n"
        ));
        assert!(e.contains(key), "{yaml}: {e}");
    }
    assert!(parse(&format!("{MINIMAL}admin: {{lockout: {{threshold: 0}}}}\n")).is_ok());
}
