//! A Redis Cluster master killed (SIGKILL) under load: requests whose
//! identity lives in its slots get 503 until its replica is promoted, then
//! succeed again from the same gateway process; measures the window and
//! holds the client's, the upstream's and the use counter's tallies of a
//! use-limited and an unlimited token against each other.
//!
//! Replication in Redis is asynchronous, so a failover can lose the last
//! writes the dead master made (a counted use among them), and a check
//! whose reply died with the master may or may not have counted. The
//! gateway does not wait for replicas (`WAIT`, which would narrow that
//! window, not close it), so the test asserts what must hold regardless (no
//! 2xx that was not forwarded, only 503 while the slot has no master,
//! recovery without a restart, the limit overrun by no more than what was
//! in flight at the kill) and prints the difference between uses counted
//! and requests forwarded.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Use limit of the limited token: reached after the failover, so the
/// counter the promoted replica holds decides where the token stops.
const LIMIT: u64 = 400;
/// Client threads spending the limited token; each has at most one request
/// in flight, which bounds what the kill can leave uncertain.
const LIMITED_CLIENTS: usize = 4;
/// Pause between a client's requests: about 150 requests a second in all,
/// enough to catch the window in fine steps, few enough that the limit is
/// still far off when the master dies.
const PACE: Duration = Duration::from_millis(20);
/// The kill comes once this many uses of the limited token were answered.
const USES_BEFORE_KILL: u64 = LIMIT / 3;
/// Longest the load runs, failover included.
const LOAD_BUDGET: Duration = Duration::from_secs(20);
/// Generous bound on promotion after the kill (typically 2-3 node timeouts).
const FAILOVER_BUDGET: Duration = Duration::from_secs(30);
const NODE_TIMEOUT_MS: u64 = 1500;
/// Header on every request this test sends, to tell its requests apart at
/// the upstream from any other test's (see tests/cross_gateway.rs).
const MARKER: &str = "x-test-marker";
const UNAVAILABLE: &str = "token store unavailable";
const EXHAUSTED: &str = "token usage limit reached";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Limited,
    Unlimited,
}

/// One request as the client saw it; times are from the start of the load.
#[derive(Debug, Clone)]
struct Answer {
    which: Which,
    sent: Duration,
    done: Duration,
    /// 0 when no HTTP answer came (refused, reset, client timeout).
    status: u16,
    message: String,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// What the load threads share with the thread that kills.
struct Load {
    start: Instant,
    stop: AtomicBool,
    limited_ok: AtomicU64,
    answers: Mutex<Vec<Answer>>,
}

#[test]
fn a_killed_master_gives_503_until_its_replica_is_promoted_then_service_resumes() {
    let test_start = Instant::now();
    let mut cluster = RedisCluster::start_with_replicas(NODE_TIMEOUT_MS);
    let upstream = Upstream::echo();
    // Short store timeouts, as in tests/redis_outage.rs, so a request for a
    // dead master's slot is answered within a couple of seconds. All six
    // nodes are seeds: the client must find the promoted replica by itself.
    let mut gw = Gateway::start(
        GatewayConfig::redis_cluster(&cluster.urls())
            .redis_timeouts(300, 500, 1)
            .upstream(&upstream.url()),
    );
    let gateway_pid = gw.pid();
    let admin = gw.admin();
    let cache_on = redis_cache_on();

    // Token Auth's limit is copied into a token when it is issued, so one
    // identity (one slot) holds a limited and an unlimited token.
    let identity = admin.create_identity(&unique("failover"), "member");
    admin.attach_token_auth(&identity, json!({"accessTokenNumUsesLimit": LIMIT}));
    let limited = admin.create_token(&identity, &unique("limited"));
    admin.update_token_auth(&identity, json!({"accessTokenNumUsesLimit": 0}));
    let unlimited = admin.create_token(&identity, &unique("unlimited"));

    // src/store/redis/keys.rs: every key of an identity carries the hash tag
    // {IID}, IID being its id as 32 lowercase hex digits.
    let tag = identity.replace('-', "").to_ascii_lowercase();
    let slot = cluster.keyslot(&format!("tg:{{{tag}}}:t"));
    let victim = cluster.master_of_slot(slot);
    let replicas = cluster.replicas_of(victim);
    assert_eq!(
        replicas.len(),
        1,
        "master {victim} has replicas {replicas:?}"
    );
    assert!(
        cluster.wait_replicated(Duration::from_secs(10)),
        "the replica did not catch up with the identity's records"
    );

    let marker = unique("failover");
    let url = format!("{}/v1/things", gw.url());
    let load = Load {
        start: Instant::now(),
        stop: AtomicBool::new(false),
        limited_ok: AtomicU64::new(0),
        answers: Mutex::new(Vec::new()),
    };
    let mut kill_at = Duration::ZERO;
    let mut failover = Duration::ZERO;
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..=LIMITED_CLIENTS)
            .map(|client| {
                let (which, token) = if client < LIMITED_CLIENTS {
                    (Which::Limited, limited.access_token.as_str())
                } else {
                    (Which::Unlimited, unlimited.access_token.as_str())
                };
                let (load, url, marker) = (&load, url.as_str(), marker.as_str());
                s.spawn(move || run_client(load, which, token, url, marker))
            })
            .collect();

        let enough = poll_until(Duration::from_secs(10), || {
            load.limited_ok.load(Ordering::SeqCst) >= USES_BEFORE_KILL
        });
        if enough {
            kill_at = load.start.elapsed();
            cluster.kill9(victim);
            match cluster.wait_serving(FAILOVER_BUDGET) {
                Ok(took) => failover = took,
                Err(why) => {
                    load.stop.store(true, Ordering::SeqCst);
                    panic!("no replica took over within {FAILOVER_BUDGET:?}: {why}");
                }
            }
            // The limited clients stop by themselves once the limit refuses them.
            poll_until(LOAD_BUDGET.saturating_sub(load.start.elapsed()), || {
                clients[..LIMITED_CLIENTS].iter().all(|c| c.is_finished())
            });
        }
        load.stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().expect("load client panicked");
        }
        assert!(
            enough,
            "the limited token had fewer than {USES_BEFORE_KILL} successes in 10 s before the kill"
        );
    });
    let load_time = load.start.elapsed();
    let mut answers = load.answers.into_inner().unwrap();
    answers.sort_by_key(|a| a.done);

    // The window: from the first 503 to the first 2xx of a request sent
    // after that 503 was seen (one sent before may have been counted on the
    // dead master just in time and still be on its way back).
    let first_fail = answers.iter().find(|a| a.status == 503).map(|a| a.done);
    let recovered = first_fail.and_then(|f| answers.iter().find(|a| a.ok() && a.sent >= f));
    let recovered = recovered.map(|a| a.done);
    let in_window: Vec<u16> = answers
        .iter()
        .filter(|a| first_fail.is_some_and(|f| a.done >= f))
        .filter(|a| recovered.is_none_or(|r| a.done < r))
        .map(|a| a.status)
        .collect();
    let slowest = |status: Option<u16>| {
        let took = answers
            .iter()
            .filter(|a| status.is_none_or(|s| a.status == s))
            .map(|a| a.done - a.sent)
            .max();
        took.map_or("-".to_string(), |d| ms(d).to_string())
    };

    // Per token: the 2xx the clients saw, what the upstream saw, what the
    // counter says. The unlimited token's uses may sit in the near cache for
    // up to a second before they are written, hence the wait.
    let seen = |which: Which| {
        answers
            .iter()
            .filter(|a| a.which == which && a.ok())
            .count() as u64
    };
    let forwarded = |token_id: &str| {
        upstream
            .requests()
            .iter()
            .filter(|r| r.header(MARKER) == Some(marker.as_str()))
            .filter(|r| r.header("x-tokengate-token-id") == Some(token_id))
            .count() as u64
    };
    let (limited_seen, unlimited_seen) = (seen(Which::Limited), seen(Which::Unlimited));
    let limited_forwarded = forwarded(&limited.token_id);
    let unlimited_forwarded = forwarded(&unlimited.token_id);
    let limited_uses = uses(&admin, &limited.token_id);
    let mut unlimited_uses = None;
    poll_until(Duration::from_secs(5), || {
        unlimited_uses = uses(&admin, &unlimited.token_id);
        unlimited_uses == Some(unlimited_forwarded)
    });
    let diff = |forwarded: u64, uses: Option<u64>| uses.map(|u| forwarded as i64 - u as i64);
    let limited_diff = diff(limited_forwarded, limited_uses);
    let unlimited_diff = diff(unlimited_forwarded, unlimited_uses);
    let exhausted = answers
        .iter()
        .filter(|a| a.which == Which::Limited && a.status == 401)
        .count();
    let after_kill = |t: Option<Duration>| {
        t.map_or("-".into(), |t| {
            format!("kill+{}", ms(t.saturating_sub(kill_at)))
        })
    };
    let opt = |v: Option<i64>| v.map_or("-".into(), |v| v.to_string());

    println!(
        "cluster failover (near cache {}): kill at {} ms; cluster serving again {} ms after the kill; \
         client window {} ms (first 503 at {} ms, first 2xx after it at {} ms), statuses in it {}; \
         slowest 503 {} ms, slowest answer {} ms; \
         limited token: {} 2xx seen, {} forwarded, {} uses counted (forwarded - uses = {}), {} refused at the limit; \
         unlimited token: {} 2xx seen, {} forwarded, {} uses counted (forwarded - uses = {}); \
         load {} ms, test {} ms",
        if cache_on { "on" } else { "off" },
        ms(kill_at),
        ms(failover),
        first_fail.zip(recovered).map_or("-".into(), |(f, r)| ms(r - f).to_string()),
        after_kill(first_fail),
        after_kill(recovered),
        status_counts(&in_window),
        slowest(Some(503)),
        slowest(None),
        limited_seen,
        limited_forwarded,
        opt(limited_uses.map(|u| u as i64)),
        opt(limited_diff),
        exhausted,
        unlimited_seen,
        unlimited_forwarded,
        opt(unlimited_uses.map(|u| u as i64)),
        opt(unlimited_diff),
        ms(load_time),
        ms(test_start.elapsed()),
    );

    let broken: Vec<&Answer> = answers
        .iter()
        .filter(|a| match (a.which, a.status) {
            (_, 200) => false,
            (_, 503) => a.message != UNAVAILABLE,
            (Which::Limited, 401) => a.message != EXHAUSTED,
            _ => true,
        })
        .collect();
    assert!(
        broken.is_empty(),
        "answers other than 200, 503 \"{UNAVAILABLE}\" and (limited token) 401 \"{EXHAUSTED}\": {broken:#?}"
    );
    assert!(
        !answers.iter().any(|a| a.status == 503 && a.done < kill_at),
        "a 503 before the master was killed"
    );
    let first_fail =
        first_fail.unwrap_or_else(|| panic!("no request failed: did the kill hit slot {slot}?"));
    let recovered = recovered.unwrap_or_else(|| {
        // Whether the gateway recovers once the load is gone tells a slow
        // recovery from one the load itself keeps from happening.
        let quiet = Instant::now();
        let later = poll_until(Duration::from_secs(20), || {
            get_with_token(&url, &unlimited.access_token).status == 200
        });
        panic!(
            "no request succeeded between the first 503 at {first_fail:?} and the end of the load \
             at {load_time:?} (the cluster was serving again {failover:?} after the kill at \
             {kill_at:?}); with the load stopped, {}; cluster now: {:?}; last answers: {:#?}",
            if later {
                format!("a request succeeded {:?} later", quiet.elapsed())
            } else {
                "none succeeded within 20 s".to_string()
            },
            cluster.serving(),
            &answers[answers.len().saturating_sub(4)..]
        )
    });
    let late: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == 503 && a.sent >= recovered)
        .collect();
    assert!(
        late.is_empty(),
        "503s sent after service had resumed at {recovered:?}: {late:#?}"
    );
    let (Some(limited_uses), Some(unlimited_uses), Some(limited_diff), Some(unlimited_diff)) =
        (limited_uses, unlimited_uses, limited_diff, unlimited_diff)
    else {
        panic!("the management API did not answer the tokens' use counts after the failover");
    };

    // No 2xx that the upstream did not get, and nothing forwarded that was
    // not answered 2xx: a 503 never reached the upstream.
    assert_eq!(
        limited_seen, limited_forwarded,
        "limited token: 2xx seen vs forwarded"
    );
    assert_eq!(
        unlimited_seen, unlimited_forwarded,
        "unlimited token: 2xx seen vs forwarded"
    );
    assert!(
        exhausted > 0,
        "the limited token never reached its limit of {LIMIT} within {LOAD_BUDGET:?} \
         ({limited_forwarded} forwarded, {limited_uses} counted)"
    );
    // The script checks the limit before it counts, on whichever node serves
    // the slot, so the counter stops exactly at the limit.
    assert_eq!(limited_uses, LIMIT, "the counter of an exhausted token");
    // forwarded - uses is where the failover shows. A use counted by the
    // dead master after the last bytes its replica received is lost (the
    // token gets one more request than its limit); a script that ran but
    // whose reply died with the master is counted without being forwarded,
    // or, when the check is sent again to the successor, counted there a
    // second time unless the successor remembers the first attempt.
    // Each needs a request in flight when the master died, and every client
    // has at most one: so at most LIMITED_CLIENTS either way, and the
    // upstream never sees more than LIMIT + LIMITED_CLIENTS.
    assert!(
        limited_diff.unsigned_abs() <= LIMITED_CLIENTS as u64,
        "limited token: forwarded {limited_forwarded} vs counted {limited_uses} differ by more \
         than the {LIMITED_CLIENTS} requests that can have been in flight at the kill"
    );
    // The unlimited token's uses are written by the gateway: with the near
    // cache on, in batches once a second (uses.rs), and a batch is lost or
    // written twice as a whole when the kill catches it; without the cache,
    // one by one like the limited token's. So the bound is what its one
    // client sent in the two seconds before the kill (the batch in flight
    // and the one being gathered), or one request.
    let unlimited_bound = if cache_on {
        answers
            .iter()
            .filter(|a| a.which == Which::Unlimited && a.ok())
            .filter(|a| a.done <= kill_at && a.done + Duration::from_secs(2) >= kill_at)
            .count() as u64
            + 1
    } else {
        1
    };
    assert!(
        unlimited_diff.unsigned_abs() <= unlimited_bound,
        "unlimited token: forwarded {unlimited_forwarded} vs counted {unlimited_uses} differ by \
         more than {unlimited_bound}"
    );

    // The same process served before and after: nothing was restarted.
    assert_eq!(gw.pid(), gateway_pid);
    assert!(gw.is_running(), "the gateway died");
    get_with_token(&url, &unlimited.access_token).expect_status(200);
    assert_eq!(
        get_with_token(&url, &limited.access_token).expect_error(401),
        EXHAUSTED
    );
    if cache_on {
        // The invalidation channel follows the new set of masters by itself.
        let coherent = poll_until(Duration::from_secs(15), || {
            gw.metric("tokengate_store_cache_coherent") == Some(1.0)
        });
        assert!(
            coherent,
            "the near cache did not come back after the failover"
        );
    }
    assert!(!gw.log().contains(&limited.access_token));
}

/// The token's use count through the management API, or None when it
/// does not answer 2xx.
fn uses(admin: &Admin, token_id: &str) -> Option<u64> {
    let resp = admin.call(
        "GET",
        &format!("/api/v1/auth/token-auth/tokens/{token_id}"),
        None,
    );
    if resp.status != 200 {
        return None;
    }
    resp.json()["token"]["accessTokenNumUses"].as_u64()
}

/// One client: a keep-alive connection, one request at a time, until told
/// to stop; a limited-token client stops by itself at its first refusal for
/// the limit.
fn run_client(load: &Load, which: Which, token: &str, url: &str, marker: &str) {
    let session = Session::new();
    let auth = format!("Bearer {token}");
    let deadline = load.start + LOAD_BUDGET;
    while !load.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let sent = load.start.elapsed();
        let result = session.try_http(
            "GET",
            url,
            &[("Authorization", &auth), (MARKER, marker)],
            None,
        );
        let done = load.start.elapsed();
        let (status, message) = match result {
            Ok(resp) => {
                let message = serde_json::from_str::<serde_json::Value>(&resp.body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_string))
                    .unwrap_or_default();
                (resp.status, message)
            }
            Err(e) => (0, e),
        };
        if which == Which::Limited && status == 200 {
            load.limited_ok.fetch_add(1, Ordering::SeqCst);
        }
        let refused = status == 401;
        load.answers.lock().unwrap().push(Answer {
            which,
            sent,
            done,
            status,
            message,
        });
        if which == Which::Limited && refused {
            return;
        }
        std::thread::sleep(PACE);
    }
}

/// "503 x12, 200 x1" style summary, in order of first appearance.
fn status_counts(statuses: &[u16]) -> String {
    let mut counts: Vec<(u16, usize)> = Vec::new();
    for s in statuses {
        match counts.iter_mut().find(|(k, _)| k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((*s, 1)),
        }
    }
    counts
        .iter()
        .map(|(s, n)| format!("{s} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
