//! Other gateways in front of tokengate in forward-auth mode: a real nginx
//! (auth_request) and a real Caddy (forward_auth), each run from its file in
//! deploy/forward-auth/ with the test's ports put in place of the file's
//! (tokengate 127.0.0.1:8080, the API 127.0.0.1:3000, the gateway itself
//! port 8000), so the ready-made configurations are what is tested.

use super::process::Proc;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Caddy,
}

pub struct Front {
    pub kind: Kind,
    port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Front {
    /// Starts `kind` on a free port, asking tokengate at `tokengate` and
    /// proxying to `api` (both `host:port`).
    pub fn start(kind: Kind, tokengate: &str, api: &str) -> Front {
        let dir = tempfile::tempdir().expect("front temp dir");
        let port = super::free_port();
        let file = match kind {
            Kind::Nginx => "nginx.conf",
            Kind::Caddy => "Caddyfile",
        };
        let deployed = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/forward-auth")
            .join(file);
        let mut text = std::fs::read_to_string(&deployed).expect("read the deploy file");
        for (from, to) in [
            ("127.0.0.1:8080", tokengate.to_string()),
            ("127.0.0.1:3000", api.to_string()),
            ("127.0.0.1:8000", format!("127.0.0.1:{port}")),
            ("http://:8000", format!("http://:{port}")),
        ] {
            text = text.replace(from, &to);
        }
        let log = dir.path().join("front.log");
        let proc = match kind {
            Kind::Nginx => {
                std::fs::create_dir_all(dir.path().join("logs")).expect("nginx logs dir");
                let conf = dir.path().join("nginx.conf");
                std::fs::write(&conf, text).expect("write nginx.conf");
                let main = format!(
                    // One process: killing it leaves no worker behind.
                    "daemon off; master_process off; pid {0}/nginx.pid; error_log {0}/logs/error.log;",
                    dir.path().display()
                );
                let mut cmd = Command::new(nginx_binary());
                cmd.arg("-p")
                    .arg(dir.path())
                    .arg("-c")
                    .arg(&conf)
                    .args(["-g", &main]);
                Proc::spawn("nginx", &mut cmd, &log, &log)
            }
            Kind::Caddy => {
                // Its admin endpoint would take port 2019 in every test.
                let text = text.replace("auto_https off", "auto_https off\n\tadmin off");
                let conf = dir.path().join("Caddyfile");
                std::fs::write(&conf, text).expect("write Caddyfile");
                let mut cmd = Command::new("caddy");
                cmd.args(["run", "--adapter", "caddyfile", "--config"])
                    .arg(&conf)
                    .env("HOME", dir.path())
                    .env("XDG_DATA_HOME", dir.path())
                    .env("XDG_CONFIG_HOME", dir.path());
                Proc::spawn("caddy", &mut cmd, &log, &log)
            }
        };
        let up = super::poll_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up,
            "{kind:?} did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Front {
            kind,
            port,
            _proc: proc,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// nginx is in /usr/sbin, which is not on every PATH.
fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}
