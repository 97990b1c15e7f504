//! `server.tls` and `admin.tls`: the file model of a listener's TLS and its
//! validation (pure: the files are read at start-up and on reload, by
//! `crate::tls`, so a file replaced on disk is checked when it is used).

use super::Problems;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A listener's TLS: what `crate::tls` loads into a rustls server config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Chosen by SNI; the first one serves clients that send no known name.
    pub certificates: Vec<CertificateFiles>,
    /// PEM CAs a client certificate must chain to; set, a client without
    /// such a certificate is refused in the handshake (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Offer HTTP/2 by ALPN next to HTTP/1.1.
    pub h2: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// SNI names this certificate answers (lowercase, `*.` wildcards);
    /// empty: the DNS names of its subjectAltName.
    pub names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFile {
    listen: Option<Vec<String>>,
    #[serde(default)]
    certificates: Vec<CertificateFile>,
    client_ca: Option<PathBuf>,
    /// Browsers and HTTP clients negotiate it on their own; off only for
    /// clients that mishandle it.
    #[serde(default = "super::file::yes")]
    h2: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateFile {
    cert: PathBuf,
    key: PathBuf,
    #[serde(default)]
    names: Vec<String>,
}

/// `server.tls`: its listen addresses (required, apart from `server.listen`)
/// and its settings.
pub(super) fn validate_server(
    p: &mut Problems,
    f: Option<&TlsFile>,
) -> (Vec<SocketAddr>, Option<TlsConfig>) {
    let Some(f) = f else {
        return (Vec::new(), None);
    };
    let listen: Vec<SocketAddr> = match &f.listen {
        Some(l) if !l.is_empty() => l
            .iter()
            .enumerate()
            .filter_map(|(i, s)| p.addr(&format!("server.tls.listen[{i}]"), s))
            .collect(),
        _ => {
            p.add(
                "server.tls.listen",
                "at least one address is required (server.listen stays plain HTTP)",
            );
            Vec::new()
        }
    };
    (listen, Some(validate(p, "server.tls", f)))
}

/// `admin.tls`: the admin listener's one address is `admin.listen`.
pub(super) fn validate_admin(
    p: &mut Problems,
    f: Option<&TlsFile>,
    has_listener: bool,
) -> Option<TlsConfig> {
    let f = f?;
    if f.listen.is_some() {
        p.add(
            "admin.tls.listen",
            "the admin listener's address is admin.listen",
        );
    }
    if !has_listener {
        p.add("admin.tls", "needs admin.listen");
    }
    Some(validate(p, "admin.tls", f))
}

fn validate(p: &mut Problems, key: &str, f: &TlsFile) -> TlsConfig {
    if f.certificates.is_empty() {
        p.add(
            &format!("{key}.certificates"),
            "at least one certificate (cert and key files) is required",
        );
    }
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut certificates = Vec::new();
    for (i, c) in f.certificates.iter().enumerate() {
        let at = format!("{key}.certificates[{i}]");
        for (field, path) in [("cert", &c.cert), ("key", &c.key)] {
            if path.as_os_str().is_empty() {
                p.add(&format!("{at}.{field}"), "must not be empty");
            }
        }
        let mut names = Vec::new();
        for (j, name) in c.names.iter().enumerate() {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Err(e) = check_name(&name) {
                p.add(&format!("{at}.names[{j}]"), format!("'{name}' {e}"));
                continue;
            }
            if let Some((_, other)) = seen.iter().find(|(n, _)| *n == name) {
                p.add(
                    &format!("{at}.names[{j}]"),
                    format!("'{name}' is also a name of {key}.certificates[{other}]"),
                );
                continue;
            }
            seen.push((name.clone(), i));
            names.push(name);
        }
        certificates.push(CertificateFiles {
            cert: c.cert.clone(),
            key: c.key.clone(),
            names,
        });
    }
    if f.client_ca
        .as_ref()
        .is_some_and(|ca| ca.as_os_str().is_empty())
    {
        p.add(&format!("{key}.client_ca"), "must not be empty");
    }
    TlsConfig {
        certificates,
        client_ca: f.client_ca.clone(),
        h2: f.h2,
    }
}

/// A name SNI can carry: a DNS name, or `*.` and a DNS name of at least two
/// labels (a wildcard stands for exactly one leftmost label, as in
/// certificates). SNI never carries an IP address.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let base = name.strip_prefix("*.").unwrap_or(name);
    if name.starts_with("*.") && !base.contains('.') {
        return Err("is a wildcard over a top-level domain");
    }
    if base.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address; SNI only carries DNS names");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    if base.is_empty() || base.len() > 253 || !base.split('.').all(label_ok) {
        return Err("is not a DNS name (or *. and a DNS name)");
    }
    Ok(())
}
