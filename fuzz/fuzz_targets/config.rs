//! Fuzz target `config`: YAML text to a validated configuration
//! (`config::parse`, which reaches every section's validation), and URLs
//! carrying a password through the upstream, named upstream and Redis keys.
#![no_main]

// Each target uses part of the shared input helpers.
#[allow(dead_code)]
mod common;

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use tokengate::config::{self, Config, ProjectSource, TemplateSegment};
use tokengate::routes::{host_pattern, Auth, ProjectRule, Route};

/// What a password in a URL is in these inputs; never in a refusal.
const PASSWORD: &str = "pw-Fuzz-7c1d";

#[derive(Debug, Clone, Copy)]
enum Place {
    Upstream,
    NamedUpstream,
    Redis,
    RedisCluster,
}

// A whole YAML file; or, after the line `urls` and a 0x1F, fields: where
// the URL goes (0-3: upstream, named upstream, Redis, Redis cluster), its
// scheme, its user name, what follows the password (the rest).
fuzz_target!(|data: &[u8]| {
    match data.strip_prefix(b"urls\x1f") {
        None => text(common::utf8_prefix(data)),
        Some(rest) => {
            let mut f = common::Fields::new(rest);
            let place = match f.number() % 4 {
                0 => Place::Upstream,
                1 => Place::NamedUpstream,
                2 => Place::Redis,
                _ => Place::RedisCluster,
            };
            let scheme = f.text();
            let user = f.text();
            urls(scheme, user, f.rest_text(), place);
        }
    }
});

fn text(yaml: &str) {
    match config::parse(yaml) {
        Ok(cfg) => {
            valid(&cfg);
            // Pure: the same text gives the same configuration.
            let again = config::parse(yaml).expect("accepted once, accepted again");
            assert_eq!(format!("{cfg:?}"), format!("{again:?}"));
        }
        Err(e) => refused(&e),
    }
}

fn refused(e: &config::ConfigError) {
    assert!(!e.0.is_empty(), "refused without a reason");
    for line in &e.0 {
        assert!(!line.is_empty());
    }
}

fn urls(scheme: &str, user: &str, rest: &str, place: Place) {
    if [scheme, user, rest].iter().any(|s| s.contains(PASSWORD)) {
        return;
    }
    let url = format!("{scheme}://{user}:{PASSWORD}@{rest}");
    let quoted = serde_json::to_string(&url).expect("a string serialises");
    let listen = "server: {listen: ['127.0.0.1:8080']}\n";
    let plain = "upstream: {url: 'http://127.0.0.1:3000'}\n";
    let yaml = match place {
        Place::Upstream => format!("{listen}upstream: {{url: {quoted}}}\n"),
        Place::NamedUpstream => format!(
            "{listen}{plain}upstreams: {{pool: {{urls: [{quoted}]}}}}\nroutes: [{{path: /, upstream: pool}}]\n"
        ),
        Place::Redis => format!("{listen}{plain}store: {{kind: redis, url: {quoted}}}\n"),
        Place::RedisCluster => format!(
            "{listen}{plain}store: {{kind: redis-cluster, nodes: ['redis://a:1', {quoted}]}}\n"
        ),
    };
    match config::parse(&yaml) {
        Ok(cfg) => valid(&cfg),
        Err(e) => {
            refused(&e);
            // A refused reload is logged: the password must not be in it.
            let text = e.to_string();
            assert!(!text.contains(PASSWORD), "{text}");
        }
    }
}

/// What every accepted configuration satisfies.
fn valid(cfg: &Config) {
    assert!(!cfg.listen.is_empty() || !cfg.tls_listen.is_empty());
    assert_eq!(cfg.tls.is_some(), !cfg.tls_listen.is_empty());
    if let Some(a) = cfg.admin_listen {
        assert!(!cfg.listen.contains(&a) && !cfg.tls_listen.contains(&a));
    }
    assert!((1..=256).contains(&cfg.threads));
    assert!((1..=1_000_000).contains(&cfg.max_connections));
    assert!((1..=3600).contains(&cfg.keepalive_timeout_seconds));
    assert!((1..=3600).contains(&cfg.header_timeout_seconds));
    assert!(cfg.grace_period_seconds <= 3600);
    assert!((1..=65536).contains(&cfg.max_body_bytes));
    assert!(config::fixed_keys_changed(cfg, cfg).is_empty());

    for net in &cfg.trusted_proxies {
        assert_eq!(*net, net.trunc());
        assert!(net.contains(&net.network()));
        if let IpNet::V6(v6) = net {
            assert!(v6.prefix_len() < 96 || v6.network().to_ipv4_mapped().is_none());
        }
    }

    let projects_on = !cfg.project_sources.is_empty();
    for s in &cfg.project_sources {
        if let ProjectSource::Path(t) = s {
            let n = t.iter().filter(|s| **s == TemplateSegment::Project).count();
            assert_eq!(n, 1, "{t:?}");
        }
    }

    for r in cfg.routes.all() {
        route(cfg, r, projects_on);
    }

    let names = cfg.headers.all();
    for (i, n) in names.iter().enumerate() {
        assert_eq!(*n, n.to_ascii_lowercase());
        assert!(http::HeaderName::from_bytes(n.as_bytes()).is_ok());
        assert!(!names[..i].contains(n), "{n} injected twice");
        assert!(!matches!(
            *n,
            "authorization" | "host" | "content-length" | "transfer-encoding" | "connection"
        ));
    }
}

fn route(cfg: &Config, r: &Route, projects_on: bool) {
    assert_eq!(
        Route::new(&r.path).map(|again| again.segments),
        Ok(r.segments.clone())
    );
    if let Some(h) = &r.host {
        assert_eq!(host_pattern(h).as_ref(), Ok(h));
    }
    if let Some(u) = &r.upstream {
        assert!(u == "default" || cfg.upstreams.iter().any(|p| p.name == *u));
    }
    if r.project == ProjectRule::Required {
        assert!(projects_on, "{} requires a project nobody can name", r.path);
    }
    if r.auth == Auth::Public {
        // A public route has no identity: nothing to require or limit.
        assert_eq!(r.project, ProjectRule::Optional);
        assert!(r.rate_limit.is_none());
        assert!(r.require.org_role.is_none() && r.require.project_role.is_none());
        assert!(r.require.methods.is_empty());
    }
    if r.require.needs_project_role() {
        assert_eq!(r.project, ProjectRule::Required);
    }
    for (method, _, _) in &r.require.methods {
        assert!(!method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()));
    }
}
