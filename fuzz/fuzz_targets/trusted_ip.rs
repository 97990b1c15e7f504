//! Fuzz target `trusted_ip`: trusted-IP and CIDR text
//! (`model::parse_trusted_ip`, shared by `accessTokenTrustedIps` and
//! `trusted_proxies`) and the allowlist check of a token that carries the
//! result (`auth::check_token`).
#![no_main]

// Each target uses part of the shared input helpers.
#[allow(dead_code)]
mod common;

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use tokengate::auth::{check_token, Deny};
use tokengate::model::{parse_trusted_ip, TokenRecord};
use tokengate::token::Id;

// Fields: an address to try against the result, the entry as an API client
// or a config file writes it (the rest).
fuzz_target!(|data: &[u8]| {
    let mut f = common::Fields::new(data);
    let probe = f
        .text()
        .trim()
        .parse::<IpAddr>()
        .unwrap_or(IpAddr::from([203, 0, 113, 7]));
    text(f.rest_text(), probe);
});

fn text(s: &str, probe: IpAddr) {
    let Ok(net) = parse_trusted_ip(s) else {
        // A refusal names the field and never echoes more than 64 characters.
        let e = parse_trusted_ip(s).unwrap_err();
        assert_eq!(e.field, "accessTokenTrustedIps");
        assert!(e.message.chars().count() <= 64 + 3 + 48, "{}", e.message);
        return;
    };
    // Stored networks have no host bits, contain their own network
    // address, and print as text that parses back to themselves.
    assert_eq!(net, net.trunc(), "{s:?} kept host bits: {net}");
    assert!(net.contains(&net.network()));
    assert!(net.contains(&net.broadcast()));
    assert_eq!(parse_trusted_ip(&net.to_string()).ok(), Some(net));
    // An IPv4-mapped block is stored as the IPv4 block it means, since
    // clients are compared in canonical form.
    if let IpNet::V6(v6) = net {
        if v6.prefix_len() >= 96 {
            assert!(
                v6.network().to_ipv4_mapped().is_none(),
                "{s:?} kept a mapped block {net}"
            );
        }
    }
    // What the text names is inside the stored network.
    let t = s.trim();
    if let Ok(ip) = t.parse::<IpAddr>() {
        assert!(net.contains(&ip.to_canonical()));
        assert_eq!(net.prefix_len(), net.max_prefix_len());
    } else if let Ok(written) = t.parse::<IpNet>() {
        // Only a block of at least /96 can be IPv4-mapped as a whole.
        let seen = |ip: IpAddr| match written {
            IpNet::V6(w) if w.prefix_len() < 96 => ip,
            _ => ip.to_canonical(),
        };
        assert!(net.contains(&seen(written.network())));
        assert!(net.contains(&seen(written.addr())));
    }

    // A token with this allowlist lets in its network address (from either
    // spelling of it) and refuses an address outside, as IpNotTrusted.
    let token = token_with(net);
    let hash = [7; 32];
    assert_eq!(check_token(&token, &hash, net.network(), 1), Ok(()));
    if let IpAddr::V4(v4) = net.network() {
        assert_eq!(
            check_token(&token, &hash, IpAddr::V6(v4.to_ipv6_mapped()), 1),
            Ok(())
        );
    }
    let probe_c = probe.to_canonical();
    let verdict = check_token(&token, &hash, probe, 1);
    if net.contains(&probe_c) {
        assert_eq!(verdict, Ok(()));
    } else {
        assert_eq!(verdict, Err(Deny::IpNotTrusted(probe_c)));
    }
}

fn token_with(net: IpNet) -> TokenRecord {
    TokenRecord {
        id: Id([1; 16]),
        identity_id: Id([2; 16]),
        name: "fuzz".into(),
        secret_hash: [7; 32],
        created_at: 0,
        last_renewed_at: None,
        last_used_at: None,
        num_uses: 0,
        num_uses_limit: 0,
        ttl: 0,
        max_ttl: 0,
        period: 0,
        trusted_ips: vec![net],
        revoked: false,
    }
}
