//! Criterion benches for the pure pieces of the request path: token parsing
//! and hashing, the auth decision, client IP and project resolution.
//! Compare ratios within one run; absolute numbers vary with the machine.

#![allow(clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::net::IpAddr;
use tokengate::auth;
use tokengate::model::{default_trusted_ips, Identity, TokenRecord};
use tokengate::proxy::{body, client_ip, path, project, target};
use tokengate::token::{AccessToken, Id};

fn bench(c: &mut Criterion) {
    let token = AccessToken::generate(Id::random());
    let text = token.expose();
    c.bench_function("token_parse", |b| {
        b.iter(|| AccessToken::parse(black_box(&text)))
    });
    c.bench_function("token_parse_and_hash", |b| {
        b.iter(|| AccessToken::parse(black_box(&text)).map(|t| t.secret_hash()))
    });

    let rec = TokenRecord {
        id: token.token_id,
        identity_id: token.identity_id,
        name: "bench".into(),
        secret_hash: token.secret_hash(),
        created_at: 1_000,
        last_renewed_at: None,
        last_used_at: None,
        num_uses: 0,
        num_uses_limit: 1_000_000,
        ttl: 3600,
        max_ttl: 7200,
        period: 0,
        trusted_ips: default_trusted_ips(),
        revoked: false,
    };
    let identity = Identity {
        id: token.identity_id,
        name: "bench".into(),
        org_id: "org".into(),
        role: "member".into(),
        has_delete_protection: false,
        created_at: 0,
        updated_at: 0,
    };
    let hash = token.secret_hash();
    let ip: IpAddr = "10.1.2.3".parse().unwrap();
    c.bench_function("auth_decide", |b| {
        b.iter(|| {
            auth::decide(auth::Facts {
                token: Some(&rec),
                identity: Some(&identity),
                presented: black_box(&hash),
                client_ip: ip,
                now: 2_000,
                needs: auth::Needs::ANY,
                project: auth::Project::NotNamed,
            })
        })
    });

    let trusted = vec![
        "10.0.0.0/8".parse().unwrap(),
        "192.168.0.0/16".parse().unwrap(),
    ];
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    c.bench_function("client_ip_xff", |b| {
        b.iter(|| {
            client_ip::client_ip(
                peer,
                ["203.0.113.5, 10.0.0.7"].into_iter(),
                black_box(&trusted),
            )
        })
    });

    // The default sources of config/tokengate.yaml.
    let cfg = tokengate::config::parse(
        "server: {listen: ['127.0.0.1:8080']}\nupstream: {url: 'http://127.0.0.1:3000'}\n",
    )
    .unwrap();
    let rules = project::ProjectRules::new(&cfg.project_sources);
    let headers = http::HeaderMap::new();
    c.bench_function("project_resolve_query", |b| {
        b.iter(|| {
            rules.resolve(
                black_box("/api/v3/secrets/raw"),
                Some("environment=dev&workspaceId=p1"),
                &headers,
                &[],
            )
        })
    });

    // Everything the request path checks before the store, on an SDK-shaped
    // request: target, path, query, header text, route, project claims.
    let mut sdk_headers = http::HeaderMap::new();
    for (n, v) in [
        ("host", "gw.local:8080"),
        ("user-agent", "infisical-python-sdk/1.0.18"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate"),
        ("authorization", text.as_str()),
        ("connection", "keep-alive"),
    ] {
        sdk_headers.insert(n, v.parse().unwrap());
    }
    let target =
        b"/api/v3/secrets/raw?environment=dev&workspaceId=p1&secretPath=%2F&include_imports=true";
    c.bench_function("request_checks_sdk_get", |b| {
        b.iter(|| {
            let t = target::split(black_box(target), Some(b"gw.local:8080"), None).unwrap();
            path::check(t.path).unwrap();
            target::check_query(t.query.unwrap()).unwrap();
            target::check_headers(sdk_headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))
                .unwrap();
            let route = cfg.routes.select(None, t.path);
            let r = rules.resolve(t.path, t.query, &sdk_headers, &[]);
            project::decide(r, route.project).unwrap()
        })
    });
    let json = br#"{"workspaceId":"p1","environment":"dev","secretPath":"/","secretValue":"s3cr3t","type":"shared","skipMultilineEncoding":false}"#;
    let ct: [&[u8]; 1] = [b"application/json"];
    c.bench_function("body_claims_sdk_json", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            body::claims(
                body::BodyHeaders {
                    content_type: &ct,
                    content_encoding: &[],
                },
                black_box(json),
                rules.names(),
                &mut out,
            )
            .unwrap();
            out
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
