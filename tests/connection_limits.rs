//! What a client connection may hold on the real gateway: an idle keep-alive
//! connection is closed after `server.keepalive_timeout_seconds`, a client
//! that trickles its header is cut at `server.header_timeout_seconds` however
//! steadily it sends, connections past `server.max_connections` get a 503,
//! and ordinary keep-alive requests work throughout. Timeouts are set to a
//! second or two and every wait is a generous bounded poll.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A gateway with every path public in front of an echo upstream, and the
/// given extra `server` keys.
fn gateway(upstream: &Upstream, server_keys: &str) -> Gateway {
    let cfg = GatewayConfig::embedded_temp()
        .upstream(&upstream.url())
        .public_routes(&["/"]);
    let server = format!(
        "listen: [\"127.0.0.1:{}\"]\nthreads: 1\ngrace_period_seconds: 0\n{server_keys}",
        cfg.listen_port()
    );
    Gateway::start(cfg.section("server", &server))
}

fn connect(gw: &Gateway) -> TcpStream {
    let s = TcpStream::connect(gw.addr()).expect("connect to the gateway");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    s
}

/// Reads one Content-Length framed answer; returns its status and body.
fn read_answer(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("read an answer");
        assert!(n > 0, "connection closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head[9..12].parse().expect("status code");
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).expect("read an answer body");
        assert!(n > 0, "connection closed inside an answer body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    (status, body)
}

fn get_on(s: &mut TcpStream, path: &str) -> u16 {
    write!(s, "GET {path} HTTP/1.1\r\nHost: tokengate.test\r\n\r\n").expect("send a request");
    read_answer(s).0
}

/// True once the peer has closed: a read sees the end or a reset.
fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut one = [0u8; 1];
    match s.read(&mut one) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// Sends `byte` every 50 ms or so (every single read is quick, so only a
/// deadline on the whole header can end this), at most 200 times, far more
/// than a deadline of seconds takes; true once the gateway has closed.
fn trickle_until_closed(s: &mut TcpStream, byte: &[u8]) -> bool {
    for _ in 0..200 {
        if s.write_all(byte).is_err() || closed_by_peer(s) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn keepalive_requests_work_and_an_idle_connection_is_closed() {
    let upstream = Upstream::echo();
    let gw = gateway(
        &upstream,
        "keepalive_timeout_seconds: 1\nheader_timeout_seconds: 30\n",
    );
    let mut s = connect(&gw);
    for i in 0..3 {
        assert_eq!(get_on(&mut s, &format!("/keepalive/{i}")), 200);
    }
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    eventually(Duration::from_secs(15), || closed_by_peer(&mut s));
    // A new connection is served as before.
    assert_eq!(get_on(&mut connect(&gw), "/after"), 200);
}

#[test]
fn a_client_trickling_its_header_is_cut_at_the_deadline() {
    let upstream = Upstream::echo();
    let gw = gateway(
        &upstream,
        "keepalive_timeout_seconds: 30\nheader_timeout_seconds: 2\n",
    );
    let mut s = connect(&gw);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: tokengate.test\r\n")
        .expect("start a header");
    let started = Instant::now();
    let closed = trickle_until_closed(&mut s, b"x");
    assert!(closed, "still open after {:?}", started.elapsed());
    assert_eq!(
        upstream.count(),
        0,
        "nothing of the slow request is forwarded"
    );
    assert_eq!(get_on(&mut connect(&gw), "/fine"), 200);
}

#[test]
fn the_deadline_also_holds_for_a_later_request_on_a_kept_alive_connection() {
    let upstream = Upstream::echo();
    let gw = gateway(
        &upstream,
        "keepalive_timeout_seconds: 30\nheader_timeout_seconds: 2\n",
    );
    let mut s = connect(&gw);
    assert_eq!(get_on(&mut s, "/first"), 200);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    s.write_all(b"GET /second HTTP/1.1\r\n")
        .expect("start a second header");
    let closed = trickle_until_closed(&mut s, b"y");
    assert!(closed, "the trickled second header was never cut");
    assert_eq!(upstream.count(), 1, "only the first request is forwarded");
}

#[test]
fn a_silent_connection_is_closed_at_the_header_deadline() {
    let upstream = Upstream::echo();
    let gw = gateway(
        &upstream,
        "keepalive_timeout_seconds: 30\nheader_timeout_seconds: 1\n",
    );
    let mut s = connect(&gw);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    eventually(Duration::from_secs(15), || closed_by_peer(&mut s));
}

#[test]
fn connections_past_the_limit_are_refused_with_503() {
    let upstream = Upstream::echo();
    let gw = gateway(&upstream, "max_connections: 2\n");
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(&gw)).collect();
    for s in &mut held {
        assert_eq!(get_on(s, "/held"), 200);
    }
    let mut extra = connect(&gw);
    let (status, body) = read_answer(&mut extra);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many open connections"), "{body}");
    assert!(body.contains("ServiceUnavailable"), "{body}");
    let metrics = get(&format!("{}/metrics", gw.admin_url())).body;
    assert!(
        metrics.contains("tokengate_connections_refused_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tokengate_open_connections 2"),
        "{metrics}"
    );
    // A freed slot is taken again.
    held.pop();
    eventually(Duration::from_secs(15), || {
        let mut s = connect(&gw);
        s.write_all(b"GET /again HTTP/1.1\r\nHost: tokengate.test\r\n\r\n")
            .is_ok()
            && read_answer(&mut s).0 == 200
    });
    assert_eq!(get_on(&mut held[0], "/still-held"), 200);
}

/// Found by a hostile probe: once a header is complete, a body trickled one
/// byte at a time held the connection for ever. A body the gateway reads
/// (here a management call's) must arrive within the header deadline too.
#[test]
fn a_client_trickling_its_body_is_cut_at_the_deadline() {
    let upstream = Upstream::echo();
    let gw = gateway(
        &upstream,
        "keepalive_timeout_seconds: 30\nheader_timeout_seconds: 2\n",
    );
    let mut s = connect(&gw);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    s.write_all(
        b"POST /api/v1/identities HTTP/1.1\r\nHost: tokengate.test\r\n\
          Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n",
    )
    .expect("send a header");
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    for _ in 0..200 {
        if s.write_all(b" ").is_err() {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {:?}: {answer:?}",
        started.elapsed()
    );
    assert!(answer.contains("request body timed out"), "{answer}");
}

/// An HTTP/1.0 request without `Connection: keep-alive` is answered and its
/// connection closed, not kept for the keep-alive timeout.
#[test]
fn an_http_1_0_connection_is_closed_after_its_answer() {
    let upstream = Upstream::echo();
    let gw = gateway(
        &upstream,
        "keepalive_timeout_seconds: 30\nheader_timeout_seconds: 30\n",
    );
    let mut s = connect(&gw);
    s.write_all(b"GET /old HTTP/1.0\r\nHost: tokengate.test\r\n\r\n")
        .expect("send a request");
    let (status, _) = read_answer(&mut s);
    assert_eq!(status, 200);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    eventually(Duration::from_secs(5), || closed_by_peer(&mut s));
}
