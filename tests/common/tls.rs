//! TLS for tests: a throwaway CA that signs server and client certificates
//! at test time (the `openssl` command line, EC P-256 keys so it is quick),
//! and rustls clients that report what the server presented and negotiated.

use super::http::{parse_response, Resp};
use super::process::run_bounded;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A CA in a temp directory, and the certificates it signed there.
pub struct Pki {
    dir: tempfile::TempDir,
    name: String,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let (code, out) = run_bounded(
        "openssl",
        Command::new("openssl").args(args).current_dir(dir),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "openssl {args:?}: {out}");
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

impl Pki {
    /// A new CA whose subject CN is `name`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("tg-pki-")
            .tempdir()
            .expect("tempdir");
        let subj = format!("/CN={name}");
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", &subj];
        args.extend(EC);
        args.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(dir.path(), &args);
        Pki {
            dir,
            name: name.to_string(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A server certificate `file`.pem / `file`.key with subject CN `cn` and
    /// these subjectAltNames (`DNS:a.test`, `IP:127.0.0.1`).
    pub fn server(&self, file: &str, cn: &str, sans: &[&str]) -> CertFiles {
        let mut ext = String::from("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
        if !sans.is_empty() {
            ext.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        self.sign(file, cn, &ext)
    }

    /// A client certificate (extendedKeyUsage clientAuth) with CN `cn`.
    pub fn client(&self, file: &str, cn: &str) -> CertFiles {
        self.sign(
            file,
            cn,
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
    }

    fn sign(&self, file: &str, cn: &str, ext: &str) -> CertFiles {
        let d = self.dir.path();
        let (key, csr, pem, extfile) = (
            format!("{file}.key"),
            format!("{file}.csr"),
            format!("{file}.pem"),
            format!("{file}.ext"),
        );
        std::fs::write(d.join(&extfile), ext).expect("write extensions");
        let subj = format!("/CN={cn}");
        let mut args = vec!["req", "-nodes", "-subj", &subj];
        args.extend(EC);
        args.extend(["-keyout", &key, "-out", &csr]);
        openssl(d, &args);
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial(),
                "-days",
                "2",
                "-extfile",
                &extfile,
                "-out",
                &pem,
            ],
        );
        CertFiles {
            cert: d.join(pem),
            key: d.join(key),
        }
    }
}

/// Distinct serial numbers, so no two test certificates look alike.
fn serial() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}", u64::from(std::process::id()) * 1_000_000 + n)
}

fn read_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

fn read_key(path: &Path) -> PrivateKeyDer<'static> {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    rustls_pemfile::private_key(&mut pem.as_slice())
        .expect("PEM key")
        .expect("a key")
}

/// How a test client connects.
#[derive(Clone)]
pub struct Client {
    /// Trusted roots: the server's CA.
    pub ca: PathBuf,
    /// A client certificate to present.
    pub identity: Option<CertFiles>,
    /// ALPN protocols offered, in order.
    pub alpn: Vec<Vec<u8>>,
    /// Send the server name as SNI (rustls sends none for an IP anyway).
    pub sni: bool,
}

impl Client {
    pub fn trusting(ca: &Path) -> Client {
        Client {
            ca: ca.to_path_buf(),
            identity: None,
            alpn: vec![b"http/1.1".to_vec()],
            sni: true,
        }
    }

    pub fn with_identity(mut self, id: &CertFiles) -> Client {
        self.identity = Some(id.clone());
        self
    }

    pub fn alpn(mut self, protocols: &[&str]) -> Client {
        self.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    pub fn without_sni(mut self) -> Client {
        self.sni = false;
        self
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&self.ca) {
            roots.add(ca).expect("CA into the root store");
        }
        let builder = ClientConfig::builder().with_root_certificates(roots);
        let mut cfg = match &self.identity {
            Some(id) => builder
                .with_client_auth_cert(read_certs(&id.cert), read_key(&id.key))
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = self.alpn.clone();
        cfg.enable_sni = self.sni;
        Arc::new(cfg)
    }

    /// Connects to `addr` and completes the handshake for `name` (verified
    /// against the CA), or says why it failed.
    pub fn connect(&self, addr: &str, name: &str) -> Result<Tls, String> {
        let tcp = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
        tcp.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
        let server = ServerName::try_from(name.to_string()).expect("server name");
        let conn = ClientConnection::new(self.config(), server).map_err(|e| e.to_string())?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(Tls(stream))
    }

    /// One HTTP/1.1 request over a new TLS connection (`Connection: close`
    /// is added), its answer read in full.
    pub fn request(&self, addr: &str, name: &str, raw_head: &str) -> Result<Resp, String> {
        let mut tls = self.connect(addr, name)?;
        tls.exchange(&format!("{raw_head}Connection: close\r\n\r\n"))
    }
}

/// A client TLS connection whose handshake is complete.
pub struct Tls(pub StreamOwned<ClientConnection, TcpStream>);

impl Tls {
    /// The ALPN protocol the server chose.
    pub fn alpn(&self) -> Option<String> {
        self.0
            .conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// The server's leaf certificate: its subject CN and DNS names.
    pub fn presented(&self) -> Presented {
        let certs = self
            .0
            .conn
            .peer_certificates()
            .expect("a server certificate");
        presented(certs[0].as_ref())
    }

    /// Writes `raw` and reads one response. A server that ends the
    /// connection first (a refused client certificate is reported after
    /// TLS 1.3's handshake, on the first read) is an error.
    pub fn exchange(&mut self, raw: &str) -> Result<Resp, String> {
        self.0
            .write_all(raw.as_bytes())
            .and_then(|()| self.0.flush())
            .map_err(|e| format!("write: {e}"))?;
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while Instant::now() < deadline {
            if let Some(resp) = parse_response(&buf, false) {
                return Ok(resp);
            }
            match self.0.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        parse_response(&buf, true)
            .ok_or_else(|| format!("no complete response: {:?}", String::from_utf8_lossy(&buf)))
    }
}

/// What a server certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub cn: String,
    pub dns_names: Vec<String>,
}

pub fn presented(der: &[u8]) -> Presented {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("X.509");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let dns_names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Presented { cn, dns_names }
}

/// One HTTP/2 request over TLS with ALPN h2 (and nothing else offered):
/// the negotiated protocol, the status, the answer's headers and body.
pub fn h2_request(
    client: &Client,
    addr: &str,
    name: &str,
    req: http::Request<()>,
) -> Result<(String, Resp), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cfg = client.clone().alpn(&["h2"]).config();
    let name = ServerName::try_from(name.to_string()).expect("server name");
    let addr = addr.to_string();
    rt.block_on(async move {
        let work = async move {
            let tcp = tokio::net::TcpStream::connect(&addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let alpn = tls
                .get_ref()
                .1
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default();
            let (mut send, conn) = h2::client::handshake(tls)
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let (answer, _) = send
                .send_request(req, true)
                .map_err(|e| format!("h2 send: {e}"))?;
            let answer = answer.await.map_err(|e| format!("h2 answer: {e}"))?;
            let status = answer.status().as_u16();
            let headers = answer
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = answer.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.map_err(|e| format!("h2 body: {e}"))?;
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            Ok::<_, String>((
                alpn,
                Resp {
                    status,
                    headers,
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                },
            ))
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .map_err(|_| "HTTP/2 request timed out".to_string())?
    })
}
