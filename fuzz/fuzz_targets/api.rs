//! Fuzz target `api`: sequences of management API requests (method, path,
//! query, Authorization, body, client address, time) answered by the real
//! handler (`api::Api::handle`) over an embedded store in a temporary
//! directory; each input first seeds two organizations of its own, their
//! identities and tokens, and a project.
#![no_main]

// Each target uses part of the shared input helpers.
#[allow(dead_code)]
mod common;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokengate::api::{Api, ApiRequest, ApiResponse};
use tokengate::audit::AuditLog;
use tokengate::store::embedded::EmbeddedStore;
use tokengate::token::{AccessToken, Id, PREFIX};

/// 2023-11-14T22:13:20Z, the start of every sequence.
const NOW: u64 = 1_700_000_000_000;
const REQ_ID: &str = "req-fuzz";

/// One request of a sequence: a line of the input.
struct Step<'a> {
    method: &'a str,
    /// Path and query, with placeholders.
    target: &'a str,
    auth: AuthIn<'a>,
    /// With placeholders.
    body: &'a str,
    client: Option<IpAddr>,
    /// Seconds since the start of the sequence.
    at: u64,
}

enum AuthIn<'a> {
    None,
    AdminKey,
    /// The token of one of the seeded callers.
    Caller(Who),
    Raw(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Org1Admin,
    Org1Member,
    Org2Admin,
}

impl Who {
    fn parse(s: &str) -> Option<Who> {
        match s {
            "org1-admin" => Some(Who::Org1Admin),
            "org1-member" => Some(Who::Org1Member),
            "org2-admin" => Some(Who::Org2Admin),
            _ => None,
        }
    }
}

// One request a line, fields: method, path with query, Authorization
// (empty: none; `admin`: the admin key; `org1-admin`, `org1-member`,
// `org2-admin`: that seeded caller's token; anything else as it is), body,
// client address (default 10.1.2.3), seconds after the start. In the path,
// query and body, `{id:N}` stands for the Nth id seen in an answer so far,
// `{token:CALLER}` for that caller's token, and `{org1}`, `{org2}` and
// `{project}` for this input's organizations and project (the org1 member
// is a viewer of the project).
fn steps(data: &[u8]) -> Vec<Step<'_>> {
    common::utf8_prefix(data)
        .split('\n')
        .filter(|l| !l.is_empty())
        .take(8)
        .map(|line| {
            let mut f = common::Fields::new(line.as_bytes());
            let method = f.text();
            let target = f.text();
            let auth = match f.text() {
                "" => AuthIn::None,
                "admin" => AuthIn::AdminKey,
                other => match Who::parse(other) {
                    Some(w) => AuthIn::Caller(w),
                    None => AuthIn::Raw(other),
                },
            };
            let body = f.text();
            let client = f.text().trim().parse().ok();
            let at = f.number() % (10 * 365 * 86_400);
            Step {
                method,
                target,
                auth,
                body,
                client,
                at,
            }
        })
        .collect()
}

/// The API over an embedded store, shared by a run of inputs: opening and
/// closing a redb file costs some hundred times more than a request, so a
/// store serves `INPUTS_PER_STORE` inputs before a fresh one replaces it.
/// Each input seeds organizations and a project of its own, so what earlier
/// inputs did to theirs cannot change what this one checks.
struct Shared {
    api: Api,
    admin_key: String,
    inputs: u32,
}

const INPUTS_PER_STORE: u32 = 200;

impl Shared {
    fn new() -> Shared {
        // On tmpfs where there is one: every change is a durable commit.
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            tempfile::tempdir_in("/dev/shm")
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        let store = EmbeddedStore::open(&dir.path().join("api.redb")).expect("a fresh store");
        // The store keeps its file open and never opens the path again, so
        // the directory can go now: nothing is left behind when libFuzzer
        // ends the process without dropping this.
        dir.close().expect("the temporary directory removed");
        // Random per process: no input can hold it, so only `AdminKey` is it.
        let admin_key = format!("fuzz-admin-{}", Id::random().hex());
        Shared {
            api: Api::new(Arc::new(store), Some(admin_key.clone())),
            admin_key,
            inputs: 0,
        }
    }
}

/// What one sequence works with: the shared API, this input's organizations
/// and project, and what the seeding and the answers so far revealed.
struct World<'s> {
    api: &'s Api,
    admin_key: &'s str,
    /// This input's two organizations and project.
    org1: String,
    org2: String,
    project: String,
    /// The seeded callers' identity ids, tokens and token ids.
    callers: Vec<(Who, String, String, String)>,
    /// Ids seen in answers, for later paths and bodies.
    known: Vec<String>,
    /// Every token secret handed out so far.
    secrets: Vec<String>,
    /// Whether some identity's org role may have changed since seeding.
    roles_changed: bool,
    /// The paths, queries and bodies of the requests so far, lowercase.
    mentioned: String,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    static SHARED: Mutex<Option<Shared>> = Mutex::new(None);
    static INPUT: AtomicU64 = AtomicU64::new(0);
    let steps = steps(data);
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if shared.as_ref().is_none_or(|s| s.inputs >= INPUTS_PER_STORE) {
        // The old store goes first: two open at once would need twice the room.
        *shared = None;
        *shared = Some(Shared::new());
    }
    let s = shared.as_mut().expect("just made");
    s.inputs += 1;
    let n = INPUT.fetch_add(1, Ordering::Relaxed);
    runtime().block_on(async {
        let mut w = World::new(&s.api, &s.admin_key, n).await;
        for step in &steps {
            w.step(step).await;
        }
    })
});

impl<'s> World<'s> {
    async fn new(api: &'s Api, admin_key: &'s str, n: u64) -> World<'s> {
        let mut w = World {
            api,
            admin_key,
            org1: format!("org{n}-1"),
            org2: format!("org{n}-2"),
            project: format!("p{n}"),
            callers: Vec::new(),
            known: Vec::new(),
            secrets: Vec::new(),
            roles_changed: false,
            mentioned: String::new(),
        };
        for (who, org, role) in [
            (Who::Org1Admin, w.org1.clone(), "admin"),
            (Who::Org1Member, w.org1.clone(), "member"),
            (Who::Org2Admin, w.org2.clone(), "admin"),
        ] {
            let id = w
                .seed(
                    "POST",
                    "/api/v1/identities".into(),
                    json!({"name": "seed", "organizationId": org, "role": role}),
                )
                .await["identity"]["id"]
                .as_str()
                .expect("an identity id")
                .to_string();
            w.seed(
                "POST",
                format!("/api/v1/auth/token-auth/identities/{id}"),
                json!({}),
            )
            .await;
            let t = w
                .seed(
                    "POST",
                    format!("/api/v1/auth/token-auth/identities/{id}/tokens"),
                    json!({"name": "seed"}),
                )
                .await;
            let token = t["accessToken"].as_str().expect("a token").to_string();
            let token_id = t["tokenData"]["id"]
                .as_str()
                .expect("a token id")
                .to_string();
            w.known.push(id.clone());
            w.known.push(token_id.clone());
            w.callers.push((who, id, token, token_id));
        }
        let member = w.caller(Who::Org1Member).1.clone();
        let project = w.project.clone();
        w.seed(
            "POST",
            format!("/api/v1/projects/{project}/memberships/identities/{member}"),
            json!({"role": "viewer"}),
        )
        .await;
        w
    }

    async fn seed(&mut self, method: &str, path: String, body: Value) -> Value {
        let body = serde_json::to_vec(&body).expect("JSON");
        let auth = format!("Bearer {}", self.admin_key);
        let req = request(
            method,
            &path,
            None,
            Some(&auth),
            &body,
            "10.1.2.3".parse().unwrap(),
            NOW,
        );
        let resp = self.api.handle(&req, &AuditLog::default()).await;
        let v: Value = serde_json::from_slice(&resp.body).expect("JSON");
        assert_eq!(resp.status, 200, "seeding {method} {path}: {v}");
        if let Some(t) = v["accessToken"].as_str() {
            self.secrets.push(t.to_string());
        }
        v
    }

    fn caller(&self, who: Who) -> &(Who, String, String, String) {
        self.callers
            .iter()
            .find(|c| c.0 == who)
            .expect("every caller is seeded")
    }

    fn known(&self, i: usize) -> &str {
        &self.known[i % self.known.len()]
    }

    /// `text` with its placeholders replaced.
    fn expand(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open..];
            let Some(close) = after.find('}') else {
                break;
            };
            let inner = &after[1..close];
            if let Some(n) = inner.strip_prefix("id:") {
                out.push_str(self.known(n.parse::<usize>().unwrap_or(0)));
            } else if let Some(w) = inner.strip_prefix("token:").and_then(Who::parse) {
                out.push_str(&self.caller(w).2);
            } else if inner == "org1" {
                out.push_str(&self.org1);
            } else if inner == "org2" {
                out.push_str(&self.org2);
            } else if inner == "project" {
                out.push_str(&self.project);
            } else {
                out.push_str(&after[..=close]);
            }
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        out
    }

    async fn step(&mut self, s: &Step<'_>) {
        let method = s.method;
        let target = self.expand(s.target);
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target.as_str(), None),
        };
        let (auth, who) = match &s.auth {
            AuthIn::None => (None, None),
            AuthIn::AdminKey => (Some(format!("Bearer {}", self.admin_key)), None),
            AuthIn::Caller(w) => (Some(format!("Bearer {}", self.caller(*w).2)), Some(*w)),
            AuthIn::Raw(r) => (Some(r.to_string()), None),
        };
        let body = self.expand(s.body);
        let client = s.client.unwrap_or_else(|| "10.1.2.3".parse().unwrap());
        let now = NOW + s.at * 1000;
        let req = request(
            method,
            path,
            query,
            auth.as_deref(),
            body.as_bytes(),
            client,
            now,
        );
        self.mentioned
            .push_str(&format!("{path} {} {body}\n", query.unwrap_or("")).to_ascii_lowercase());
        let resp = self.api.handle(&req, &AuditLog::default()).await;
        let answer = self.check(&req, &resp);

        let op = Api::operation(&req);
        let success = (200..300).contains(&resp.status);
        let self_service = matches!(op.0, "renew" | "revoke_self");
        let credentialed = matches!(s.auth, AuthIn::AdminKey | AuthIn::Caller(_));
        if success && !self_service {
            assert!(
                credentialed,
                "{method} {path} answered {} without credentials",
                resp.status
            );
            if who == Some(Who::Org1Member) {
                assert!(self.roles_changed, "a member managed: {method} {path}");
            }
        }
        if who == Some(Who::Org2Admin) {
            self.stays_in_its_org(&req, &resp);
        }
        if success && op == ("identity", "PATCH") {
            self.roles_changed = true;
        }
        self.learn(&answer);
    }

    /// What every answer satisfies: JSON, never 500, Infisical's error shape,
    /// and no secret in it but the token the answer hands out.
    fn check(&self, req: &ApiRequest<'_>, resp: &ApiResponse) -> Value {
        assert!((200..600).contains(&resp.status));
        assert_ne!(resp.status, 500);
        let text = std::str::from_utf8(&resp.body).expect("answers are UTF-8");
        let mut v: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {text}"));
        assert!(
            !text.contains(self.admin_key),
            "answer shows the admin key: {text}"
        );
        if resp.status >= 400 {
            assert_eq!(v["statusCode"], resp.status, "{text}");
            assert_eq!(v["reqId"], REQ_ID, "{text}");
            assert!(v["message"].is_string() && v["error"].is_string(), "{text}");
        }
        let handed_out = match v.get_mut("accessToken") {
            Some(t) if resp.status < 300 => t.take(),
            _ => Value::Null,
        };
        let rest = v.to_string();
        for s in &self.secrets {
            let body = &s[PREFIX.len()..];
            assert!(
                !rest.contains(body),
                "{} {} answered {} with a token in it: {rest}",
                req.method,
                req.path,
                resp.status
            );
        }
        if let Some(v) = v.as_object_mut() {
            v.insert("accessToken".into(), handed_out);
        }
        v
    }

    /// An org-2 caller learns no id of an org-1 identity or token that no
    /// request of the sequence named: any caller can store text (a name, a
    /// role slug) that the org-2 caller later reads back.
    fn stays_in_its_org(&self, req: &ApiRequest<'_>, resp: &ApiResponse) {
        let asked = &self.mentioned;
        let answer = String::from_utf8_lossy(&resp.body).to_ascii_lowercase();
        for (who, id, token, token_id) in &self.callers {
            // Holding a token is authority over it (renewal, revocation).
            if *who == Who::Org2Admin || asked.contains(&token.to_ascii_lowercase()) {
                continue;
            }
            for x in [id, token_id] {
                let hex = x.replace('-', "");
                if asked.contains(x.as_str()) || asked.contains(&hex) {
                    continue;
                }
                assert!(
                    !answer.contains(x.as_str()) && !answer.contains(&hex),
                    "org-2 learned {x} from {} {}: {answer}",
                    req.method,
                    req.path
                );
            }
        }
    }

    fn learn(&mut self, v: &Value) {
        match v {
            Value::String(s) if AccessToken::parse(s).is_ok() => {
                if !self.secrets.contains(s) {
                    self.secrets.push(s.clone());
                }
            }
            Value::String(s) if Id::parse(s).is_some() && s.len() == 36 => {
                if self.known.len() < 32 && !self.known.contains(s) {
                    self.known.push(s.clone());
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.learn(i)),
            Value::Object(m) => m.values().for_each(|i| self.learn(i)),
            _ => {}
        }
    }
}

fn request<'a>(
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    authorization: Option<&'a str>,
    body: &'a [u8],
    client_ip: IpAddr,
    now: u64,
) -> ApiRequest<'a> {
    ApiRequest {
        method,
        path,
        query,
        authorization,
        body,
        client_ip,
        now,
        req_id: REQ_ID,
        site: Default::default(),
    }
}
