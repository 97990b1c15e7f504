//! TLS on the gateway's own listeners: loading and checking the certificate,
//! key and client CA files of `server.tls` / `admin.tls` into a rustls server
//! config, choosing a certificate by SNI, and the live config a reload
//! replaces.
//!
//! Why rustls through Pingora's `Acceptor`: the stream it returns is the one
//! Pingora's HTTP/1 and HTTP/2 servers read (TLS digest, ALPN), and the
//! upstream side already uses rustls. TLS 1.2 and 1.3 only, with rustls's
//! default cipher suites (AEAD with forward secrecy, nothing else).
//!
//! Why the whole acceptor is swapped on reload rather than only the
//! certificates: the client CA lives in the verifier, which rustls borrows
//! from (`root_hint_subjects`), so it cannot sit behind a swap of its own.
//! A new rustls config per reload costs the session-resumption cache, a
//! full handshake for clients that had one; it buys certificates, client CA
//! and ALPN changing together, atomically, with handshakes in progress
//! finishing on the config they started with.
//!
//! The client certificate of an mTLS connection is checked and then not
//! used: no identity is taken from it, nothing is forwarded. The token is
//! what identifies the caller.

use crate::config::{check_name, CertificateFiles, TlsConfig};
use arc_swap::ArcSwap;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::TlsStream;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{
    version, ClientHello, CryptoProvider, ResolvesServerCert, RootCertStore, RusTlsError,
    ServerConfig, WebPkiClientVerifier,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// One TLS listener group (`server.tls` or `admin.tls`) and its live config.
pub struct TlsEndpoint {
    /// The config key, for messages.
    key: &'static str,
    acceptor: ArcSwap<Acceptor>,
}

impl TlsEndpoint {
    /// Loads the files of `cfg`; every problem names its key under `key`.
    pub fn load(key: &'static str, cfg: &TlsConfig) -> Result<TlsEndpoint, Vec<String>> {
        Ok(TlsEndpoint {
            key,
            acceptor: ArcSwap::from(prepare(key, cfg)?),
        })
    }

    /// The first step of a reload: the new files, loaded and checked, not
    /// yet serving.
    pub fn prepare(&self, cfg: &TlsConfig) -> Result<Arc<Acceptor>, Vec<String>> {
        prepare(self.key, cfg)
    }

    /// The second step: handshakes from now on use `next`.
    pub fn install(&self, next: Arc<Acceptor>) {
        self.acceptor.store(next);
    }

    /// The TLS handshake of one client connection, on the config serving
    /// when it starts. A failure is the client's (no shared version or
    /// cipher, no client certificate, a reset): logged at debug only.
    pub async fn handshake(&self, stream: L4Stream) -> Option<TlsStream<L4Stream>> {
        let acceptor = self.acceptor.load_full();
        match acceptor.tls_handshake(stream).await {
            Ok(tls) => Some(tls),
            Err(e) => {
                log::debug!("{}: TLS handshake failed: {e}", self.key);
                None
            }
        }
    }
}

/// Reads every file of `cfg` and builds the acceptor, or names each problem.
fn prepare(key: &str, cfg: &TlsConfig) -> Result<Arc<Acceptor>, Vec<String>> {
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .cloned()
        .ok_or_else(|| vec![format!("{key}: no TLS crypto provider")])?;
    let several = cfg.certificates.len() > 1;
    let mut problems = Vec::new();
    let mut keys = Vec::new();
    let mut names = Vec::new();
    for (i, files) in cfg.certificates.iter().enumerate() {
        let at = format!("{key}.certificates[{i}]");
        match certified_key(&at, files, &provider) {
            Ok((certified, found)) => {
                if found.is_empty() && several {
                    problems.push(format!(
                        "{at}: {} has no DNS name in its subjectAltName to choose it by SNI; list them in names",
                        files.cert.display()
                    ));
                }
                keys.push(Arc::new(certified));
                names.push(found);
            }
            Err(e) => problems.push(e),
        }
    }
    let verifier = match &cfg.client_ca {
        Some(ca) => match client_verifier(&format!("{key}.client_ca"), ca, &provider) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(e);
                None
            }
        },
        None => None,
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let resolver = SniResolver::new(keys, &names);
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS12, &version::TLS13])
        .map_err(|e| vec![format!("{key}: {e}")])?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = if cfg.h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(Acceptor::from_server_config(Arc::new(config))))
}

fn read(at: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{at}: cannot read {}: {e}", path.display()))
}

/// The certificate chain and key of one `certificates` entry, checked to
/// belong together, and the names SNI chooses it by.
fn certified_key(
    at: &str,
    files: &CertificateFiles,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, Vec<String>), String> {
    let cert_at = format!("{at}.cert");
    let key_at = format!("{at}.key");
    let pem = read(&cert_at, &files.cert)?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert_at}: {} is not PEM: {e}", files.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{cert_at}: {} holds no PEM certificate",
            files.cert.display()
        ));
    }
    let pem = read(&key_at, &files.key)?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{key_at}: {} is not PEM: {e}", files.key.display()))?
        .ok_or_else(|| {
            format!(
                "{key_at}: {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                files.key.display()
            )
        })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        RusTlsError::InconsistentKeys(_) => format!(
            "{at}: the key in {} does not match the certificate in {}",
            files.key.display(),
            files.cert.display()
        ),
        e => format!("{key_at}: {}: {e}", files.key.display()),
    })?;
    let names = if files.names.is_empty() {
        let leaf = certified.cert.first().map(|c| c.as_ref()).unwrap_or(&[]);
        san_dns_names(leaf).map_err(|e| format!("{cert_at}: {}: {e}", files.cert.display()))?
    } else {
        files.names.clone()
    };
    Ok((certified, names))
}

/// The DNS names in a certificate's subjectAltName that SNI can carry,
/// lowercase.
fn san_dns_names(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?;
    Ok(san
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.trim_end_matches('.').to_ascii_lowercase()),
                    _ => None,
                })
                .filter(|d| check_name(d).is_ok())
                .collect()
        })
        .unwrap_or_default())
}

/// mTLS: a client must present a certificate chaining to one of the CAs in
/// `path` (checked for validity dates too), or the handshake fails.
fn client_verifier(
    at: &str,
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn pingora::tls::ClientCertVerifier>, String> {
    let pem = read(at, path)?;
    let cas = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{at}: {} is not PEM: {e}", path.display()))?;
    if cas.is_empty() {
        return Err(format!("{at}: {} holds no PEM certificate", path.display()));
    }
    let mut roots = RootCertStore::empty();
    for (i, ca) in cas.into_iter().enumerate() {
        roots
            .add(ca)
            .map_err(|e| format!("{at}: certificate {i} of {}: {e}", path.display()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("{at}: {}: {e}", path.display()))
}

/// Picks a certificate by the SNI name: exact name, then a `*.` wildcard
/// for the name's leftmost label, then the first certificate (clients
/// without SNI, or with a name no certificate has, as nginx's default
/// server). When two certificates carry the same name, the first listed
/// wins.
#[derive(Debug)]
struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
    by_name: HashMap<String, usize>,
}

impl SniResolver {
    fn new(keys: Vec<Arc<CertifiedKey>>, names: &[Vec<String>]) -> SniResolver {
        let mut by_name = HashMap::new();
        for (i, list) in names.iter().enumerate() {
            for name in list {
                by_name.entry(name.clone()).or_insert(i);
            }
        }
        SniResolver { keys, by_name }
    }

    fn pick(&self, sni: Option<&str>) -> usize {
        let Some(name) = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()) else {
            return 0;
        };
        if let Some(&i) = self.by_name.get(&name) {
            return i;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.by_name.get(&format!("*.{parent}")))
            .copied()
            .unwrap_or(0)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.keys.get(self.pick(hello.server_name())).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(names: &[&[&str]]) -> SniResolver {
        let names: Vec<Vec<String>> = names
            .iter()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .collect();
        SniResolver {
            keys: Vec::new(),
            by_name: SniResolver::new(Vec::new(), &names).by_name,
        }
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_first() {
        let r = resolver(&[
            &["default.test"],
            &["api.example.com"],
            &["*.example.com", "example.com"],
            &["api.example.com", "*.other.test"],
        ]);
        assert_eq!(r.pick(None), 0);
        assert_eq!(r.pick(Some("api.example.com")), 1);
        assert_eq!(r.pick(Some("API.Example.COM.")), 1);
        assert_eq!(r.pick(Some("www.example.com")), 2);
        assert_eq!(r.pick(Some("example.com")), 2);
        // A wildcard stands for one label only.
        assert_eq!(r.pick(Some("a.b.example.com")), 0);
        assert_eq!(r.pick(Some("x.other.test")), 3);
        assert_eq!(r.pick(Some("unknown.test")), 0);
    }

    #[test]
    fn missing_and_mismatched_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").expect("write");
        let cfg = TlsConfig {
            certificates: vec![CertificateFiles {
                cert: missing.clone(),
                key: empty.clone(),
                names: Vec::new(),
            }],
            client_ca: Some(empty.clone()),
            h2: true,
        };
        let Err(e) = prepare("server.tls", &cfg) else {
            panic!("loaded without files");
        };
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("server.tls.certificates[0].cert: cannot read"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("server.tls.client_ca:") && e[1].contains("holds no PEM certificate"),
            "{e:?}"
        );
    }
}
