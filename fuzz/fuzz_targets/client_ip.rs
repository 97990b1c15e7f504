//! Fuzz target `client_ip`: the client address behind trusted proxies
//! (`proxy::client_ip::client_ip`) from arbitrary `X-Forwarded-For` values,
//! with trusted proxies as the configuration reads them
//! (`model::parse_trusted_ip`).
#![no_main]

// Each target uses part of the shared input helpers.
#[allow(dead_code)]
mod common;

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};
use tokengate::model::parse_trusted_ip;
use tokengate::proxy::client_ip::client_ip;

struct Input<'a> {
    peer: IpAddr,
    forwarded_for: Vec<&'a str>,
    /// Whatever a client writes at the left of the list.
    client_prefix: &'a str,
    /// An address a trusted proxy appends at the right, with a port maybe.
    appended: IpAddr,
    port: Option<u16>,
}

// Fields: peer address, trusted proxies (comma-separated, as in the config),
// what a client writes at the left, an address (or address:port) a trusted
// proxy appends, X-Forwarded-For header lines (the rest, one per line).
fuzz_target!(|data: &[u8]| {
    let mut f = common::Fields::new(data);
    let Ok(peer) = f.text().trim().parse::<IpAddr>() else {
        return;
    };
    let trusted: Vec<IpNet> = f
        .text()
        .split(',')
        .take(8)
        .filter_map(|s| parse_trusted_ip(s).ok())
        .collect();
    let client_prefix = f.text();
    let appended = f.text().trim();
    let (appended, port) = match (appended.parse::<IpAddr>(), appended.parse::<SocketAddr>()) {
        (Ok(ip), _) => (ip, None),
        (_, Ok(a)) => (a.ip(), Some(a.port())),
        _ => (IpAddr::from([192, 0, 2, 1]), None),
    };
    let forwarded_for: Vec<&str> = f.rest_text().split('\n').take(8).collect();
    let input = Input {
        peer,
        forwarded_for,
        client_prefix,
        appended,
        port,
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let headers = &input.forwarded_for;
    let peer = input.peer.to_canonical();
    let got = client_ip(input.peer, headers.iter().copied(), &trusted);

    // Addresses are compared canonical everywhere (an IPv4-mapped peer is
    // its IPv4 address), or an allowlist written in IPv4 would miss it.
    assert_eq!(got, got.to_canonical());
    if !is_trusted(&peer) {
        assert_eq!(got, peer, "an untrusted peer's header was believed");
    }
    // The answer is the peer or an address someone wrote in the header.
    if got != peer {
        assert!(
            headers
                .iter()
                .flat_map(|h| h.split(','))
                .filter_map(entry)
                .any(|ip| ip == got),
            "{got} is neither the peer nor in the header"
        );
    }
    if !is_trusted(&got) {
        // Found by walking from the right: whatever the client wrote further
        // left cannot change it.
        let mut more = vec![input.client_prefix];
        more.extend(headers.iter().copied());
        assert_eq!(client_ip(input.peer, more.into_iter(), &trusted), got);
    }
    // Empty entries and empty header lines name nobody.
    let mut padded: Vec<&str> = headers.clone();
    padded.push(" , ,");
    padded.push("");
    assert_eq!(client_ip(input.peer, padded.into_iter(), &trusted), got);

    // A trusted proxy that appends the address it saw makes that the client,
    // as long as that address is not itself a trusted proxy.
    let appended = input.appended.to_canonical();
    if is_trusted(&peer) && !is_trusted(&appended) {
        let written = match input.port {
            None => input.appended.to_string(),
            Some(p) => SocketAddr::new(input.appended, p).to_string(),
        };
        let mut more: Vec<&str> = headers.clone();
        more.push(&written);
        assert_eq!(
            client_ip(input.peer, more.into_iter(), &trusted),
            appended,
            "{written} appended by a trusted proxy was not the client"
        );
    }
});

/// What an X-Forwarded-For entry could name: an address, with a port or not.
fn entry(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}
