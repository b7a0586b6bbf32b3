//! One hyper HTTP/1.1 server with the limits a server on a venue LAN needs,
//! shared by the UI server ([`crate::transport::http`]) and the OSCQuery
//! server (`rig::oscquery`).
//!
//! hyper (1.x, HTTP/1.1 only) is driven by a tokio current-thread runtime on
//! the server's one thread: no hand-written HTTP parsing, and every
//! connection is a task, so a slow or silent client holds a task, never the
//! thread. [`Limits`] bound the request head (size, header count, and a
//! deadline for it, which also bounds keep-alive idle time), requests per
//! connection, a lifetime per connection, and connections in all and per
//! address. Request bodies are never read (handlers look at the head only),
//! so a declared `Content-Length` costs nothing; hyper closes a connection
//! whose body was not read instead of draining it. With every place taken,
//! a newcomer is served and the oldest connection of the address holding
//! the most (at least two more than the newcomer's) is closed, so a few
//! addresses holding every connection open cannot keep anyone out. When
//! shares are even already, a newcomer from an address that holds none is
//! served over the cap (at most [`SPARE`] of them; more wait in the
//! kernel's backlog) and one from an address that holds some is closed at
//! once. Accepting never stops while places can be made, so connections
//! re-opened by a few addresses cannot queue ahead of an honest client in
//! the backlog. When the process is out of file descriptors, accepting
//! backs off and resumes.
//!
//! Connections may be upgraded (the OSCQuery server's WebSocket): the
//! handler answers 101 and takes the socket with `hyper::upgrade::on`; the
//! connection's slot is given back once hyper lets go of it.

use crate::transport::pace::Paced;
use crate::transport::places::{Conns, Flags, Taken, WhenFull};
use bytes::Bytes;
use http_body_util::channel::Channel;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the accept loop looks at the stop flag when it has no stop fd
/// to wait on (with one, a stop ends its wait and it never ticks).
const STOP_POLL: Duration = Duration::from_millis(200);
/// A stall watch woken this much later than due means the process was
/// stopped meanwhile.
const FROZEN: Duration = Duration::from_secs(2);
/// Most bytes hyper buffers for one connection.
const MAX_BUF: usize = 16 * 1024;
/// Connections served over [`Limits::max_connections`]: those asked to
/// make room that have not gone yet, and newcomers from addresses holding
/// none when every share is even. More wait in the kernel's backlog.
pub const SPARE: usize = 4;
/// Refused connections answered at once (503, then the request read and
/// thrown away so that closing does not reset the answer away); more are
/// closed without one. Each is a file descriptor held for at most
/// [`REFUSAL_LINGER`].
const MAX_REFUSALS: usize = 16;
/// Longest a refused connection is kept to answer it.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Most bytes read from a refused connection.
const REFUSAL_READ: usize = 16 * 1024;

/// A response body: a small answer in memory, or a file streamed through
/// a bounded channel (a recording download). A connection still
/// streaming one when its [`Limits::lifetime`] ends may live for
/// [`Limits::stream_lifetime`].
pub type Body = Either<Full<Bytes>, Channel<Bytes, std::io::Error>>;

/// What one server allows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections at once (up to [`SPARE`] more while some are asked to
    /// make room, or when shares are even); more wait in the kernel's
    /// backlog.
    pub max_connections: usize,
    /// Connections from one address (loopback excepted; an IPv6 /64 is one
    /// address); more are closed.
    pub max_per_ip: usize,
    /// Longest wait for a whole request head, and for the next one on a
    /// kept-alive connection.
    pub header_timeout: Duration,
    /// Longest a connection lives.
    pub lifetime: Duration,
    /// Longest a connection lives when it is still streaming an answer at
    /// the end of its `lifetime`.
    pub stream_lifetime: Duration,
    /// Longest a streamed answer may wait for its client to take more of
    /// it (hyper stops asking the body while the socket is full); then the
    /// connection is closed.
    pub stream_stall: Duration,
    /// Largest request head (request line and headers); more: 431.
    pub max_header_bytes: usize,
    /// Most request headers; more: 431.
    pub max_headers: usize,
    /// Requests on one kept-alive connection; the handler is told which is
    /// the last (it answers with `Connection: close`).
    pub max_requests: u32,
    /// Requests a second one address may make over all its connections
    /// after a burst of [`Limits::request_burst`] (loopback excepted); more
    /// wait their turn ([`crate::transport::pace`]).
    pub requests_per_s: u32,
    /// Requests one address may make at once.
    pub request_burst: u32,
}

/// What answers requests. Built on the server's thread, so it may hold
/// `Rc`/`RefCell` state.
pub trait Handler: 'static {
    /// The response to `req` from `peer`; `last` is true for the last
    /// request this connection may make. Runs inside the server's
    /// `LocalSet`, so it may spawn local tasks (an upgrade).
    fn respond(&self, req: Request<Incoming>, peer: SocketAddr, last: bool) -> Response<Body>;
}

/// A response with the headers every answer of these servers carries:
/// its type, `nosniff`, `no-cache`, `Allow` on 405, and `Connection: close`
/// on the connection's `last` request and on client errors other than 404
/// (a client that sent something wrong gets no second try on it).
pub fn response(
    status: StatusCode,
    ctype: &'static str,
    body: Bytes,
    last: bool,
) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(body)));
    *r.status_mut() = status;
    let hs = r.headers_mut();
    hs.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    hs.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        hs.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    if last || status.is_client_error() && status != StatusCode::NOT_FOUND {
        hs.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Start a server thread named `thread` on a bound listener. `make` builds
/// the handler on that thread. `name` prefixes the log lines. The server
/// ends when `stop` is set; with `stop_fd` (fired with it) it sleeps until
/// a connection or the stop, else it looks at the flag every 200 ms.
pub fn spawn<H, F>(
    thread: &str,
    name: &'static str,
    listener: std::net::TcpListener,
    limits: Limits,
    stop: Arc<AtomicBool>,
    stop_fd: Option<crate::rt::StopFd>,
    make: F,
) -> std::io::Result<JoinHandle<()>>
where
    H: Handler,
    F: FnOnce() -> H + Send + 'static,
{
    listener.set_nonblocking(true)?;
    // Built here, so that a runtime that cannot start (no file descriptor
    // left for its epoll) fails the start as a listener that cannot bind
    // does, and systemd restarts phase4: built on the thread, it logged one
    // error and the UI was gone for the whole run while READY, STATUS and
    // the watchdog said all was well (tester ag AG2).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("{name}: cannot start its runtime: {e}"))
        })?;
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name(thread.into())
        .spawn(move || {
            let handler = Rc::new(make());
            let local = tokio::task::LocalSet::new();
            let stopped = Stopped::new(stop, stop_fd);
            local.block_on(&rt, serve(name, listener, limits, handler, stopped));
        })
}

/// The accept loop's stop: the flag, and what ends its waits.
struct Stopped {
    flag: Arc<AtomicBool>,
    fd: Option<crate::rt::StopFd>,
}

impl Stopped {
    fn new(flag: Arc<AtomicBool>, fd: Option<crate::rt::StopFd>) -> Self {
        Stopped { flag, fd }
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Returns once the stop fd fired (then the loop looks at the flag),
    /// or after [`STOP_POLL`] without one.
    async fn wait(&self) {
        match &self.fd {
            Some(fd) => fd.fired().await,
            None => tokio::time::sleep(STOP_POLL).await,
        }
    }
}

async fn serve<H: Handler>(
    name: &'static str,
    listener: std::net::TcpListener,
    limits: Limits,
    handler: Rc<H>,
    stop: Stopped,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{name}: cannot serve: {e}");
            return;
        }
    };
    let conns = Rc::new(Conns::default());
    let pace = Rc::new(Paced::new(name, &limits));
    let refusals = Refusals::default();
    let mut backoff = Duration::from_millis(50);
    let mut fd_warnings = crate::service::logging::RateLimit::new(Duration::from_secs(30));
    while !stop.is_set() {
        // Over the cap and its spare (connections asked to make room have
        // not gone yet, or first connections wait for a place): clients
        // wait in the backlog rather than holding a file descriptor each.
        if conns.total() >= limits.max_connections + SPARE {
            tokio::select! {
                _ = conns.freed.notified() => {}
                _ = stop.wait() => {}
            }
            continue;
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: the connection stays in the backlog;
                // try again later instead of spinning on it.
                if let Some(held) = fd_warnings.allow() {
                    log::warn!(
                        "{name}: cannot accept: {e}; pausing for {} ms ({held} similar message(s) suppressed)",
                        backoff.as_millis()
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let ip = peer.ip().to_canonical();
        if conns.total() >= limits.max_connections {
            match conns.when_full(ip) {
                WhenFull::MadeRoom => crate::peer_log!(
                    log::Level::Info,
                    "{name}: {} connections open: closing one of the address holding the most (its oldest not downloading), for {peer}",
                    limits.max_connections
                ),
                WhenFull::Spare => {}
                WhenFull::Refuse => {
                    crate::peer_log!(
                        log::Level::Info,
                        "{name}: closing {peer}: {} connections open, and its address holds as many as any other",
                        limits.max_connections
                    );
                    refusals.refuse(stream, "every connection is taken; try again shortly");
                    continue;
                }
            }
        }
        let Some(Taken { slot, close, flags }) = conns.take(ip, limits.max_per_ip) else {
            crate::peer_log!(
                log::Level::Info,
                "{name}: closing {peer}: {} connections from it already",
                limits.max_per_ip
            );
            refusals.refuse(stream, "too many connections from this address");
            continue;
        };
        let handler = handler.clone();
        let pace = pace.clone();
        tokio::task::spawn_local(async move {
            tokio::select! {
                _ = connection(name, stream, peer, limits, handler, flags, pace) => {}
                _ = close.notified() => log::debug!("{name}: {peer}: closed to make room"),
            }
            drop(slot);
        });
    }
}

async fn connection<H: Handler>(
    name: &'static str,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    limits: Limits,
    handler: Rc<H>,
    flags: Flags,
    pace: Rc<Paced>,
) {
    let _ = stream.set_nodelay(true);
    let Flags {
        streaming,
        answering,
    } = flags;
    let served = Rc::new(Cell::new(0u32));
    let flag = streaming.clone();
    let progress = Rc::new(Progress::default());
    let moved = progress.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let n = served.get() + 1;
        served.set(n);
        let wait = pace.wait(peer);
        let handler = handler.clone();
        let flag = flag.clone();
        let moved = moved.clone();
        let busy = answering.clone();
        async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            // Answered from here: not a place to take back (`Conns::take`)
            // until its answer is sent (`Served`'s drop). Not while it
            // waits for its address's turn (review z: a guest that kept a
            // request waiting on each of its 16 connections kept the rest
            // of its /64 out).
            busy.set(true);
            let resp = handler
                .respond(req, peer, n >= limits.max_requests)
                .map(|body| Served::new(body, &flag, &moved, busy));
            Ok::<_, Infallible>(resp)
        }
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(MAX_BUF)
        .keep_alive(true);
    let conn = b
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let lived = async {
        match tokio::time::timeout(limits.lifetime, &mut conn).await {
            Err(_) if streaming.get() => {
                let more = limits.stream_lifetime.saturating_sub(limits.lifetime);
                tokio::time::timeout(more, &mut conn).await
            }
            r => r,
        }
    };
    // A download whose client stopped reading: hyper waits on the full
    // socket and asks the body for nothing; without this the connection
    // (its place, its buffers) was held until `stream_lifetime`, 20
    // minutes, long after the download itself gave up. The watch sleeps
    // until a download starts, then wakes once per `stream_stall` at most:
    // an idle or small-answer connection never wakes for it.
    let stalled = async {
        let mut slept_until = None;
        loop {
            if !streaming.get() {
                progress.started.notified().await;
                slept_until = None;
                continue;
            }
            let due = progress.last.get() + limits.stream_stall;
            let now = Instant::now();
            if now >= due {
                if slept_until.is_some_and(|s: Instant| now > s + FROZEN) {
                    // Woken long after it was due: this process was
                    // stopped (SIGSTOP, a frozen cgroup, a paused VM) and
                    // sent nothing meanwhile. A fresh period from now.
                    progress.last.set(now);
                    slept_until = None;
                    continue;
                }
                return;
            }
            slept_until = Some(due);
            tokio::time::sleep_until(due.into()).await;
        }
    };
    tokio::select! {
        result = lived => match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::debug!("{name}: {peer}: {e}"),
            Err(_) => log::debug!("{name}: {peer}: connection lifetime reached"),
        },
        // A peer can cause this as often as it holds downloads open.
        () = stalled => crate::peer_log!(
            log::Level::Info,
            "{name}: closing {peer}: its download took nothing for {} s",
            limits.stream_stall.as_secs()
        ),
    }
}

/// Connections refused at accept, answered `503` rather than reset (a
/// browser shows the answer; a reset reads as a broken network). The
/// answer is written without reading the request (a refusal is decided by
/// the address alone), then the request is read and dropped until the
/// client closes, its head ends, [`REFUSAL_READ`] bytes or
/// [`REFUSAL_LINGER`], whichever is first: closing a socket with unread
/// bytes sends a reset, which can discard the answer before the client
/// reads it. At most [`MAX_REFUSALS`] are answered at once; under a flood
/// the rest are closed as before.
#[derive(Default)]
struct Refusals {
    answering: Rc<Cell<usize>>,
}

impl Refusals {
    fn refuse(&self, stream: tokio::net::TcpStream, why: &'static str) {
        if self.answering.get() >= MAX_REFUSALS {
            return;
        }
        self.answering.set(self.answering.get() + 1);
        let answering = self.answering.clone();
        tokio::task::spawn_local(async move {
            let _ = tokio::time::timeout(REFUSAL_LINGER, answer_refused(&stream, why)).await;
            answering.set(answering.get() - 1);
        });
    }
}

/// The whole `503` answer to a refused connection.
fn refusal(why: &str) -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: 5\r\nCache-Control: no-cache\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n{why}\n",
        why.len() + 1
    )
}

async fn answer_refused(stream: &tokio::net::TcpStream, why: &str) -> std::io::Result<()> {
    let answer = refusal(why);
    let mut left = answer.as_bytes();
    while !left.is_empty() {
        stream.writable().await?;
        match stream.try_write(left) {
            Ok(n) => left = &left[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    use std::os::fd::AsRawFd;
    nix::sys::socket::shutdown(stream.as_raw_fd(), nix::sys::socket::Shutdown::Write)?;
    let mut buf = [0u8; 2048];
    let (mut read, mut tail) = (0, 0u32);
    while read < REFUSAL_READ {
        stream.readable().await?;
        let n = match stream.try_read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        read += n;
        for &b in &buf[..n] {
            tail = tail << 8 | u32::from(b);
            if tail == u32::from_be_bytes(*b"\r\n\r\n") {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A response body as hyper sends it. A stream's (a download's) sets its
/// connection's streaming flag and clears it when hyper drops it: once it
/// is sent to the end, or the connection is gone. So a keep-alive
/// connection that has finished a download is an idle one again, both for
/// the room-making and for its lifetime ([`Limits::stream_lifetime`]
/// applies only while a download is under way). (Set once and never
/// cleared, a finished download's connection was kept in place of an idle
/// one until its idle limit closed it.)
struct Served {
    body: Body,
    streaming: Option<Rc<Cell<bool>>>,
    progress: Rc<Progress>,
    /// The connection's `answering` flag, cleared when this is dropped.
    answering: Rc<Cell<bool>>,
}

/// How a connection's answers are getting on, for its stall watch.
struct Progress {
    /// When hyper last took a frame of an answer (or one was made).
    last: Cell<Instant>,
    /// Told when a download starts (a permit is kept if the watch is not
    /// waiting yet, so none is missed).
    started: tokio::sync::Notify,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            last: Cell::new(Instant::now()),
            started: tokio::sync::Notify::new(),
        }
    }
}

impl Served {
    fn new(
        body: Body,
        flag: &Rc<Cell<bool>>,
        progress: &Rc<Progress>,
        answering: Rc<Cell<bool>>,
    ) -> Self {
        progress.last.set(Instant::now());
        let streaming = matches!(body, Either::Right(_)).then(|| {
            flag.set(true);
            progress.started.notify_one();
            flag.clone()
        });
        Served {
            body,
            streaming,
            progress: progress.clone(),
            answering,
        }
    }
}

impl hyper::body::Body for Served {
    type Data = Bytes;
    type Error = <Body as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let frame = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(_))) = &frame {
            self.progress.last.set(Instant::now());
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(flag) = &self.streaming {
            flag.set(false);
        }
        self.answering.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_streams_only_while_its_download_s_body_lives() {
        let flag = Rc::new(Cell::new(false));
        let progress = Rc::new(Progress::default());
        let answering = Rc::new(Cell::new(true));
        let small = Served::new(
            Either::Left(Full::new(Bytes::from_static(b"ok"))),
            &flag,
            &progress,
            answering.clone(),
        );
        assert!(!flag.get(), "a small answer is not a download");
        assert!(answering.get());
        drop(small);
        // Its answer sent: the connection waits for a request again.
        assert!(!answering.get());
        answering.set(true);
        let (tx, body) = Channel::<Bytes, std::io::Error>::new(1);
        let download = Served::new(Either::Right(body), &flag, &progress, answering.clone());
        assert!(flag.get());
        drop(tx);
        // Sent to its end: hyper drops it, and the connection is idle again.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let frames = rt.block_on(http_body_util::BodyExt::collect(download));
        assert!(frames.is_ok());
        assert!(!flag.get());
        assert!(!answering.get());
    }
}
