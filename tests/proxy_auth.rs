//! The proxy's authentication path end to end: a real gateway in front of a
//! real echo upstream, on the Redis store (a real redis-server) and on the
//! embedded store. Valid tokens are forwarded with the identity injected and
//! Authorization stripped; every kind of bad token is refused with a 401 in
//! Infisical's JSON shape, forwards nothing, and never echoes or logs the token.

mod common;

use common::net::{bearer, command_stats, Monitor};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokengate::token::{fill_random, AccessToken, Id};

const INJECTED: [&str; 6] = [
    "x-tokengate-identity-id",
    "x-tokengate-identity-name",
    "x-tokengate-org-role",
    "x-tokengate-token-id",
    "x-tokengate-project-id",
    "x-tokengate-project-role",
];

/// `token` with the character at `at` replaced by another base64url character.
fn one_char_changed(token: &str, at: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII token")
}

/// A well-formed token (right prefix, length and checksum) for `identity`
/// and `token_id`, with a secret the gateway never issued.
fn forged(identity: Id, token_id: Id) -> String {
    let mut secret = [0u8; 32];
    fill_random(&mut secret);
    AccessToken::from_parts(identity, token_id, secret).expose()
}

fn parsed(token: &str) -> AccessToken {
    AccessToken::parse(token).unwrap_or_else(|e| panic!("issued token does not parse: {e}"))
}

/// Sends GET /v1/things with `headers`, expects an error answer with
/// `status` (and `message` when given), nothing forwarded to the upstream,
/// and none of `secrets` in the body. Returns the message.
#[track_caller]
fn refused(
    gw: &Gateway,
    upstream: &Upstream,
    headers: &[(&str, &str)],
    status: u16,
    message: Option<&str>,
    secrets: &[&str],
) -> String {
    let before = upstream.count();
    let resp = http("GET", &format!("{}/v1/things", gw.url()), headers, None);
    let got = resp.expect_error(status);
    if status == 401 {
        assert_eq!(resp.json()["error"], "Unauthorized", "body: {}", resp.body);
    }
    if let Some(message) = message {
        assert_eq!(got, message, "error message; body: {}", resp.body);
    }
    assert_eq!(
        upstream.count(),
        before,
        "a refused request reached the upstream"
    );
    for secret in secrets {
        assert!(
            !resp.body.contains(secret),
            "the error body contains a token: {}",
            resp.body
        );
    }
    got
}

#[track_caller]
fn assert_log_clean(gw: &Gateway, tokens: &[&str]) {
    let log = gw.log();
    for token in tokens {
        assert!(
            !log.contains(token),
            "the gateway log contains a token string"
        );
        let body = token.strip_prefix("tgat_").unwrap_or(token);
        assert!(
            !log.contains(body),
            "the gateway log contains a token body (without its prefix)"
        );
    }
}

// ---------------------------------------------------------------------------

fn case_valid_token_is_forwarded_with_identity(cfg: GatewayConfig) {
    let upstream = Upstream::echo();
    let gw = Gateway::start(cfg.upstream(&upstream.url()));
    let admin = gw.admin();
    let name = unique("ci-bot");
    let id = admin.create_identity(&name, "member");
    admin.attach_token_auth(&id, json!({}));
    let token = admin.create_token(&id, "deploy");

    let auth = bearer(&token.access_token);
    let resp = http(
        "GET",
        &format!("{}/v1/things?x=1&y=two", gw.url()),
        &[("Authorization", &auth), ("x-other", "kept")],
        None,
    );
    resp.expect_status(200);
    assert_eq!(
        resp.json()["path"],
        "/v1/things?x=1&y=two",
        "the upstream's answer reaches the client"
    );
    assert_eq!(upstream.count(), 1);
    let rec = upstream.last();
    assert_eq!(rec.method, "GET");
    assert_eq!(rec.path, "/v1/things?x=1&y=two");

    let got_id = rec.header_all("x-tokengate-identity-id");
    assert_eq!(got_id, [id.as_str()], "identity id header");
    uuid::Uuid::parse_str(got_id[0])
        .unwrap_or_else(|e| panic!("identity id {:?} is not a UUID: {e}", got_id[0]));
    assert_eq!(rec.header_all("x-tokengate-identity-name"), [name.as_str()]);
    assert_eq!(rec.header_all("x-tokengate-org-role"), ["member"]);
    assert_eq!(
        rec.header_all("x-tokengate-token-id"),
        [token.token_id.as_str()]
    );
    assert!(
        !rec.has_header("x-tokengate-project-id") && !rec.has_header("x-tokengate-project-role"),
        "no project was asked for, yet project headers arrived: {:?}",
        rec.headers
    );
    assert!(
        !rec.has_header("authorization"),
        "Authorization was forwarded: {:?}",
        rec.headers
    );
    assert_eq!(rec.header_all("x-other"), ["kept"], "other headers pass");
    assert_eq!(admin.uses(&token.token_id), 1, "one use counted");

    // A second identity with another org role gets its own values.
    let admin_name = unique("ops");
    let admin_id = admin.create_identity(&admin_name, "admin");
    admin.attach_token_auth(&admin_id, json!({}));
    let admin_token = admin.create_token(&admin_id, "ops");
    get_with_token(&format!("{}/v1/other", gw.url()), &admin_token.access_token).expect_status(200);
    let rec = upstream.last();
    assert_eq!(
        rec.header_all("x-tokengate-identity-id"),
        [admin_id.as_str()]
    );
    assert_eq!(rec.header_all("x-tokengate-org-role"), ["admin"]);
    assert_eq!(
        rec.header_all("x-tokengate-token-id"),
        [admin_token.token_id.as_str()]
    );

    assert_log_clean(&gw, &[&token.access_token, &admin_token.access_token]);
}

#[test]
fn valid_token_is_forwarded_with_identity_redis() {
    let redis = Redis::start();
    case_valid_token_is_forwarded_with_identity(GatewayConfig::redis(&redis.url()));
}

#[test]
fn valid_token_is_forwarded_with_identity_embedded() {
    case_valid_token_is_forwarded_with_identity(GatewayConfig::embedded_temp());
}

#[test]
fn forward_authorization_true_forwards_the_header() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .forward_authorization(true),
    );
    let (id, token) = gw.admin().identity_with_token("member", json!({}));
    get_with_token(&format!("{}/v1/things", gw.url()), &token.access_token).expect_status(200);
    let rec = upstream.last();
    assert_eq!(
        rec.header_all("authorization"),
        [bearer(&token.access_token).as_str()]
    );
    assert_eq!(rec.header_all("x-tokengate-identity-id"), [id.as_str()]);
}

// ---------------------------------------------------------------------------

fn case_bad_credentials_are_refused(cfg: GatewayConfig) {
    let upstream = Upstream::echo();
    let gw = Gateway::start(cfg.upstream(&upstream.url()));
    let admin = gw.admin();
    let (id, good) = admin.identity_with_token("member", json!({}));
    let token = good.access_token.clone();
    let secrets = [token.as_str(), token.strip_prefix("tgat_").expect("prefix")];

    // Missing, and not Bearer.
    refused(
        &gw,
        &upstream,
        &[],
        401,
        Some("missing Authorization header"),
        &[],
    );
    refused(
        &gw,
        &upstream,
        &[("Authorization", "Basic dXNlcjpwYXNzd29yZA==")],
        401,
        None,
        &[],
    );
    let as_basic = format!("Basic {token}");
    refused(
        &gw,
        &upstream,
        &[("Authorization", &as_basic)],
        401,
        None,
        &secrets,
    );
    refused(
        &gw,
        &upstream,
        &[("Authorization", "Bearer ")],
        401,
        None,
        &[],
    );

    // Malformed: one changed character, wrong prefix, wrong length.
    let mut malformed = vec![
        one_char_changed(&token, 30),
        one_char_changed(&token, 60),
        token.replacen("tgat_", "tgxt_", 1),
        token[..token.len() - 1].to_string(),
        format!("{token}A"),
        "tgat_short".to_string(),
    ];
    malformed.dedup();
    for bad in &malformed {
        let auth = bearer(bad);
        let bad_body = bad.strip_prefix("tgat_").unwrap_or(bad);
        let mut hidden = secrets.to_vec();
        hidden.push(bad_body);
        refused(
            &gw,
            &upstream,
            &[("Authorization", &auth)],
            401,
            Some("malformed access token"),
            &hidden,
        );
    }

    // Unknown: well-formed but never issued; a real identity with a made-up
    // token id; the real token id with the wrong secret.
    let real = parsed(&token);
    let unknown = [
        forged(Id::random(), Id::random()),
        forged(real.identity_id, Id::random()),
        forged(real.identity_id, real.token_id),
    ];
    for bad in &unknown {
        let auth = bearer(bad);
        refused(
            &gw,
            &upstream,
            &[("Authorization", &auth)],
            401,
            Some("invalid access token"),
            &[bad.as_str(), token.as_str()],
        );
    }
    assert_eq!(
        admin.uses(&good.token_id),
        0,
        "a wrong secret for a real token id consumed a use"
    );

    // The good token still works after all that.
    get_with_token(&format!("{}/v1/things", gw.url()), &token).expect_status(200);
    assert_eq!(admin.uses(&good.token_id), 1);

    // Revoked by an operator, and revoked by itself.
    let doomed = admin.create_token(&id, "doomed");
    get_with_token(&format!("{}/v1/things", gw.url()), &doomed.access_token).expect_status(200);
    admin.revoke_token(&doomed.token_id);
    let auth = bearer(&doomed.access_token);
    refused(
        &gw,
        &upstream,
        &[("Authorization", &auth)],
        401,
        Some("access token has been revoked"),
        &[&doomed.access_token],
    );
    assert_eq!(
        admin.uses(&doomed.token_id),
        1,
        "a revoked request consumed a use"
    );

    let quitter = admin.create_token(&id, "quitter");
    admin.self_revoke(&quitter.access_token).expect_status(200);
    let auth = bearer(&quitter.access_token);
    refused(
        &gw,
        &upstream,
        &[("Authorization", &auth)],
        401,
        Some("access token has been revoked"),
        &[&quitter.access_token],
    );

    // Revoking one token leaves the others alone.
    get_with_token(&format!("{}/v1/things", gw.url()), &token).expect_status(200);

    assert_log_clean(&gw, &[&token, &doomed.access_token, &quitter.access_token]);
    let log = gw.log();
    for bad in &malformed[..2] {
        assert!(
            !log.contains(bad.strip_prefix("tgat_").unwrap_or(bad)),
            "the gateway log contains a presented (malformed) token"
        );
    }
}

#[test]
fn bad_credentials_are_refused_redis() {
    let redis = Redis::start();
    case_bad_credentials_are_refused(GatewayConfig::redis(&redis.url()));
}

#[test]
fn bad_credentials_are_refused_embedded() {
    case_bad_credentials_are_refused(GatewayConfig::embedded_temp());
}

// ---------------------------------------------------------------------------

fn case_expired_token_is_refused(cfg: GatewayConfig) {
    let upstream = Upstream::echo();
    let gw = Gateway::start(cfg.upstream(&upstream.url()));
    let admin = gw.admin();
    // Taken before the token exists, so the token cannot die before start + 2 s.
    let start = Instant::now();
    let (_, token) = admin.identity_with_token(
        "member",
        json!({"accessTokenTTL": 2, "accessTokenMaxTTL": 10}),
    );
    let url = format!("{}/v1/things", gw.url());
    get_with_token(&url, &token.access_token).expect_status(200);

    let mut last = None;
    eventually(Duration::from_secs(6), || {
        let resp = get_with_token(&url, &token.access_token);
        let done = resp.status != 200;
        last = Some(resp);
        done
    });
    assert!(
        start.elapsed() >= Duration::from_millis(1950),
        "the token died after {:?}, before its 2 s TTL",
        start.elapsed()
    );
    let resp = last.expect("polled at least once");
    assert_eq!(resp.expect_error(401), "token expired");
    assert!(!resp.body.contains(&token.access_token));

    let used = admin.uses(&token.token_id);
    let auth = bearer(&token.access_token);
    refused(
        &gw,
        &upstream,
        &[("Authorization", &auth)],
        401,
        Some("token expired"),
        &[&token.access_token],
    );
    assert_eq!(
        admin.uses(&token.token_id),
        used,
        "an expired request consumed a use"
    );
    let renew = admin.renew(&token.access_token);
    renew.expect_error(401);
    assert!(!renew.body.contains(&token.access_token));
    assert_log_clean(&gw, &[&token.access_token]);
}

#[test]
fn expired_token_is_refused_redis() {
    let redis = Redis::start();
    case_expired_token_is_refused(GatewayConfig::redis(&redis.url()));
}

#[test]
fn expired_token_is_refused_embedded() {
    case_expired_token_is_refused(GatewayConfig::embedded_temp());
}

// ---------------------------------------------------------------------------

/// TTL 2 s, MaxTTL 3 s. A renewal at 1.4 s carries the token past its first
/// expiry (2 s) but not past 3 s: it is MaxTTL, not TTL, that ends it.
fn case_renewal_stops_at_max_ttl(cfg: GatewayConfig) {
    let upstream = Upstream::echo();
    let gw = Gateway::start(cfg.upstream(&upstream.url()));
    let admin = gw.admin();
    let id = admin.create_identity(&unique("short"), "member");
    admin.attach_token_auth(&id, json!({"accessTokenTTL": 2, "accessTokenMaxTTL": 3}));
    let before_create = Instant::now();
    let token = admin.create_token(&id, "short");
    let created = Instant::now();
    assert!(
        created - before_create < Duration::from_millis(500),
        "creating a token took {:?}; the timeline below assumes it is quick",
        created - before_create
    );
    assert!(token.expires_in <= 2, "expiresIn {}", token.expires_in);
    let url = format!("{}/v1/things", gw.url());
    get_with_token(&url, &token.access_token).expect_status(200);

    std::thread::sleep(
        (created + Duration::from_millis(1400)).saturating_duration_since(Instant::now()),
    );
    let renewed = admin.renew(&token.access_token);
    renewed.expect_status(200);
    let answer = renewed.json();
    assert_eq!(
        answer["accessToken"].as_str(),
        Some(token.access_token.as_str()),
        "renewal returns the same token string"
    );
    let left = answer["expiresIn"]
        .as_u64()
        .unwrap_or_else(|| panic!("no numeric expiresIn: {answer}"));
    assert!(
        (1..=2).contains(&left),
        "expiresIn after renewal at 1.4 s of a 3 s MaxTTL should be the ~1.6 s left, got {left}"
    );

    std::thread::sleep(
        (created + Duration::from_millis(2300)).saturating_duration_since(Instant::now()),
    );
    let resp = get_with_token(&url, &token.access_token);
    assert_eq!(
        resp.status, 200,
        "the renewed token died at its first expiry (2 s); body: {}",
        resp.body
    );

    let mut last = None;
    eventually(Duration::from_secs(4), || {
        let resp = get_with_token(&url, &token.access_token);
        let done = resp.status != 200;
        last = Some(resp);
        done
    });
    let died = before_create.elapsed();
    assert!(
        died >= Duration::from_millis(2950),
        "the token died after {died:?}, before its 3 s MaxTTL"
    );
    let resp = last.expect("polled at least once");
    assert_eq!(
        resp.expect_error(401),
        "token reached its maximum TTL",
        "after the renewal only MaxTTL can end the token before 3.4 s (died after {died:?})"
    );

    let count = upstream.count();
    let renew = admin.renew(&token.access_token);
    renew.expect_error(401);
    get_with_token(&url, &token.access_token).expect_error(401);
    assert_eq!(upstream.count(), count);
    assert_log_clean(&gw, &[&token.access_token]);
}

#[test]
fn renewal_stops_at_max_ttl_redis() {
    let redis = Redis::start();
    case_renewal_stops_at_max_ttl(GatewayConfig::redis(&redis.url()));
}

#[test]
fn renewal_stops_at_max_ttl_embedded() {
    case_renewal_stops_at_max_ttl(GatewayConfig::embedded_temp());
}

// ---------------------------------------------------------------------------

/// Counted two ways: `INFO commandstats` (which also counts the commands a
/// script runs, so only EVALSHA's own count is meaningful there) and a
/// `MONITOR` client, which tells the gateway's commands from the script's.
/// The near cache is off here: this is the path every limited token takes,
/// and every token when the cache is off (tests/near_cache.rs covers it on).
#[test]
fn redis_one_evalsha_per_authenticated_request_none_for_malformed() {
    let redis = Redis::start();
    let upstream = Upstream::echo();
    let store = format!(
        "kind: redis\nurl: '{}'\ncache: {{enabled: false}}\n",
        redis.url()
    );
    let gw = Gateway::start(
        GatewayConfig::redis(&redis.url())
            .section("store", &store)
            .upstream(&upstream.url()),
    );
    let admin = gw.admin();
    let (id, token) = admin.identity_with_token("member", json!({}));
    admin.add_membership("p1", &id, json!({"role": "viewer"}));
    let url = format!("{}/v1/things", gw.url());

    // Loads the script into Redis's cache.
    get_with_token(&url, &token.access_token).expect_status(200);

    redis.reset_stats();
    let mut monitor = Monitor::start(&redis);
    let malformed = one_char_changed(&token.access_token, 40);
    get_with_token(&url, &malformed).expect_error(401);
    get_with_token(&url, "tgat_nope").expect_error(401);
    get(&url).expect_error(401);
    http(
        "GET",
        &url,
        &[("Authorization", "Basic dXNlcjpwYXNz")],
        None,
    )
    .expect_error(401);
    assert_eq!(
        monitor.client_commands(&redis),
        Vec::<String>::new(),
        "requests refused before the store must send no Redis command"
    );
    // The monitor's own ECHO marker and CLIENT LIST are the only commands.
    let stats = command_stats(&redis);
    assert!(
        stats
            .iter()
            .all(|(name, _)| ["echo", "monitor", "client|list"].contains(&name.as_str())),
        "commands ran for requests refused before the store: {stats:?}"
    );

    for n in 1..=3 {
        get_with_token(&url, &token.access_token).expect_status(200);
        assert_eq!(
            monitor.client_commands(&redis),
            ["EVALSHA"],
            "an authenticated request must be exactly one EVALSHA (request {n})"
        );
        assert_eq!(
            redis.command_calls("evalsha"),
            n,
            "{:?}",
            command_stats(&redis)
        );
    }

    // A request that resolves a project is still a single round trip.
    get_with_token(
        &format!("{}/api/v1/projects/p1/secrets", gw.url()),
        &token.access_token,
    )
    .expect_status(200);
    assert_eq!(
        upstream.last().header("x-tokengate-project-role"),
        Some("viewer")
    );
    assert_eq!(
        monitor.client_commands(&redis),
        ["EVALSHA"],
        "a request with a project must be exactly one EVALSHA"
    );
    assert_eq!(redis.command_calls("evalsha"), 4);
    for name in ["eval", "script|load", "evalsha_ro", "eval_ro"] {
        assert_eq!(
            redis.command_calls(name),
            0,
            "{name}: {:?}",
            command_stats(&redis)
        );
    }
}

// ---------------------------------------------------------------------------

#[test]
fn unreachable_upstream_is_a_502_json_error() {
    // The harness's default upstream is a port nothing listens on.
    let gw = Gateway::start(GatewayConfig::embedded_temp());
    let (_, token) = gw.admin().identity_with_token("member", json!({}));
    let resp = get_with_token(&format!("{}/v1/things", gw.url()), &token.access_token);
    resp.expect_error(502);
    assert!(!resp.body.contains(&token.access_token));
    assert_log_clean(&gw, &[&token.access_token]);
}

#[test]
fn public_route_needs_no_token_and_strips_spoofed_identity() {
    let upstream = Upstream::echo();
    let gw = Gateway::start(
        GatewayConfig::embedded_temp()
            .upstream(&upstream.url())
            .public_routes(&["/public"]),
    );
    let resp = http(
        "GET",
        &format!("{}/public/status?a=b", gw.url()),
        &[
            (
                "x-tokengate-identity-id",
                "00000000-0000-4000-8000-000000000000",
            ),
            ("X-Tokengate-Identity-Name", "root"),
            ("X-TOKENGATE-ORG-ROLE", "admin"),
            ("x-tokengate-token-id", "forged"),
            ("x-tokengate-project-id", "p1"),
            ("x-tokengate-project-role", "admin"),
            ("x-other", "kept"),
        ],
        None,
    );
    resp.expect_status(200);
    assert_eq!(upstream.count(), 1);
    let rec = upstream.last();
    assert_eq!(rec.path, "/public/status?a=b");
    for name in INJECTED {
        assert!(
            !rec.has_header(name),
            "spoofed {name} reached the upstream on a public route: {:?}",
            rec.headers
        );
    }
    assert_eq!(rec.header_all("x-other"), ["kept"]);

    // Everything else still needs a token.
    refused(
        &gw,
        &upstream,
        &[("X-Tokengate-Org-Role", "admin")],
        401,
        Some("missing Authorization header"),
        &[],
    );
}
