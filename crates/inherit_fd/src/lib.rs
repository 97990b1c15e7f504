//! Adopts a listening TCP socket by descriptor number: the one place that
//! needs `unsafe`, kept out of the tokengate crate (which forbids it).
//!
//! In a graceful upgrade the old process sends its listening sockets over a
//! Unix socket; Pingora receives them into its table of descriptors as bare
//! numbers, and the proxy listeners (which do not use Pingora's listening
//! service) take theirs from there.

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

/// The listening TCP socket behind `fd`, owned from now on: the caller must
/// be the only one to adopt it (tokengate takes each of its addresses once).
/// Refuses a descriptor that is not a listening TCP socket.
pub fn tcp_listener(fd: RawFd) -> io::Result<TcpListener> {
    if fd < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "negative descriptor",
        ));
    }
    // SAFETY: `fd` came from the upgrade handover and nothing else in the
    // process owns it (see above); if it is not a socket, the checks below
    // fail and the listener is forgotten rather than closed, so a descriptor
    // that belongs to someone else is never closed here.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let is_listening_tcp = listener.local_addr().is_ok() && listener.set_nonblocking(true).is_ok();
    if !is_listening_tcp {
        std::mem::forget(listener);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is not a TCP socket"),
        ));
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn adopts_a_listening_socket_and_refuses_anything_else() {
        let original = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = original.local_addr().unwrap();
        let adopted = tcp_listener(original.into_raw_fd()).unwrap();
        assert_eq!(adopted.local_addr().unwrap(), addr);
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = file.into_raw_fd();
        assert!(tcp_listener(fd).is_err());
        assert!(tcp_listener(-1).is_err());
    }
}
