//! What a client connection may hold: the open-connection limit (a plain 503
//! refusal past it) and the deadline for receiving a whole request header.
//!
//! Why a wrapper around Pingora's HTTP app rather than Pingora settings:
//! Pingora times each header *read* separately (60 s, then the keep-alive
//! timeout), so a client trickling one byte every 25 s holds its connection,
//! its file descriptor and its buffers forever. Only a deadline on the whole
//! header, started by its first byte (or by the accept for the first request,
//! as nginx's `client_header_timeout` does), bounds that. Pingora has no hook
//! between the accept and its own header read, so the deadline lives in the
//! stream Pingora reads from: it watches for the blank line that ends a header
//! and, until it sees one, fails a read that would wait past the deadline.
//!
//! Why this module runs the keep-alive loop instead of Pingora: Pingora's
//! request future (parsing, filters, upstream, body pumps) is allocated in
//! full for each request and is awaited while the connection sits idle
//! waiting for the next one, tens of KiB per idle client. Here the wait for
//! the next request's first bytes happens in a small future of our own, with
//! the keep-alive timeout, and Pingora's future exists only while a request
//! is in flight. Plain listeners have no h2c, so a plain connection speaks
//! HTTP/1 and the loop is Pingora's HTTP/1 loop, nothing more.
//!
//! TLS connections (`serve_tls`) hold a slot from the accept too, and the
//! header deadline runs from the accept across the handshake: a client that
//! stalls its handshake is cut like one that stalls its header. The
//! handshake runs in the connection's own task, never in the accept loop.
//! One that negotiated HTTP/1.1 (or nothing) joins the same loop; one that
//! negotiated h2 by ALPN is handed to Pingora's HTTP/2 server, behind the
//! same deadline for its connection preface, and closed after the keep-alive
//! timeout with no stream open (`h2_idle_timeout`, set in `server.rs`).

use async_trait::async_trait;
use bytes::{Buf, Bytes};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, UniqueID, UniqueIDType,
    IO,
};
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

/// The limits every connection of one listener service shares.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; the next one is answered 503 and closed.
    pub max_connections: usize,
    /// How long a client has to send a whole request header.
    pub header_timeout: Duration,
    /// How long a connection may wait for its next request.
    pub keepalive_timeout: Duration,
}

/// A `ServerApp` that applies [`Limits`] and hands each connection on to
/// `inner` (Pingora's HTTP proxy app).
pub struct Guarded<A> {
    inner: Arc<A>,
    limits: Limits,
    open: Arc<AtomicUsize>,
    open_gauge: IntGauge,
    refused: IntCounter,
}

impl<A> Guarded<A> {
    /// `open_gauge` and `refused` are the metrics this reports to.
    pub fn new(inner: A, limits: Limits, open_gauge: IntGauge, refused: IntCounter) -> Self {
        Guarded {
            inner: Arc::new(inner),
            limits,
            open: Arc::new(AtomicUsize::new(0)),
            open_gauge,
            refused,
        }
    }
}

/// One counted connection; the count drops with it, however the task ends.
struct Slot(Arc<AtomicUsize>, IntGauge);

impl Slot {
    fn take(open: &Arc<AtomicUsize>, max: usize, gauge: &IntGauge) -> Option<Slot> {
        let mut now = open.load(Ordering::Relaxed);
        loop {
            if now >= max {
                return None;
            }
            match open.compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    gauge.inc();
                    return Some(Slot(open.clone(), gauge.clone()));
                }
                Err(seen) => now = seen,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.dec();
    }
}

#[async_trait]
impl<A> ServerApp for Guarded<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(_slot) = Slot::take(&self.open, self.limits.max_connections, &self.open_gauge)
        else {
            self.refused.inc();
            refuse(stream).await;
            return None;
        };
        let conn = Box::new(HeaderDeadline::new(stream, self.limits.header_timeout));
        self.http1(conn, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await
    }
}

impl<A> Guarded<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// A connection to a TLS listener: the handshake with `tls`, then HTTP/1
    /// or, when ALPN chose it, HTTP/2.
    pub async fn serve_tls(
        self: &Arc<Self>,
        stream: L4Stream,
        tls: &crate::tls::TlsEndpoint,
        shutdown: &ShutdownWatch,
    ) {
        let Some(_slot) = Slot::take(&self.open, self.limits.max_connections, &self.open_gauge)
        else {
            // A plain-text 503 means nothing to a TLS client, and a handshake
            // is the very work an overloaded gateway cannot afford: close.
            self.refused.inc();
            return;
        };
        let deadline = Instant::now() + self.limits.header_timeout;
        // Boxed, so that the handshake's state is freed once it is done
        // rather than kept in this task for the connection's life.
        let handshake = Box::pin(tls.handshake(stream));
        let Ok(Some(tls_stream)) = tokio::time::timeout_at(deadline, handshake).await else {
            return;
        };
        let h2 = matches!(tls_stream.selected_alpn_proto(), Some(ALPN::H2));
        let conn = Box::new(HeaderDeadline::until(
            Box::new(tls_stream),
            self.limits.header_timeout,
            deadline,
        ));
        if h2 {
            // Pingora's HTTP/2 server: it takes h2 from the ALPN of the TLS
            // digest, which the deadline stream passes through. The h2
            // preface holds a blank line, so the deadline ends with it.
            ServerApp::process_new(&self.inner, conn, shutdown).await;
        } else {
            self.http1(conn, shutdown).await;
        }
    }

    /// The HTTP/1 keep-alive loop of one connection.
    async fn http1(
        self: &Arc<Self>,
        mut conn: Box<HeaderDeadline>,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut stopping = shutdown.clone();
        let mut first = true;
        loop {
            // A stop closes connections idle between requests, but a new
            // connection gets its first request served (within the header
            // deadline): its client may already have sent it, and closing a
            // socket with unread bytes answers it with a reset. That is what
            // lost a request accepted just as a graceful upgrade began.
            let arrived = if first {
                conn.wait_for_request(self.limits.keepalive_timeout).await
            } else {
                if *stopping.borrow() {
                    return None;
                }
                tokio::select! {
                    arrived = conn.wait_for_request(self.limits.keepalive_timeout) => arrived,
                    _ = stopping.changed() => false,
                }
            };
            first = false;
            if !arrived {
                return None;
            }
            let mut session = ServerSession::new_http1(conn);
            match settings.take() {
                Some(kept) => kept.apply_to_session(&mut session),
                None => session.set_keepalive(Some(self.limits.keepalive_timeout.as_secs())),
            }
            if *stopping.borrow() {
                session.set_keepalive(None);
            }
            let (stream, kept) = self
                .inner
                .process_new_http(session, shutdown)
                .await?
                .consume();
            settings = kept;
            // Pingora hands back the stream it was given; it was ours.
            conn = stream.into_any().downcast::<HeaderDeadline>().ok()?;
        }
    }
}

/// How long a refused client may take to finish sending what it sent: reading
/// it before closing keeps the kernel from answering with a reset that can
/// destroy the 503 before the client reads it. Short, because refusing happens
/// exactly when connections are scarce.
const REFUSAL_DRAIN: Duration = Duration::from_millis(200);

async fn refuse(mut stream: Stream) {
    // Refusals come in floods, exactly when the log matters most: one line
    // for the first refusal and then one per thousand.
    static REFUSED: AtomicU64 = AtomicU64::new(0);
    let n = REFUSED.fetch_add(1, Ordering::Relaxed);
    if n % 1000 == 0 {
        log::warn!(
            "open-connection limit reached: {} connections refused with 503 so far",
            n + 1
        );
    }
    let body = crate::error::error_json(503, "too many open connections", "", None);
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n",
        body.len()
    );
    let sent = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.flush().await
    };
    if tokio::time::timeout(REFUSAL_DRAIN, sent).await.is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(REFUSAL_DRAIN, stream.read(&mut sink)).await;
    Shutdown::shutdown(&mut *stream).await;
}

/// Where a connection is in its request cycle, as far as the header deadline
/// is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A header is being received; the deadline runs.
    Header,
    /// The header is complete: the body, the upstream and the answer take the
    /// time they take (bounded by Pingora's own read and write timeouts).
    Request,
    /// Between requests (the keep-alive loop says when); the next byte read
    /// starts the next header.
    Idle,
}

/// The stream Pingora reads requests from, with the header deadline.
#[derive(Debug)]
pub struct HeaderDeadline {
    /// Buffered for writes as Pingora's own listener does (1,460 bytes): an
    /// answer's header and a small body leave in one segment, not two (the
    /// second of which Nagle's algorithm would hold back for an ACK).
    inner: BufWriter<Stream>,
    timeout: Duration,
    phase: Phase,
    deadline: Instant,
    /// Created on the first read that has to wait, dropped when the header is
    /// complete, so an idle keep-alive connection carries no timer.
    timer: Option<Pin<Box<Sleep>>>,
    end: HeaderEnd,
    /// What [`Self::wait_for_request`] read, served to the next reads.
    held: Bytes,
}

impl HeaderDeadline {
    /// The first header's deadline runs from now, the accept.
    pub fn new(inner: Stream, timeout: Duration) -> Self {
        Self::until(inner, timeout, Instant::now() + timeout)
    }

    /// The first header is due by `deadline` (set at the accept, before a
    /// TLS handshake); the next ones each get `timeout`.
    pub fn until(inner: Stream, timeout: Duration, deadline: Instant) -> Self {
        HeaderDeadline {
            inner: BufWriter::with_capacity(DEFAULT_L4_WRITE_BUFFER_SIZE, inner),
            timeout,
            phase: Phase::Header,
            deadline,
            timer: None,
            end: HeaderEnd::default(),
            held: Bytes::new(),
        }
    }

    /// Waits for the first bytes of the next request: until the header
    /// deadline for the first request, then up to `idle`. False when the
    /// client closed, failed or stayed silent too long.
    async fn wait_for_request(&mut self, idle: Duration) -> bool {
        let until = match self.phase {
            Phase::Header => self.deadline,
            _ => {
                // Between requests, whatever the last one did: the next
                // byte starts a header and its deadline.
                self.phase = Phase::Idle;
                Instant::now() + idle
            }
        };
        let read = std::future::poll_fn(|cx| self.poll_fill(cx));
        matches!(tokio::time::timeout_at(until, read).await, Ok(Ok(n)) if n > 0)
    }

    /// Reads what the client sent into `held`. The read buffer is on the
    /// stack of this one poll, so a waiting connection holds none. It is left
    /// uninitialised (`ReadBuf` tracks what the read filled): zeroing it would
    /// cost a 4 KiB memset on every request.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut space = [MaybeUninit::<u8>::uninit(); 4096];
        let mut buf = ReadBuf::uninit(&mut space);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
        let got = buf.filled();
        self.saw(got);
        self.held = Bytes::copy_from_slice(got);
        Poll::Ready(Ok(got.len()))
    }

    /// Follows the bytes Pingora read.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Header;
            self.deadline = Instant::now() + self.timeout;
            self.end = HeaderEnd::default();
        }
        if self.phase == Phase::Header && self.end.feed(bytes) {
            self.phase = Phase::Request;
            self.timer = None;
        }
    }
}

/// Finds the blank line that ends a header: CRLF CRLF, or bare LFs, which
/// the parser also accepts. Blank lines before any text do not count: the
/// parser skips them, and counting them would let a client switch the deadline
/// off with two newlines.
#[derive(Debug, Default)]
struct HeaderEnd {
    seen_text: bool,
    /// 0: inside a line; 1: just after LF; 2: just after LF CR.
    state: u8,
}

impl HeaderEnd {
    /// True once the header is complete.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            match (b, self.state) {
                (b'\n', 1 | 2) if self.seen_text => return true,
                (b'\n', _) => self.state = 1,
                (b'\r', 1) => self.state = 2,
                (b'\r', _) => self.state = 0,
                _ => {
                    self.seen_text = true;
                    self.state = 0;
                }
            }
        }
        false
    }
}

impl AsyncRead for HeaderDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.held.is_empty() {
            let n = this.held.len().min(buf.remaining());
            buf.put_slice(&this.held[..n]);
            this.held.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_pending() && this.phase == Phase::Header {
            let deadline = this.deadline;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
            if timer.as_mut().poll(cx).is_ready() {
                this.timer = None;
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request header not received in time",
                )));
            }
            return Poll::Pending;
        }
        ready!(polled)?;
        let got = buf.filled().len() - before;
        if got > 0 {
            this.saw(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HeaderDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeaderDeadline {
    async fn shutdown(&mut self) {
        // Whatever is still buffered goes out before the write side closes.
        let _ = self.inner.flush().await;
        Shutdown::shutdown(&mut **self.inner.get_mut()).await
    }
}

impl UniqueID for HeaderDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.get_ref().id()
    }
}

impl Ssl for HeaderDeadline {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ref().get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ref().get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.get_ref().selected_alpn_proto()
    }
}

impl GetTimingDigest for HeaderDeadline {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_ref().get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_ref().get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_ref().get_write_pending_time()
    }
}

impl GetProxyDigest for HeaderDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_ref().get_proxy_digest()
    }
}

impl GetSocketDigest for HeaderDeadline {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_ref().get_socket_digest()
    }
}

#[async_trait]
impl Peek for HeaderDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.get_mut().try_peek(buf).await
    }
}

// `IO` has a blanket impl for every type with the traits above.
const _: fn() = || {
    fn is_io<T: IO>() {}
    is_io::<HeaderDeadline>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_end_needs_a_blank_line_after_text() {
        let mut e = HeaderEnd::default();
        assert!(
            !e.feed(b"\r\n\r\n\n\n"),
            "blank lines before the request line"
        );
        assert!(!e.feed(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(e.feed(b"\r\n"));
    }

    #[test]
    fn header_end_found_across_reads_and_with_bare_lf() {
        let mut e = HeaderEnd::default();
        for b in b"GET / HTTP/1.1\r\nHost: a\r\n\r".iter() {
            assert!(!e.feed(&[*b]));
        }
        assert!(e.feed(b"\n"));
        let mut lf = HeaderEnd::default();
        assert!(lf.feed(b"GET / HTTP/1.1\nHost: a\n\n"));
    }

    #[test]
    fn slots_stop_at_the_limit_and_come_back() {
        let open = Arc::new(AtomicUsize::new(0));
        let gauge = IntGauge::new("open", "open").expect("gauge");
        let a = Slot::take(&open, 2, &gauge).expect("first");
        let _b = Slot::take(&open, 2, &gauge).expect("second");
        assert!(Slot::take(&open, 2, &gauge).is_none());
        assert_eq!(gauge.get(), 2);
        drop(a);
        assert_eq!(gauge.get(), 1);
        assert!(Slot::take(&open, 2, &gauge).is_some());
    }
}
