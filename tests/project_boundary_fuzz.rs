//! Project-boundary fuzz (issue 6): seeded, mutated requests from an identity that is a member of `p1` only, sent through the real gateway to an upstream that reads requests as leniently as permissive frameworks do.
//!
//! The proof does not depend on how the gateway parses anything. For every
//! request, either the gateway refused it (a 4xx of its own, nothing
//! forwarded), or every project the lenient upstream could read in what it
//! received is the project the gateway verified and injected, and the
//! injected header is that one verified value. A floor keeps the test from
//! passing by refusing everything: each base request is forwarded with `p1`
//! injected, and most benign variants are too.
//!
//! Knobs: `TOKENGATE_FUZZ_SEED` (decimal or 0x-hex), `TOKENGATE_FUZZ_CASES`,
//! `TOKENGATE_FUZZ_SECONDS` (wall-time budget of the loop), `TOKENGATE_FUZZ_SHOW`
//! (offending requests printed, default 20).

mod common;
#[path = "project_boundary_fuzz/fields.rs"]
mod fields;
#[path = "project_boundary_fuzz/probe.rs"]
mod probe;
#[path = "project_boundary_fuzz/request.rs"]
mod request;
#[path = "project_boundary_fuzz/targets.rs"]
mod targets;

use common::lenient::{self, Lenient, Seen};
use common::net::bearer;
use common::*;
use request::{Ctx, Mutate, Rng, BENIGN, OTHER, P1};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const SEED: u64 = 0x6b0a_de7e_5eed_0006;
const CASES: usize = 3000;
const BUDGET: Duration = Duration::from_secs(35);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Offending requests printed (truncated), at most, unless overridden.
const SHOW: usize = 20;
/// Share of attack cases that name `p1` instead of `p-other`: they check that
/// a project the upstream reads is also one the gateway verified.
const SAME_PROJECT_PERCENT: u64 = 20;

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// What came back on the client side.
struct Reply {
    /// None when the connection ended without a status line.
    status: Option<u16>,
    /// The answer carries the lenient upstream's marker header.
    from_upstream: bool,
}

/// One request on a fresh connection; every socket operation is bounded.
fn send(addr: SocketAddr, raw: &[u8]) -> Reply {
    let none = Reply {
        status: None,
        from_upstream: false,
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, IO_TIMEOUT) else {
        return none;
    };
    if stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return none;
    }
    // A gateway that refuses early may close before reading everything; its
    // answer is still read below.
    let _ = stream.write_all(raw);
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline && buf.len() < 1 << 20 {
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| buf.len() >= head_end + 4 + n) {
                break;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    Reply {
        status: head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok()),
        from_upstream: head
            .lines()
            .any(|l| l.starts_with(&format!("{}:", lenient::MARKER))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A 4xx from the gateway, nothing forwarded.
    Refused,
    /// Nothing forwarded and no 4xx (a 5xx or a closed connection): fail
    /// closed, so not a leak, but counted apart.
    Closed,
    /// Forwarded, and the upstream reads no project but the injected one.
    Forwarded {
        with_p1: bool,
    },
    Violation(&'static str),
}

fn judge(reply: &Reply, seen: &[Seen]) -> Verdict {
    if seen.is_empty() {
        return match reply.status {
            Some(s) if (400..500).contains(&s) && !reply.from_upstream => Verdict::Refused,
            Some(s) if s < 400 => Verdict::Violation("answered 2xx/3xx without forwarding"),
            _ => Verdict::Closed,
        };
    }
    let mut with_p1 = true;
    for s in seen {
        if !s.complete {
            return Verdict::Violation("upstream could not read the forwarded request");
        }
        let injected: BTreeSet<String> = s.injected.iter().cloned().collect();
        if s.injected.len() > 1 || injected.iter().any(|p| p != P1) {
            return Verdict::Violation("injected project header is not the one verified project");
        }
        if !s.claimed.is_subset(&injected) {
            return Verdict::Violation(if s.claimed.iter().any(|p| p != P1) {
                "upstream reads a project the gateway did not verify"
            } else {
                "upstream reads p1 but no project was injected"
            });
        }
        with_p1 &= injected.contains(P1);
    }
    Verdict::Forwarded { with_p1 }
}

#[derive(Default)]
struct Tally {
    sent: usize,
    refused: usize,
    closed: usize,
    forwarded: usize,
    forwarded_p1: usize,
    violations: usize,
    /// Violations among the cases that named p-other.
    foreign: usize,
}

struct Offence {
    class: &'static str,
    base: &'static str,
    why: &'static str,
    status: Option<u16>,
    seen: Vec<Seen>,
    raw: Vec<u8>,
}

/// Printable bytes with the token redacted, cut to `max` characters.
fn show(raw: &[u8], token: &str, max: usize) -> String {
    let text: String = raw
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    let text = text.replace(token, "<token>");
    if text.len() > max {
        format!("{}...", &text[..max])
    } else {
        text
    }
}

struct Harness {
    upstream: Lenient,
    gw: Gateway,
    addr: SocketAddr,
    authorization: String,
    token: String,
}

impl Harness {
    fn start() -> Harness {
        let upstream = Lenient::start();
        let gw = Gateway::start(
            // The default project sources and routes of config/tokengate.yaml
            // (the harness writes the sources out), as an operator runs them.
            GatewayConfig::embedded_temp().upstream(&upstream.url()),
        );
        let admin = gw.admin();
        let (identity, token) = admin.identity_with_token("member", json!({}));
        admin.add_membership(P1, &identity, json!({"role": "viewer"}));
        let addr = gw.addr().parse().expect("gateway socket address");
        Harness {
            upstream,
            addr,
            authorization: bearer(&token.access_token),
            token: token.access_token,
            gw,
        }
    }

    fn run(&self, raw: &[u8]) -> (Reply, Vec<Seen>) {
        let before = self.upstream.count();
        let reply = send(self.addr, raw);
        (reply, self.upstream.since(before))
    }
}

#[test]
fn no_request_reaches_the_upstream_naming_an_unverified_project() {
    let started = Instant::now();
    let h = Harness::start();
    let seed = env_number("TOKENGATE_FUZZ_SEED").unwrap_or(SEED);
    let cases = env_number("TOKENGATE_FUZZ_CASES").map_or(CASES, |n| n as usize);
    let budget = env_number("TOKENGATE_FUZZ_SECONDS").map_or(BUDGET, Duration::from_secs);
    let show_max = env_number("TOKENGATE_FUZZ_SHOW").map_or(SHOW, |n| n as usize);
    let mut rng = Rng::new(seed);
    let host = h.gw.addr();
    let upstream_authority = h.upstream.authority();
    let bases = request::bases();

    // Floor: every base request as is is forwarded with p1 verified and injected.
    for (name, draft) in &bases {
        let raw = draft.to_bytes(&mut rng, &host, &h.authorization);
        let (reply, seen) = h.run(&raw);
        let ok = reply.status == Some(200)
            && seen.len() == 1
            && seen[0].injected == [P1]
            && seen[0].claimed == BTreeSet::from([P1.to_string()]);
        assert!(
            ok,
            "base request {name} must be forwarded with {P1} injected; status {:?}, upstream saw {seen:?}\n{}",
            reply.status,
            show(&raw, &h.token, 400)
        );
    }

    let classes: Vec<(&'static str, Mutate, bool)> = BENIGN
        .iter()
        .map(|&(n, f)| (n, f, true))
        .chain(
            targets::CLASSES
                .iter()
                .chain(fields::CLASSES)
                .chain(probe::CLASSES)
                .map(|&(n, f)| (n, f, false)),
        )
        .collect();
    let mut tallies: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut chunked = Tally::default();
    let mut offences: Vec<Offence> = Vec::new();
    let mut order: Vec<usize> = Vec::new();
    let deadline = Instant::now() + budget;
    let mut done = 0;
    while done < cases && Instant::now() < deadline {
        // Every class gets its turn each round, in a shuffled order.
        if order.is_empty() {
            order = (0..classes.len()).collect();
            rng.shuffle(&mut order);
        }
        let (class, mutate, benign) = classes[order.pop().expect("non-empty order")];
        let (base, mut draft) = rng.pick(&bases);
        let v = if benign || rng.chance(SAME_PROJECT_PERCENT) {
            P1
        } else {
            OTHER
        };
        let ctx = Ctx {
            v,
            gateway: &host,
            upstream: &upstream_authority,
        };
        mutate(&mut rng, &mut draft, &ctx);
        if !benign && draft.body_bytes().is_some() && rng.chance(30) {
            draft.chunked = true;
        }
        let raw = draft.to_bytes(&mut rng, &host, &h.authorization);
        let (reply, seen) = h.run(&raw);
        let verdict = judge(&reply, &seen);
        done += 1;

        let count = |t: &mut Tally| {
            t.sent += 1;
            match verdict {
                Verdict::Refused => t.refused += 1,
                Verdict::Closed => t.closed += 1,
                Verdict::Forwarded { with_p1 } => {
                    t.forwarded += 1;
                    t.forwarded_p1 += usize::from(with_p1);
                }
                Verdict::Violation(_) => {
                    t.violations += 1;
                    t.foreign += usize::from(v == OTHER);
                }
            }
        };
        count(tallies.entry(class).or_default());
        if draft.chunked {
            count(&mut chunked);
        }
        if let Verdict::Violation(why) = verdict {
            offences.push(Offence {
                class,
                base,
                why,
                status: reply.status,
                seen,
                raw,
            });
        }
    }
    let elapsed = started.elapsed();

    let mut report = format!(
        "project boundary fuzz: seed {seed:#x}, {done} of {cases} cases in {:.1}s\n\
         {:<28} {:>5} {:>7} {:>6} {:>9} {:>6} {:>10}\n",
        elapsed.as_secs_f64(),
        "class",
        "sent",
        "refused",
        "closed",
        "fwd(p1)",
        "VIOL",
        "p-other"
    );
    let row = |name: &str, t: &Tally| {
        format!(
            "{name:<28} {:>5} {:>7} {:>6} {:>5}({:>2}) {:>6} {:>10}\n",
            t.sent, t.refused, t.closed, t.forwarded, t.forwarded_p1, t.violations, t.foreign
        )
    };
    for (name, t) in &tallies {
        report.push_str(&row(name, t));
    }
    report.push_str(&row("(any class, chunked body)", &chunked));
    eprintln!("{report}");

    if !offences.is_empty() {
        // One offence per class first, so the list shows the variety.
        let mut shown: Vec<&Offence> = Vec::new();
        let mut classes_shown = BTreeSet::new();
        for o in &offences {
            if shown.len() < show_max && classes_shown.insert(o.class) {
                shown.push(o);
            }
        }
        for o in &offences {
            if shown.len() < show_max && !shown.iter().any(|s| std::ptr::eq(*s, o)) {
                shown.push(o);
            }
        }
        let mut list = String::new();
        for o in shown {
            let upstream: Vec<String> = o
                .seen
                .iter()
                .map(|s| format!("claimed {:?} injected {:?}", s.claimed, s.injected))
                .collect();
            list.push_str(&format!(
                "- [{}] on {}: {} (status {:?}; {})\n    {}\n",
                o.class,
                o.base,
                o.why,
                o.status,
                upstream.join("; "),
                show(&o.raw, &h.token, 300)
            ));
        }
        let leaking: Vec<String> = tallies
            .iter()
            .filter(|(_, t)| t.violations > 0)
            .map(|(n, t)| format!("{n} {}/{}", t.violations, t.sent))
            .collect();
        panic!(
            "{} of {done} requests crossed the project boundary (table above).\n\
             classes with violations: {}\nfirst {}:\n{list}",
            offences.len(),
            leaking.join(", "),
            show_max.min(offences.len())
        );
    }

    // Floor: refusing everything does not pass.
    let benign: Vec<&Tally> = BENIGN.iter().filter_map(|(n, _)| tallies.get(n)).collect();
    let benign_sent: usize = benign.iter().map(|t| t.sent).sum();
    let benign_p1: usize = benign.iter().map(|t| t.forwarded_p1).sum();
    assert!(
        benign_sent >= 20 && benign_p1 * 4 >= benign_sent * 3,
        "only {benign_p1} of {benign_sent} benign variants were forwarded with {P1} injected"
    );
}

/// The oracle itself: the lenient reading finds the tricks of issue 6, and
/// plain requests name only what they say.
#[test]
fn lenient_reader_finds_the_issue_6_spellings() {
    let claims = |target: &str, headers: &[(&str, &str)], body: &str| {
        let headers: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        lenient::claims(target, &headers, body.as_bytes())
    };
    let other = BTreeSet::from([OTHER.to_string()]);
    let both = BTreeSet::from([OTHER.to_string(), P1.to_string()]);
    let none = BTreeSet::new();
    for target in [
        "xyz:/api/v1/projects/p-other/secrets",
        "api/v1/projects/p-other/secrets",
        "http://evil.example/api/v1/projects/p-other",
        "/API/v1/projects/p-other/x",
        "/api/v1/Projects/p-other",
        "/api/v9/workspaces/p-other",
        "/api/v1/workspace/p-other/x",
        "/api/v1/projects/p1/..;/p-other/secrets",
        "/api/v1/projects/p1/%2e%2e/p-other",
        "/api/v1/projects/p1/%c0%ae%c0%ae/p-other",
        "/api/v1/projects/p1/%ef%bc%8e%ef%bc%8e/p-other",
        "/api/v1/projects%2fp-other",
        "/api\\v1\\projects\\p-other",
        "/api//v1/projects/p-other",
        "*?workspaceId=p-other",
        "/x?a=1;WorkspaceId=p-other",
        "/x?workspace_id=p-other",
        "/x?workspaceId[]=p-other",
        "/x?workspaceId[0]=p-other",
        "/x?workspaceId.=p-other",
        "/x?workspaceId%00=p-other",
        "/x?filter[projectId]=p-other",
        "/x?%77orkspaceId=p-other",
    ] {
        let found = claims(target, &[], "");
        assert!(
            found.contains(OTHER) && found.is_subset(&both),
            "{target}: {found:?}"
        );
    }
    assert_eq!(claims("/x", &[("x_project_id", "p-other")], ""), other);
    assert!(claims("/x", &[("X-Project-Id", "p1, p-other")], "").is_superset(&both));
    assert_eq!(
        claims("/x", &[("x-tokengate-project-id", "p-other")], ""),
        none
    );
    for body in [
        r#"{"WorkspaceId":"p-other"}"#,
        r#"{"data":{"workspaceId":"p-other"}}"#,
        r#"[{"project_id":"p-other"}]"#,
        r#"{"workspace\u0049d":"p-other"}"#,
        "workspaceId=p-other&environment=dev",
        "--B\r\nContent-Disposition: form-data; name=\"workspaceId\"\r\n\r\np-other\r\n--B--\r\n",
    ] {
        assert_eq!(claims("/x", &[], body), other, "{body}");
    }
    assert_eq!(
        claims("/x", &[], r#"{"workspaceId":"p-other","workspaceId":"p1"}"#),
        both
    );
    let p1 = BTreeSet::from([P1.to_string()]);
    assert_eq!(
        claims(
            "/api/v3/secrets/raw?workspaceId=p1&environment=dev",
            &[],
            ""
        ),
        p1
    );
    assert_eq!(claims("/api/v1/projects/p1/secrets", &[], ""), p1);
    assert_eq!(
        claims(
            "/api/v3/secrets/raw/NAME",
            &[("content-type", "application/json")],
            r#"{"workspaceId":"p1","secretValue":"workspaceId=x"}"#
        ),
        p1
    );
    assert_eq!(claims("/api/v1/things", &[("accept", "*/*")], ""), none);

    // What the hostile probe found: each is read as naming p-other.
    let bytes = |target: &str, headers: &[(&str, &str)], body: &[u8]| {
        let headers: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        lenient::claims(target, &headers, body)
    };
    let json = r#"{"workspaceId":"p-other"}"#;
    let utf16le: Vec<u8> = json.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let utf16be: Vec<u8> = [
        &[0xfe, 0xff][..],
        &json
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect::<Vec<_>>(),
    ]
    .concat();
    let utf32le: Vec<u8> = json
        .chars()
        .flat_map(|c| (c as u32).to_le_bytes())
        .collect();
    let utf32be: Vec<u8> = json
        .chars()
        .flat_map(|c| (c as u32).to_be_bytes())
        .collect();
    for body in [utf16le, utf16be, utf32le, utf32be] {
        assert_eq!(bytes("/x", &[], &body), other, "{body:?}");
    }
    let part = |boundary: &str, disposition: &str, extra: &str, content: &str| {
        format!("preamble\r\n--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n{extra}\r\n{content}\r\n--{boundary}--\r\n")
    };
    for (ct, boundary) in [
        ("multipart/form-data; boundary=abc xyz", "abc"),
        ("multipart/form-data; boundary=abc, boundary=xyz", "abc"),
        ("multipart/form-data; boundary=abc, boundary=xyz", "xyz"),
        ("multipart/form-data; boundary=a\"bc", "a"),
        ("multipart/form-data; boundary=a\"bc", "abc"),
        (
            "multipart/form-data; boundary=xyz; boundary*=utf-8''abc",
            "abc",
        ),
    ] {
        let body = part(boundary, "name=\"workspaceId\"", "", "p-other");
        assert_eq!(claims("/x", &[("Content-Type", ct)], &body), other, "{ct}");
    }
    let ct = [("Content-Type", "multipart/form-data; boundary=abc")];
    for name in [
        "name=workspaceId x",
        "name=workspaceId\tx",
        "name=\"projectId\" x",
    ] {
        assert_eq!(
            claims("/x", &ct, &part("abc", name, "", "p-other")),
            other,
            "{name}"
        );
    }
    for (extra, content) in [
        (
            "Content-Type: application/json\r\n",
            r#"{"y":NaN,"workspaceId":"p-other"}"#,
        ),
        ("", r#"{"y":1e999999,"workspaceId":"p-other"}"#),
        ("", r#"[Infinity,{"project":{"id":"p-other"}}]"#),
    ] {
        let body = part("abc", "name=\"meta\"; filename=\"m.json\"", extra, content);
        assert_eq!(claims("/x", &ct, &body), other, "{content}");
    }
    for cookie in [
        "a=b, workspaceId=p-other",
        "a=b workspaceId=p-other",
        "a=b\tProject_Id=p-other",
    ] {
        assert_eq!(claims("/x", &[("Cookie", cookie)], ""), other, "{cookie}");
    }
    assert!(claims("/x", &[("Cookie", "workspaceId=\"p-other\"")], "").contains(OTHER));
    for body in [
        r#"{"workspace":{"id":"p-other"}}"#,
        r#"{"x":{"project":{"Id":"p-other"}}}"#,
        r#"{"project":[{"Id":"p-other"}]}"#,
        r#"[{"workspace":{"a":1,"ID":"p-other"}}]"#,
    ] {
        assert_eq!(claims("/x", &[], body), other, "{body}");
    }
    assert_eq!(
        claims("/x", &[], r#"{"workspace":{"name":"p-other"},"id":"p1"}"#),
        none
    );
    for name in [
        "X-Original-URL",
        "X-Rewrite-URL",
        "x-original-uri",
        "X-Forwarded-Uri",
        "X_Forwarded_Path",
        "X-Envoy-Original-Path",
    ] {
        let found = claims(
            "/api/v1/things",
            &[(name, "/api/v1/projects/p-other/secrets")],
            "",
        );
        assert_eq!(found, other, "{name}");
    }
    assert_eq!(
        claims("/x", &[("X-Original-URL", "/x?workspaceId=p-other")], ""),
        other
    );
    for target in [
        "/api/v1/projects.json/p-other",
        "/api/v1/projects%20/p-other",
        "/api/v1/%20projects/p-other/secrets",
        "/api%E2%80%8B/v1/projects/p-other",
        "/api/v1/pro%E2%80%8Bjects/p-other",
        "/api/v1/projects%C2%AD/p-other",
        "/api/V2.xml/workspace/p-other",
    ] {
        assert_eq!(claims(target, &[], ""), other, "{target}");
    }
    assert!(claims("/api/v1/projects/p-other.json", &[], "").contains(OTHER));
    assert_eq!(
        lenient::injected(&[("X_TokenGate_Project_Id".into(), b"p-other".to_vec())]),
        [OTHER]
    );
}
