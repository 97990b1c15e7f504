//! Child processes owned by a test: spawning with output to files, signals, bounded waits, kill on drop.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running child that is SIGKILLed and reaped when dropped.
pub struct Proc {
    child: Child,
    name: String,
    status: Option<ExitStatus>,
}

/// Opens `path` for appending, so a restarted process adds to the same log.
pub fn append_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout/stderr appended to the given
    /// files. Output never goes to the test's own stdout/stderr: nextest would
    /// otherwise wait on the inherited pipes and report a leak.
    pub fn spawn(name: &str, cmd: &mut Command, stdout: &Path, stderr: &Path) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(append_file(stdout))
            .stderr(append_file(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Proc {
            child,
            name: name.to_string(),
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child has exited (reaping it), else None.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("try_wait {}: {e}", self.name));
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// Sends a signal by name ("TERM", "HUP", ...). The pid is still ours
    /// while the child is unreaped, so this cannot hit a recycled pid.
    pub fn signal(&mut self, sig: &str) {
        if !self.is_running() {
            return;
        }
        // std has no safe way to send anything but SIGKILL, and unsafe code
        // is forbidden in this crate; the shell's builtin kill is always there.
        // kill exits non-zero only if the child exited meanwhile, which
        // callers observe by waiting, so its status is not interesting.
        let _status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{sig} {}", self.pid()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("run kill -{sig} for {}: {e}", self.name));
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and reap. Safe to call on an exited child.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        // An error here means it exited between the check and the kill; wait covers both.
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("wait {}: {e}", self.name));
        self.status = Some(status);
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion, killing it after `timeout`; returns its exit
/// code (-1 when killed by a signal) and its stdout followed by its stderr.
pub fn run_bounded(name: &str, cmd: &mut Command, timeout: Duration) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir for command output");
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut proc = Proc::spawn(name, cmd, &out, &err);
    let status = match proc.wait_timeout(timeout) {
        Some(status) => status,
        None => {
            proc.kill9();
            panic!(
                "{name} did not finish within {timeout:?}\n{}",
                read_lossy(&out) + &read_lossy(&err)
            );
        }
    };
    (
        status.code().unwrap_or(-1),
        read_lossy(&out) + &read_lossy(&err),
    )
}

/// File contents as text, empty when the file does not exist yet.
pub fn read_lossy(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// The last `n` lines of `text`, for panic messages that stay readable.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The TCP connections process `pid` holds, as (local port, remote port),
/// IPv4 and IPv6, read from `/proc/PID/fd` and `/proc/PID/net/tcp{,6}`.
/// Listening sockets show remote port 0. Empty when `/proc` is unreadable.
pub fn tcp_connections(pid: u32) -> Vec<(u16, u16)> {
    let inodes: std::collections::HashSet<String> =
        match std::fs::read_dir(format!("/proc/{pid}/fd")) {
            Ok(dir) => dir
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|target| {
                    let t = target.to_string_lossy().into_owned();
                    Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect(),
            Err(_) => return Vec::new(),
        };
    let port = |endpoint: &str| {
        endpoint
            .rsplit_once(':')
            .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
    };
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = read_lossy(Path::new(&format!("/proc/{pid}/net/{table}")));
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || !inodes.contains(fields[9]) {
                continue;
            }
            if let (Some(local), Some(remote)) = (port(fields[1]), port(fields[2])) {
                out.push((local, remote));
            }
        }
    }
    out
}
