//! The `upstream` section (the default upstream) and `upstreams`: named pools
//! of addresses that routes send to, with their selection, health checks,
//! passive ejection, DNS refresh, timeouts and TLS settings. Pure
//! validation; `src/upstreams.rs` runs them.

use super::file::UpstreamFile;
use super::{Problems, Upstream};
use serde::Deserialize;
use std::collections::BTreeMap;

/// One named upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPool {
    pub name: String,
    /// Each address, with the pool's TLS and timeout settings (all share the
    /// scheme). A name is resolved again every `dns_refresh_seconds`.
    pub targets: Vec<Upstream>,
    pub selection: Selection,
    pub health_check: Option<HealthCheck>,
    /// How long an address that refused a connection is left out; 0: never.
    pub eject_seconds: u64,
    pub dns_refresh_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    RoundRobin,
    LeastConnections,
}

/// An active health check, run on every address of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `GET path` answered 2xx; `None`: a TCP (or TLS) connection is enough.
    pub path: Option<String>,
    pub interval_seconds: u64,
    pub timeout_ms: u64,
    /// Consecutive results that flip an address's health.
    pub healthy_after: usize,
    pub unhealthy_after: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PoolFile {
    urls: Vec<String>,
    selection: Option<String>,
    health_check: Option<HealthCheckFile>,
    eject_seconds: Option<i64>,
    dns_refresh_seconds: Option<i64>,
    tls_verify: Option<bool>,
    sni: Option<String>,
    connect_timeout_ms: Option<i64>,
    read_timeout_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthCheckFile {
    path: Option<String>,
    interval_seconds: Option<i64>,
    timeout_ms: Option<i64>,
    healthy_after: Option<i64>,
    unhealthy_after: Option<i64>,
}

pub(super) fn validate_upstream(p: &mut Problems, u: &UpstreamFile) -> Option<Upstream> {
    let connect = p.range(
        "upstream.connect_timeout_ms",
        u.connect_timeout_ms,
        1,
        600_000,
    );
    let read = p.range("upstream.read_timeout_ms", u.read_timeout_ms, 1, 3_600_000);
    let url = match url::Url::parse(&u.url) {
        Ok(url) => url,
        Err(e) => {
            // What comes before an `@` (user info) is not shown: it may be a password.
            let shown = match u.url.rsplit_once('@') {
                Some((_, host)) => format!("[REDACTED]@{host}"),
                None => u.url.clone(),
            };
            p.add("upstream.url", format!("'{shown}' is not a URL: {e}"));
            return None;
        }
    };
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        s => {
            p.add("upstream.url", format!("scheme '{s}' is not http or https"));
            return None;
        }
    };
    let Some(host) = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
    else {
        p.add("upstream.url", "has no host");
        return None;
    };
    if url.path() != "/" || url.query().is_some() {
        p.add(
            "upstream.url",
            "must not have a path or query (requests keep their own path)",
        );
    }
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    if u.ca_file.is_some() && !tls {
        p.add("upstream.ca_file", "only applies to an https:// upstream");
    }
    let sni = u.sni.clone().unwrap_or_else(|| host.clone());
    Some(Upstream {
        tls,
        host,
        port,
        sni,
        tls_verify: u.tls_verify,
        ca_file: u.ca_file.clone(),
        connect_timeout_ms: connect,
        read_timeout_ms: read,
    })
}

/// A pool name: what routes refer to; `default` is the `upstream` section.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

pub(super) fn validate_upstreams(
    p: &mut Problems,
    files: &BTreeMap<String, PoolFile>,
) -> Vec<UpstreamPool> {
    let mut pools = Vec::new();
    for (name, f) in files {
        let key = format!("upstreams.{name}");
        if !valid_name(name) || name == "default" {
            p.add(
                &key,
                "a name is 1 to 64 of letters, digits, '-' and '_', and not 'default' (the upstream section)",
            );
            continue;
        }
        if f.urls.is_empty() {
            p.add(&format!("{key}.urls"), "at least one URL is required");
            continue;
        }
        let mut targets = Vec::new();
        for (i, url) in f.urls.iter().enumerate() {
            let one = UpstreamFile {
                url: url.clone(),
                tls_verify: f.tls_verify.unwrap_or(true),
                sni: f.sni.clone(),
                ca_file: None,
                connect_timeout_ms: f.connect_timeout_ms.unwrap_or(2000),
                read_timeout_ms: f.read_timeout_ms.unwrap_or(30000),
            };
            let mut sub = Problems(Vec::new());
            if let Some(t) = validate_upstream(&mut sub, &one) {
                targets.push(t);
            }
            for problem in sub.0 {
                // `upstream.url: ...` -> `upstreams.NAME.urls[i]: ...`
                let problem = problem
                    .replacen("upstream.url", &format!("{key}.urls[{i}]"), 1)
                    .replacen("upstream.", &format!("{key}."), 1);
                p.0.push(problem);
            }
        }
        if targets.windows(2).any(|w| w[0].tls != w[1].tls) {
            p.add(
                &format!("{key}.urls"),
                "all URLs of a pool use the same scheme",
            );
        }
        let selection = match f.selection.as_deref() {
            None | Some("round_robin") => Selection::RoundRobin,
            Some("least_connections") => Selection::LeastConnections,
            Some(o) => {
                p.add(
                    &format!("{key}.selection"),
                    format!("'{o}' is not round_robin or least_connections"),
                );
                Selection::RoundRobin
            }
        };
        let health_check = f.health_check.as_ref().map(|h| {
            let hk = format!("{key}.health_check");
            if let Some(path) = &h.path {
                if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    p.add(
                        &format!("{hk}.path"),
                        format!("'{path}' is not an origin-form path"),
                    );
                }
            }
            HealthCheck {
                path: h.path.clone(),
                interval_seconds: p.range(
                    &format!("{hk}.interval_seconds"),
                    h.interval_seconds.unwrap_or(5),
                    1,
                    3600,
                ),
                timeout_ms: p.range(
                    &format!("{hk}.timeout_ms"),
                    h.timeout_ms.unwrap_or(1000),
                    1,
                    60_000,
                ),
                healthy_after: p.range(
                    &format!("{hk}.healthy_after"),
                    h.healthy_after.unwrap_or(1),
                    1,
                    100,
                ) as usize,
                unhealthy_after: p.range(
                    &format!("{hk}.unhealthy_after"),
                    h.unhealthy_after.unwrap_or(2),
                    1,
                    100,
                ) as usize,
            }
        });
        pools.push(UpstreamPool {
            name: name.clone(),
            targets,
            selection,
            health_check,
            eject_seconds: p.range(
                &format!("{key}.eject_seconds"),
                f.eject_seconds.unwrap_or(10),
                0,
                3600,
            ),
            dns_refresh_seconds: p.range(
                &format!("{key}.dns_refresh_seconds"),
                f.dns_refresh_seconds.unwrap_or(30),
                1,
                86_400,
            ),
        });
    }
    pools
}
