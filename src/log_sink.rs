//! Where the access and audit logs write their lines: nowhere, stdout, or a
//! file opened for appending and reopened after SIGHUP or SIGUSR1, so
//! logrotate can move it away and signal (nginx's and Apache's convention).

use crate::config::Destination;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One open destination. Writes whole buffers of whole lines, so lines from
/// the access and audit logs never interleave on a shared stdout.
pub struct Sink {
    out: Out,
    /// Set by SIGHUP and SIGUSR1; the next write reopens the file first.
    reopen: Arc<AtomicBool>,
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
        let reopen = Arc::new(AtomicBool::new(false));
        let out = match destination {
            Destination::Off => Out::Off,
            Destination::Stdout => Out::Stdout,
            Destination::File(path) => {
                let file = open_append(path).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
                })?;
                for signal in [signal_hook::consts::SIGHUP, signal_hook::consts::SIGUSR1] {
                    signal_hook::flag::register(signal, reopen.clone())?;
                }
                Out::File {
                    path: path.clone(),
                    file,
                }
            }
        };
        Ok(Sink { out, reopen })
    }

    /// Writes nothing.
    pub fn off() -> Sink {
        Sink {
            out: Out::Off,
            reopen: Arc::new(AtomicBool::new(false)),
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
                if self.reopen.swap(false, Ordering::Relaxed) {
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
        sink.reopen.store(true, Ordering::Relaxed);
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
