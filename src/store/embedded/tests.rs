//! Tests of the embedded store's locking and durability that need its
//! insides (holding a commit open, failing the group commit).

use super::*;
use crate::auth::Deny;
use crate::auth::Needs;
use crate::model::default_trusted_ips;
use crate::token::AccessToken;
use std::sync::mpsc;
use std::time::Duration;

fn identity(id: Id) -> Identity {
    Identity {
        id,
        name: "i".into(),
        org_id: "org".into(),
        role: "member".into(),
        has_delete_protection: false,
        created_at: 0,
        updated_at: 0,
    }
}

/// An identity with Token Auth and one token (`limit` uses, 0: none),
/// written through the store.
async fn with_token(store: &EmbeddedStore, limit: u64) -> AccessToken {
    let iid = Id::random();
    let token = AccessToken::generate(iid);
    store.create_identity(&identity(iid)).await.unwrap();
    let cfg = TokenAuthConfig {
        id: Id::random(),
        identity_id: iid,
        ttl: 0,
        max_ttl: 0,
        num_uses_limit: limit,
        trusted_ips: default_trusted_ips(),
        period: 0,
        created_at: 0,
        updated_at: 0,
        rate_limit: None,
    };
    assert!(store.put_token_auth(&cfg, PutMode::Create).await.unwrap());
    let record = TokenRecord {
        id: token.token_id,
        identity_id: iid,
        name: "t".into(),
        secret_hash: token.secret_hash(),
        created_at: 0,
        last_renewed_at: None,
        last_used_at: None,
        num_uses: 0,
        num_uses_limit: limit,
        ttl: 0,
        max_ttl: 0,
        period: 0,
        trusted_ips: default_trusted_ips(),
        revoked: false,
    };
    assert!(store.create_token(&record).await.unwrap());
    token
}

/// A request with `token` from a trusted address, needing nothing.
fn ask(token: &AccessToken) -> AuthRequest<'_> {
    AuthRequest {
        token,
        client_ip: "10.0.0.1".parse().unwrap(),
        now: 1,
        project: None,
        needs: Needs::ANY,
        route_rate_limit: None,
    }
}

/// A management change holding its commit open does not hold requests:
/// one is answered meanwhile (before the fix it waited for the fsync).
#[test]
fn requests_are_answered_while_a_management_change_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let token = rt.block_on(with_token(&store, 0));

    // The next management change stops inside its commit until told.
    let (go_on, held) = mpsc::channel();
    *store.inner.hold.lock().unwrap() = Some(held);
    let writer = {
        let store = store.clone();
        let handle = rt.handle().clone();
        std::thread::spawn(move || handle.block_on(store.create_identity(&identity(Id::random()))))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.inner.hold.lock().unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the change never committed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    let (answered, answer) = mpsc::channel();
    {
        let store = store.clone();
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            let outcome = handle.block_on(store.authenticate(&ask(&token)));
            let _ = answered.send(outcome.map(|o| o.is_ok()));
        });
    }
    let outcome = answer.recv_timeout(Duration::from_secs(5));
    assert!(!writer.is_finished(), "the change was still committing");
    go_on.send(()).unwrap();
    assert_eq!(
        outcome.ok().map(|o| o.ok()),
        Some(Some(true)),
        "the request was not answered while the change committed"
    );
    writer.join().unwrap().unwrap();
}

/// A limited token's use whose commit fails is refused and not spent:
/// the token still has its whole limit after (before the fix the failed
/// attempt kept one use counted).
#[test]
fn a_use_whose_commit_fails_is_refused_and_not_spent() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = rt.block_on(with_token(&store, 2));
    let uses = || {
        rt.block_on(store.get_token(token.token_id))
            .unwrap()
            .unwrap()
            .num_uses
    };

    store
        .inner
        .fail_commits
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        rt.block_on(store.authenticate(&ask(&token))).is_err(),
        "refused: 503"
    );
    assert_eq!(uses(), 0, "the refused use is not spent");
    store
        .inner
        .fail_commits
        .store(false, std::sync::atomic::Ordering::Relaxed);
    for _ in 0..2 {
        assert!(rt
            .block_on(store.authenticate(&ask(&token)))
            .unwrap()
            .is_ok());
    }
    assert_eq!(
        rt.block_on(store.authenticate(&ask(&token))).unwrap(),
        Err(Deny::UsageLimitReached)
    );
    assert_eq!(uses(), 2);
}
