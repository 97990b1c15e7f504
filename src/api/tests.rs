//! Tests of the management API through `Api::handle` against a real embedded
//! store in a temporary directory; one file per resource under `tests/`.
//! Every error answer is checked for shape and for leaked token secrets.

mod caller;
mod identities;
mod memberships;
mod renewal;
mod routing;
mod token_auth;
mod tokens;

use super::{Api, ApiRequest};
use crate::auth::{Deny, Grant};
use crate::model::Millis;
use crate::store::embedded::EmbeddedStore;
use crate::store::{AuthRequest, Store};
use crate::token::AccessToken;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tempfile::TempDir;

pub(super) const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";
pub(super) const ORG: &str = "org-1";
/// 2023-11-14T22:13:20Z: the default `now` of every request.
pub(super) const NOW: Millis = 1_700_000_000_000;
pub(super) const REQ_ID: &str = "req-test";

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The client address of every request unless a test says otherwise.
pub(super) fn client() -> IpAddr {
    ip("10.1.2.3")
}

#[derive(Debug)]
pub(super) struct Resp {
    pub status: u16,
    pub json: Value,
}

/// One request; `Value::Null` as body sends no body at all.
pub(super) struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub auth: Option<String>,
    pub body: Vec<u8>,
    pub now: Millis,
    pub ip: IpAddr,
}

impl<'a> Call<'a> {
    pub fn new(method: &'a str, path: &'a str, body: Value) -> Call<'a> {
        let body = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        Call {
            method,
            path,
            query: None,
            auth: None,
            body,
            now: NOW,
            ip: client(),
        }
    }

    pub fn bearer(mut self, credential: &str) -> Self {
        self.auth = Some(format!("Bearer {credential}"));
        self
    }

    pub fn admin(self) -> Self {
        self.bearer(ADMIN_KEY)
    }

    pub fn query(mut self, q: &'a str) -> Self {
        self.query = Some(q);
        self
    }

    pub fn from(mut self, ip_text: &str) -> Self {
        self.ip = ip(ip_text);
        self
    }

    pub fn at(mut self, now: Millis) -> Self {
        self.now = now;
        self
    }

    pub fn raw_body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }
}

pub(super) struct H {
    pub api: Api,
    pub store: Arc<EmbeddedStore>,
    /// Every token secret handed out, so no error answer may contain one.
    secrets: Mutex<Vec<String>>,
    _dir: TempDir,
}

impl H {
    pub fn new() -> H {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("api.redb")).unwrap());
        H {
            api: Api::new(store.clone(), Some(ADMIN_KEY.to_string())),
            store,
            secrets: Mutex::new(Vec::new()),
            _dir: dir,
        }
    }

    pub async fn send(&self, c: Call<'_>) -> Resp {
        let secrets = self.secrets.lock().unwrap().clone();
        send_to(&self.api, &secrets, c).await
    }

    /// As the admin key, at `NOW`.
    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Resp {
        self.send(Call::new(method, path, body).admin()).await
    }

    /// Records a secret the tests obtained some other way.
    pub fn remember(&self, secret: &str) {
        self.secrets.lock().unwrap().push(secret.to_string());
    }

    /// A new identity with `role`; its id.
    pub async fn identity(&self, role: &str) -> String {
        let r = self
            .admin(
                "POST",
                "/api/v1/identities",
                json!({"name": format!("{role}-identity"), "organizationId": ORG, "role": role}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        r.json["identity"]["id"].as_str().unwrap().to_string()
    }

    pub async fn attach(&self, id: &str, config: Value) -> Value {
        let r = self
            .admin(
                "POST",
                &format!("/api/v1/auth/token-auth/identities/{id}"),
                config,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        r.json["identityTokenAuth"].clone()
    }

    /// Issues a token at `now`; the whole creation answer.
    pub async fn issue_at(&self, id: &str, now: Millis) -> Value {
        let r = self
            .send(
                Call::new(
                    "POST",
                    &format!("/api/v1/auth/token-auth/identities/{id}/tokens"),
                    json!({"name": "t"}),
                )
                .admin()
                .at(now),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        self.remember(r.json["accessToken"].as_str().unwrap());
        r.json
    }

    /// Issues a token at `NOW`; (secret, token id).
    pub async fn issue(&self, id: &str) -> (String, String) {
        let v = self.issue_at(id, NOW).await;
        (
            v["accessToken"].as_str().unwrap().to_string(),
            v["tokenData"]["id"].as_str().unwrap().to_string(),
        )
    }

    /// An identity with `role`, Token Auth `config`, and one token: (id, secret, token id).
    pub async fn with_token(&self, role: &str, config: Value) -> (String, String, String) {
        let id = self.identity(role).await;
        self.attach(&id, config).await;
        let (secret, token_id) = self.issue(&id).await;
        (id, secret, token_id)
    }

    /// What the request path would decide for this token at `now`.
    pub async fn authenticate(
        &self,
        secret: &str,
        now: Millis,
        project: Option<&str>,
    ) -> Result<Grant, Deny> {
        let token = AccessToken::parse(secret).unwrap();
        self.store
            .authenticate(&AuthRequest {
                token: &token,
                client_ip: client(),
                now,
                project,
                needs: crate::auth::Needs::ANY,
                route_rate_limit: None,
            })
            .await
            .unwrap()
    }
}

/// Sends `c` to `api` and checks every error answer: Infisical's shape, the
/// request id, and none of `secrets` anywhere in the body.
pub(super) async fn send_to(api: &Api, secrets: &[String], c: Call<'_>) -> Resp {
    let req = ApiRequest {
        method: c.method,
        path: c.path,
        query: c.query,
        authorization: c.auth.as_deref(),
        body: &c.body,
        client_ip: c.ip,
        now: c.now,
        req_id: REQ_ID,
        site: Default::default(),
    };
    let resp = api.handle(&req, &Default::default()).await;
    let text = String::from_utf8(resp.body).unwrap();
    let json: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    if resp.status >= 400 {
        assert_ne!(resp.status, 500, "{text}");
        assert_eq!(json["statusCode"], resp.status, "{text}");
        assert_eq!(json["reqId"], REQ_ID, "{text}");
        assert!(
            json["message"].is_string() && json["error"].is_string(),
            "{text}"
        );
        for s in secrets {
            let body = &s[crate::token::PREFIX.len()..];
            assert!(!text.contains(body), "error answer leaks a token: {text}");
        }
    }
    Resp {
        status: resp.status,
        json,
    }
}

/// Asserts a 422 naming `field` in both `details` and `message`.
#[track_caller]
pub(super) fn assert_invalid(r: &Resp, field: &str) {
    assert_eq!(r.status, 422, "{:?}", r.json);
    assert_eq!(r.json["error"], "ValidationFailure");
    assert_eq!(r.json["details"][0]["field"], field, "{:?}", r.json);
    assert!(
        r.json["message"].as_str().unwrap().contains(field),
        "{:?}",
        r.json
    );
}

/// A well-formed token (valid checksum) for the given ids with a secret we
/// choose: what an attacker who knows a token id could present.
pub(super) fn forge(identity_id: &str, token_id: &str, secret: [u8; 32]) -> String {
    use base64::Engine;
    use sha2::Digest;
    let id = |s: &str| crate::token::Id::parse(s).unwrap().0;
    let mut raw = Vec::with_capacity(68);
    raw.extend_from_slice(&id(identity_id));
    raw.extend_from_slice(&id(token_id));
    raw.extend_from_slice(&secret);
    let sum = sha2::Sha256::digest(&raw);
    raw.extend_from_slice(&sum[..4]);
    format!(
        "{}{}",
        crate::token::PREFIX,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}
