//! Fuzz target `path`: a raw request target and Host through the proxy's
//! checks (`proxy::target::split`, `check_query`, `proxy::path::check`) and
//! route selection over an arbitrary route table (`routes::Route::new`,
//! `host_pattern`, `request_host`, `Routes::select`).
#![no_main]

// Each target uses part of the shared input helpers.
#[allow(dead_code)]
mod common;

use libfuzzer_sys::fuzz_target;
use tokengate::proxy::names::percent_decode;
use tokengate::proxy::{path, target};
use tokengate::routes::{host_pattern, request_host, Auth, Route, Routes, Segment};

struct Input<'a> {
    target: &'a [u8],
    host: Option<&'a [u8]>,
    routes: Vec<RouteIn<'a>>,
}

struct RouteIn<'a> {
    prefix: &'a str,
    public: bool,
    host: Option<&'a str>,
}

// Fields: the raw request target, the Host header (none when empty), the
// route table (the rest): one route a line, `PREFIX [token|public] [HOST]`.
fuzz_target!(|data: &[u8]| {
    let mut f = common::Fields::new(data);
    let target = f.bytes();
    let host = Some(f.bytes()).filter(|h| !h.is_empty());
    let routes = common::lines(f.rest_text())
        .map(|line| {
            let mut words = line.split(' ');
            RouteIn {
                prefix: words.next().unwrap_or(""),
                public: words.next() == Some("public"),
                host: words.next(),
            }
        })
        .collect();
    let input = Input {
        target,
        host,
        routes,
    };
    let routes = table(&input.routes);
    // Routes are matched on every path the operator could write as one.
    for r in routes.all() {
        route_matches_itself(&routes, r);
    }

    let Ok(t) = target::split(input.target, input.host, None) else {
        return;
    };
    assert!(t.path.starts_with('/'));
    let span = t.span(input.target);
    assert_eq!(span.path(input.target), t.path);
    assert_eq!(span.query(input.target), t.query);
    if let Some(q) = t.query {
        let _ = target::check_query(q);
    }
    if path::check(t.path).is_err() {
        return;
    }
    canonical_stays_canonical(t.path);

    let host = match input.host.and_then(|h| std::str::from_utf8(h).ok()) {
        None => None,
        Some(h) => match request_host(h) {
            Some(h) => Some(h),
            // Not a plain host name: the gateway refuses the request (400).
            None => return,
        },
    };
    if let Some(h) = &host {
        assert_eq!(*h, h.to_ascii_lowercase());
        assert!(!h.ends_with('.'));
    }
    select(&routes, host.as_deref(), t.path);
});

fn table(input: &[RouteIn<'_>]) -> Routes {
    let mut routes = Vec::new();
    for r in input.iter().take(8) {
        let Ok(mut route) = Route::new(r.prefix) else {
            continue;
        };
        // A prefix is whole segments; `*` only ever alone.
        for s in &route.segments {
            if let Segment::Literal(l) = s {
                assert!(!l.is_empty() && !l.contains('*') && !l.contains('/'));
            }
        }
        assert_eq!(
            Route::new(&route.path).map(|r| r.segments),
            Ok(route.segments.clone())
        );
        if r.public {
            route.auth = Auth::Public;
        }
        if let Some(h) = r.host {
            let Ok(pattern) = host_pattern(h) else {
                continue;
            };
            // A stored pattern is its own normal form.
            assert_eq!(host_pattern(&pattern), Ok(pattern.clone()));
            route.host = Some(pattern);
        }
        routes.push(route);
    }
    Routes::new(routes)
}

/// Once a path passed the check, decoding it changes no segment boundary
/// and creates nothing the check would refuse: the gateway and an upstream
/// that decodes see the same segments.
fn canonical_stays_canonical(p: &str) {
    let decoded = percent_decode(p.as_bytes());
    let decoded = std::str::from_utf8(&decoded).expect("a checked path decodes to UTF-8");
    assert_eq!(path::check(decoded), Ok(()), "{p:?} decodes to {decoded:?}");
    assert_eq!(p.split('/').count(), decoded.split('/').count());
    assert!(!decoded.contains('%'));
}

fn segments(p: &str) -> Vec<&str> {
    p.split('/').filter(|s| !s.is_empty()).collect()
}

fn rank(r: &Route) -> (usize, usize, bool) {
    let literals = r
        .segments
        .iter()
        .filter(|s| matches!(s, Segment::Literal(_)))
        .count();
    (r.segments.len(), literals, r.host.is_some())
}

fn select(routes: &Routes, host: Option<&str>, p: &str) {
    let chosen = routes.select(host, p);
    let segs = segments(p);
    let configured = routes.all().iter().any(|r| std::ptr::eq(r, chosen));
    if !configured {
        assert!(chosen.segments.is_empty() && chosen.auth == Auth::Token);
        return;
    }
    assert!(segs.len() >= chosen.segments.len());
    if let Some(pattern) = &chosen.host {
        let h = host.expect("a route for a host chosen without one");
        let ok = match pattern.strip_prefix("*.") {
            Some(suffix) => h.len() > suffix.len() + 1 && h.ends_with(&format!(".{suffix}")),
            None => h == pattern,
        };
        assert!(ok, "route for {pattern} chosen on host {h}");
    }
    // Public routes loosen: they match only as spelled.
    if chosen.auth == Auth::Public {
        for (s, seg) in chosen.segments.iter().zip(&segs) {
            if let Segment::Literal(l) = s {
                assert_eq!(l, seg, "public route {} chosen for {p}", chosen.path);
            }
        }
    }
    // A trailing slash is the same path, and a longer path is covered by
    // every route covering this one.
    assert!(std::ptr::eq(routes.select(host, &format!("{p}/")), chosen));
    let longer = routes.select(host, &format!("{}/x", p.trim_end_matches('/')));
    assert!(rank(longer) >= rank(chosen), "{p}/x chose {}", longer.path);
}

/// A route is chosen (or one ranked as high) for the path its prefix spells,
/// when that path is one the gateway accepts.
fn route_matches_itself(routes: &Routes, r: &Route) {
    if r.host.is_some() || r.segments.contains(&Segment::Any) || path::check(&r.path).is_err() {
        return;
    }
    // Known finding (fuzz/regressions/path/route-literal-percent-encoded): a
    // token route's literal is compared with the decoded request segment but
    // is not decoded itself, so `/%C3%A9` never matches the path it spells.
    let escaped = r
        .segments
        .iter()
        .any(|s| matches!(s, Segment::Literal(l) if l.contains('%')));
    if escaped && r.auth == Auth::Token && !common::strict() {
        return;
    }
    let chosen = routes.select(None, &r.path);
    assert!(
        rank(chosen) >= rank(r),
        "route {} is not chosen for its own path (got {})",
        r.path,
        chosen.path
    );
}
