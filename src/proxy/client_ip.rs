//! Which address a request comes from: the TCP peer, or, when the peer is a
//! trusted proxy, the first untrusted hop of X-Forwarded-For read from the right (pure).

use ipnet::IpNet;
use std::net::IpAddr;

/// The client address for the allowlist check.
///
/// Each proxy appends the address it received the connection from, so walking
/// from the right, every entry written by a trusted hop can be believed; the
/// first address that is not itself a trusted proxy is the client. Entries to
/// its left were written by the client and are ignored (the leftmost value is
/// never trusted blindly). A value that is not an IP stops the walk at the last
/// trusted hop, so garbage can only make the request look like it comes from
/// the proxy, never from an address of the client's choosing.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut current = peer.to_canonical();
    if !is_trusted(&current) {
        return current;
    }
    for header in forwarded_for.rev() {
        for entry in header.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            match parse_entry(entry) {
                Some(ip) => {
                    current = ip;
                    if !is_trusted(&current) {
                        return current;
                    }
                }
                None => return current,
            }
        }
    }
    current
}

/// An X-Forwarded-For entry: a bare address, or one with a port ("1.2.3.4:5", "[::1]:5").
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    s.parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_ignores_the_header() {
        let got = client_ip(
            ip("203.0.113.9"),
            ["1.1.1.1"].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peer_takes_first_untrusted_from_the_right() {
        let t = nets(&["10.0.0.0/8"]);
        let got = client_ip(
            ip("10.0.0.1"),
            ["6.6.6.6, 198.51.100.7, 10.0.0.2"].into_iter(),
            &t,
        );
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn several_headers_are_one_list() {
        let t = nets(&["10.0.0.0/8"]);
        let got = client_ip(
            ip("10.0.0.1"),
            ["6.6.6.6", "198.51.100.7", "10.9.9.9"].into_iter(),
            &t,
        );
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn no_header_or_all_trusted() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), std::iter::empty(), &t),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["10.0.0.5, 10.0.0.6"].into_iter(), &t),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn garbage_stops_at_the_trusted_hop() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["1.1.1.1, nonsense"].into_iter(), &t),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ports_and_mapped_addresses() {
        let t = nets(&["127.0.0.1/32"]);
        assert_eq!(
            client_ip(
                ip("::ffff:127.0.0.1"),
                ["[2001:db8::1]:443"].into_iter(),
                &t
            ),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), ["192.0.2.1:8080"].into_iter(), &t),
            ip("192.0.2.1")
        );
    }
}
