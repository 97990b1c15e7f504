//! `POST /api/v1/auth/token/renew` and `/revoke` by the token holder. Time is
//! passed in as `now`; nothing sleeps.

use super::*;
use crate::model::rfc3339;

const S: Millis = 1000;

async fn renew(h: &H, secret: &str, now: Millis) -> Resp {
    h.send(
        Call::new(
            "POST",
            "/api/v1/auth/token/renew",
            json!({"accessToken": secret}),
        )
        .at(now),
    )
    .await
}

async fn revoke(h: &H, secret: &str) -> Resp {
    h.send(Call::new(
        "POST",
        "/api/v1/auth/token/revoke",
        json!({"accessToken": secret}),
    ))
    .await
}

/// The token with its last character changed: a typo the checksum catches.
fn flip_last(secret: &str) -> String {
    let (head, last) = secret.split_at(secret.len() - 1);
    format!("{head}{}", if last == "A" { "B" } else { "A" })
}

async fn token_view(h: &H, tid: &str) -> Value {
    let r = h
        .admin(
            "GET",
            &format!("/api/v1/auth/token-auth/tokens/{tid}"),
            Value::Null,
        )
        .await;
    r.json["token"].clone()
}

#[tokio::test]
async fn renewal_extends_from_now_and_keeps_the_token() {
    let h = H::new();
    let (_, secret, tid) = h
        .with_token(
            "member",
            json!({"accessTokenTTL": 100, "accessTokenMaxTTL": 1000}),
        )
        .await;
    let r = renew(&h, &secret, NOW + 50 * S).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(
        r.json,
        json!({"accessToken": secret, "expiresIn": 100, "accessTokenMaxTTL": 1000, "tokenType": "Bearer"})
    );
    let t = token_view(&h, &tid).await;
    assert_eq!(t["accessTokenLastRenewedAt"], rfc3339(NOW + 50 * S));
    assert_eq!(t["accessTokenNumUses"], 0, "renewal is not a use");
    // Without the renewal it would have died at 100 s.
    assert!(h.authenticate(&secret, NOW + 120 * S, None).await.is_ok());
    // Part-way through a second, expiresIn counts whole seconds left.
    let r = renew(&h, &secret, NOW + 149 * S + 500).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["expiresIn"], 100);
    assert_eq!(token_view(&h, &tid).await["accessTokenNumUses"], 1);
    assert!(h.authenticate(&secret, NOW + 249 * S, None).await.is_ok());
    assert_eq!(
        h.authenticate(&secret, NOW + 249 * S + 500, None).await,
        Err(Deny::Expired)
    );
}

#[tokio::test]
async fn renewal_near_max_ttl_shortens_and_after_it_is_refused() {
    let h = H::new();
    let (_, secret, _) = h
        .with_token(
            "member",
            json!({"accessTokenTTL": 100, "accessTokenMaxTTL": 150}),
        )
        .await;
    let r = renew(&h, &secret, NOW + 90 * S).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["expiresIn"], 60, "only what MaxTTL leaves");
    assert!(h.authenticate(&secret, NOW + 149 * S, None).await.is_ok());
    assert_eq!(
        h.authenticate(&secret, NOW + 150 * S, None).await,
        Err(Deny::MaxTtlReached)
    );
    let r = renew(&h, &secret, NOW + 150 * S).await;
    assert_eq!(r.status, 401, "{:?}", r.json);
    assert_eq!(r.json["message"], "token reached its maximum TTL");
    let r = renew(&h, &secret, NOW + 10_000 * S).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn an_expired_token_cannot_be_renewed() {
    let h = H::new();
    let (_, secret, _) = h
        .with_token(
            "member",
            json!({"accessTokenTTL": 100, "accessTokenMaxTTL": 1000}),
        )
        .await;
    let r = renew(&h, &secret, NOW + 100 * S).await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (401, Some("token expired"))
    );
}

#[tokio::test]
async fn periodic_tokens_renew_to_the_period_past_max_ttl() {
    let h = H::new();
    let (_, secret, _) = h
        .with_token(
            "member",
            json!({"accessTokenTTL": 30, "accessTokenMaxTTL": 100, "accessTokenPeriod": 60}),
        )
        .await;
    let r = renew(&h, &secret, NOW + 50 * S).await;
    assert_eq!((r.status, r.json["expiresIn"].as_u64()), (200, Some(60)));
    let r = renew(&h, &secret, NOW + 100 * S).await;
    assert_eq!((r.status, r.json["expiresIn"].as_u64()), (200, Some(60)));
    assert!(
        h.authenticate(&secret, NOW + 159 * S, None).await.is_ok(),
        "MaxTTL does not apply"
    );
    assert_eq!(
        h.authenticate(&secret, NOW + 160 * S, None).await,
        Err(Deny::Expired)
    );
    assert_eq!(renew(&h, &secret, NOW + 200 * S).await.status, 401);
}

#[tokio::test]
async fn a_token_without_expiry_reports_zero() {
    let h = H::new();
    let (_, secret, _) = h
        .with_token(
            "member",
            json!({"accessTokenTTL": 0, "accessTokenMaxTTL": 0}),
        )
        .await;
    let r = renew(&h, &secret, NOW + 1_000_000 * S).await;
    assert_eq!((r.status, r.json["expiresIn"].as_u64()), (200, Some(0)));
}

#[tokio::test]
async fn renewal_refusals() {
    let h = H::new();
    let (id, secret, tid) = h.with_token("member", json!({})).await;
    let url = "/api/v1/auth/token/renew";
    assert_invalid(
        &h.send(Call::new("POST", url, json!({}))).await,
        "accessToken",
    );
    assert_invalid(
        &h.send(Call::new("POST", url, json!({"accessToken": 5})))
            .await,
        "accessToken",
    );
    assert_eq!(
        h.send(Call::new("POST", url, Value::Null)).await.status,
        422
    );
    let truncated = format!("{{\"accessToken\": \"{secret}");
    let r = h
        .send(Call::new("POST", url, Value::Null).raw_body(truncated.as_bytes()))
        .await;
    assert_eq!(r.status, 400);
    for bad in [
        "tgat_abc".to_string(),
        flip_last(&secret),
        AccessToken::generate(crate::token::Id::random()).expose(),
        forge(&id, &tid, [9; 32]),
    ] {
        let r = renew(&h, &bad, NOW).await;
        assert_eq!(r.status, 401, "{:?}", r.json);
        assert_eq!(r.json["message"], "invalid access token");
    }
    assert_eq!(
        token_view(&h, &tid).await["accessTokenLastRenewedAt"],
        Value::Null
    );
    assert_eq!(revoke(&h, &secret).await.status, 200);
    let r = renew(&h, &secret, NOW).await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (401, Some("access token has been revoked"))
    );
}

#[tokio::test]
async fn renewal_checks_the_client_ip_but_not_the_use_limit() {
    // A token used from outside its trusted IPs cannot reach the upstream,
    // and must not keep itself alive from there either; renewal grants no
    // access by itself, so it spends no use and a spent token still renews.
    let h = H::new();
    let (_, secret, tid) = h
        .with_token(
            "member",
            json!({"accessTokenNumUsesLimit": 1, "accessTokenTrustedIps": [{"ipAddress": "10.1.0.0/16"}]}),
        )
        .await;
    let outside = Call::new(
        "POST",
        "/api/v1/auth/token/renew",
        json!({"accessToken": secret}),
    )
    .at(NOW + S)
    .from("192.168.7.7");
    let r = h.send(outside).await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (
            403,
            Some("IP 192.168.7.7 is not in the token's trusted IPs")
        ),
    );
    assert_eq!(
        token_view(&h, &tid).await["accessTokenLastRenewedAt"],
        Value::Null
    );
    assert!(
        h.authenticate(&secret, NOW + S, None).await.is_ok(),
        "the one use"
    );
    let r = renew(&h, &secret, NOW + 2 * S).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(token_view(&h, &tid).await["accessTokenNumUses"], 1);
}

#[tokio::test]
async fn self_revocation() {
    let h = H::new();
    let (id, secret, tid) = h.with_token("member", json!({"accessTokenTTL": 60})).await;
    let (other, other_tid) = h.issue(&id).await;
    let r = revoke(&h, &secret).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(
        r.json,
        json!({"message": "Successfully revoked access token"})
    );
    assert_eq!(h.authenticate(&secret, NOW, None).await, Err(Deny::Revoked));
    assert_eq!(token_view(&h, &tid).await["isAccessTokenRevoked"], true);
    assert_eq!(revoke(&h, &secret).await.status, 200, "idempotent");
    assert!(h.authenticate(&other, NOW, None).await.is_ok());

    // Knowing a token id is not enough: the secret must match.
    let r = revoke(&h, &forge(&id, &other_tid, [1; 32])).await;
    assert_eq!(
        (r.status, r.json["message"].as_str()),
        (401, Some("invalid access token"))
    );
    assert!(h.authenticate(&other, NOW, None).await.is_ok());
    for bad in [
        "tgat_abc".to_string(),
        AccessToken::generate(crate::token::Id::random()).expose(),
    ] {
        assert_eq!(revoke(&h, &bad).await.status, 401);
    }
    let url = "/api/v1/auth/token/revoke";
    assert_invalid(
        &h.send(Call::new("POST", url, json!({"token": other})))
            .await,
        "accessToken",
    );

    // An expired token can still be revoked by its holder.
    let r = h
        .send(Call::new("POST", url, json!({"accessToken": other})).at(NOW + 3_600 * S))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.authenticate(&other, NOW, None).await, Err(Deny::Revoked));
}
