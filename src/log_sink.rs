//! Where the access and audit logs write their lines: nowhere, stdout, or a
//! file opened for appending and reopened after SIGHUP or SIGUSR1, so
//! logrotate can move it away and signal (nginx's and Apache's convention).

use crate::config::Destination;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Set by SIGHUP and SIGUSR1, whose handlers are installed once
/// (`watch_reopen_signals`), however many sinks reloads open.
static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// Bumped once per request to reopen; each sink reopens when it has not
/// seen the current number.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Installs the SIGHUP and SIGUSR1 handlers (once): they ask every file sink
/// to reopen its file, and neither signal can end the process any more,
/// which is their default action.
pub fn watch_reopen_signals() -> io::Result<()> {
    let flag = Arc::new(AtomicBool::new(false));
    if REQUESTED.set(flag.clone()).is_ok() {
        for signal in [signal_hook::consts::SIGHUP, signal_hook::consts::SIGUSR1] {
            signal_hook::flag::register(signal, flag.clone())?;
        }
    }
    Ok(())
}

/// The reopen generation now, first turning a pending request into one.
fn generation() -> u64 {
    if REQUESTED
        .get()
        .is_some_and(|f| f.swap(false, Ordering::Relaxed))
    {
        GENERATION.fetch_add(1, Ordering::Relaxed);
    }
    GENERATION.load(Ordering::Relaxed)
}

/// A record's JSON as the line written: redacted as every log line is
/// (token-shaped and registered secrets hidden), ending in a newline.
pub fn line(json: &str) -> Vec<u8> {
    let mut line = crate::logging::redact(json).into_owned().into_bytes();
    line.push(b'\n');
    line
}

/// One open destination. Writes whole buffers of whole lines, so lines from
/// the access and audit logs never interleave on a shared stdout.
pub struct Sink {
    out: Out,
    /// The reopen generation the file was opened at (`generation`).
    opened_at: u64,
}

enum Out {
    Off,
    Stdout,
    File { path: PathBuf, file: File },
}

fn open_append(path: &Path) -> io::Result<File> {
    // Not world-readable: records name identities, addresses and projects.
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

impl Sink {
    /// Opens the destination now, so a path that cannot be written stops
    /// the gateway at start-up rather than losing records later.
    pub fn open(destination: &Destination) -> io::Result<Sink> {
        let out = match destination {
            Destination::Off => Out::Off,
            Destination::Stdout => Out::Stdout,
            Destination::File(path) => {
                let file = open_append(path).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
                })?;
                Out::File {
                    path: path.clone(),
                    file,
                }
            }
        };
        Ok(Sink {
            out,
            opened_at: generation(),
        })
    }

    /// Writes nothing.
    pub fn off() -> Sink {
        Sink {
            out: Out::Off,
            opened_at: 0,
        }
    }

    pub fn is_off(&self) -> bool {
        matches!(self.out, Out::Off)
    }

    /// Writes `lines` (each ending in a newline) in one call.
    pub fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        match &mut self.out {
            Out::Off => Ok(()),
            Out::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(lines)?;
                out.flush()
            }
            Out::File { path, file } => {
                let now = generation();
                if now != self.opened_at {
                    self.opened_at = now;
                    // Failing to reopen keeps the old file: records still
                    // land somewhere (the rotated file) instead of nowhere.
                    match open_append(path) {
                        Ok(fresh) => *file = fresh,
                        Err(e) => log::error!("cannot reopen {}: {e}", path.display()),
                    }
                }
                file.write_all(lines)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_is_appended_to_and_reopened_when_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "kept\n").unwrap();
        let mut sink = Sink::open(&Destination::File(path.clone())).unwrap();
        sink.write_lines(b"one\n").unwrap();
        let rotated = dir.path().join("a.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.write_lines(b"two\n").unwrap();
        GENERATION.fetch_add(1, Ordering::Relaxed);
        sink.write_lines(b"three\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "kept\none\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    }

    #[test]
    fn an_unwritable_file_fails_at_open_and_a_full_device_on_write() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/a.log");
        let e = Sink::open(&Destination::File(missing)).err().unwrap();
        assert!(e.to_string().contains("no/such/dir"), "{e}");
        let mut full = Sink::open(&Destination::File("/dev/full".into())).unwrap();
        assert!(full.write_lines(b"x\n").is_err());
        let mut off = Sink::open(&Destination::Off).unwrap();
        assert!(off.is_off());
        off.write_lines(b"x\n").unwrap();
    }
}
