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

use crate::transport::pace::Pace;
use crate::transport::ws::registry::peer_key;
use bytes::Bytes;
use http_body_util::channel::Channel;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the accept loop looks at the stop flag when it has no stop fd
/// to wait on (with one, a stop ends its wait and it never ticks).
const STOP_POLL: Duration = Duration::from_millis(200);
/// Most bytes hyper buffers for one connection.
const MAX_BUF: usize = 16 * 1024;
/// Connections served over [`Limits::max_connections`]: those asked to
/// make room that have not gone yet, and newcomers from addresses holding
/// none when every share is even. More wait in the kernel's backlog.
pub const SPARE: usize = 4;

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
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name(thread.into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    log::error!("{name}: cannot start: {e}");
                    return;
                }
            };
            let handler = Rc::new(make());
            let local = tokio::task::LocalSet::new();
            let stopped = Stopped::new(stop, stop_fd);
            local.block_on(&rt, serve(name, listener, limits, handler, stopped));
        })
}

/// Open connections, per address ([`peer_key`]: an IPv6 host by its /64),
/// oldest first, each with the signal that asks it to close and whether it
/// is streaming a download.
#[derive(Default)]
struct Conns {
    inner: RefCell<ConnsInner>,
    /// Fired when a connection ends.
    freed: tokio::sync::Notify,
}

#[derive(Default)]
struct ConnsInner {
    total: usize,
    next_id: u64,
    per_ip: HashMap<IpAddr, Vec<Place>>,
}

/// One open connection, as [`Conns`] sees it.
struct Place {
    id: u64,
    /// Asks the connection to close.
    close: Rc<tokio::sync::Notify>,
    /// Set while it answers with a stream (a download, until its body is
    /// sent or dropped: [`Served`]): cutting it costs its client the rest
    /// of the file, where an idle keep-alive connection costs nothing.
    streaming: Rc<Cell<bool>>,
}

/// What a connection gets with its place: the place itself, what asks it
/// to close, and where it says that it is streaming.
type Taken = (Slot, Rc<tokio::sync::Notify>, Rc<Cell<bool>>);

/// One connection's place in [`Conns`], given back when it is dropped.
struct Slot {
    conns: Rc<Conns>,
    key: IpAddr,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.conns.inner.borrow_mut();
        t.total -= 1;
        if let Some(v) = t.per_ip.get_mut(&self.key) {
            v.retain(|p| p.id != self.id);
            if v.is_empty() {
                t.per_ip.remove(&self.key);
            }
        }
        drop(t);
        self.conns.freed.notify_one();
    }
}

impl Conns {
    fn total(&self) -> usize {
        self.inner.borrow().total
    }

    fn held_by(&self, key: &IpAddr) -> usize {
        self.inner.borrow().per_ip.get(key).map_or(0, Vec::len)
    }

    /// A place for a connection from `ip`, what asks it to close and its
    /// streaming flag; `None` when `ip` already has `max_per_ip` (loopback
    /// excepted).
    fn take(self: &Rc<Self>, ip: IpAddr, max_per_ip: usize) -> Option<Taken> {
        let key = peer_key(ip);
        let mut t = self.inner.borrow_mut();
        let id = t.next_id;
        let v = t.per_ip.entry(key).or_default();
        if !ip.is_loopback() && v.len() >= max_per_ip {
            if v.is_empty() {
                t.per_ip.remove(&key);
            }
            return None;
        }
        let close = Rc::new(tokio::sync::Notify::new());
        let streaming = Rc::new(Cell::new(false));
        v.push(Place {
            id,
            close: close.clone(),
            streaming: streaming.clone(),
        });
        t.next_id += 1;
        t.total += 1;
        let slot = Slot {
            conns: self.clone(),
            key,
            id,
        };
        Some((slot, close, streaming))
    }

    /// Every place is taken and a connection from `ip` waits: ask a
    /// connection of the address holding the most to close, if it holds at
    /// least two more than `ip` (so each address's share evens out: a few
    /// addresses holding every connection open cannot keep a newcomer
    /// out): its oldest that is not streaming a download, or its oldest
    /// if all are. Whether one was asked.
    fn make_room_for(&self, ip: IpAddr) -> bool {
        let mine = self.held_by(&peer_key(ip));
        let t = self.inner.borrow();
        let Some(hog) = t.per_ip.values().max_by_key(|v| v.len()) else {
            return false;
        };
        if hog.len() < mine + 2 {
            return false;
        }
        let victim = hog.iter().find(|p| !p.streaming.get()).unwrap_or(&hog[0]);
        victim.close.notify_one();
        true
    }

    /// What becomes of a newcomer from `ip` when every place is taken.
    fn when_full(&self, ip: IpAddr) -> WhenFull {
        if self.make_room_for(ip) {
            WhenFull::MadeRoom
        } else if ip.is_loopback() || self.held_by(&peer_key(ip)) == 0 {
            // Loopback (a reverse proxy on the box brings everyone from
            // there) and a first connection wait for a place, served over
            // the cap.
            WhenFull::Spare
        } else {
            WhenFull::Refuse
        }
    }
}

/// See [`Conns::when_full`].
#[derive(Debug, PartialEq)]
enum WhenFull {
    /// The address holding the most was asked to give one back.
    MadeRoom,
    /// Served over the cap, within [`SPARE`].
    Spare,
    /// The newcomer's address already holds about as many as any other:
    /// closed at once, rather than left in the backlog ahead of others.
    Refuse,
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
                    continue;
                }
            }
        }
        let Some((slot, close, streaming)) = conns.take(ip, limits.max_per_ip) else {
            crate::peer_log!(
                log::Level::Info,
                "{name}: closing {peer}: {} connections from it already",
                limits.max_per_ip
            );
            continue;
        };
        let handler = handler.clone();
        let pace = pace.clone();
        tokio::task::spawn_local(async move {
            tokio::select! {
                _ = connection(name, stream, peer, limits, handler, streaming, pace) => {}
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
    streaming: Rc<Cell<bool>>,
    pace: Rc<Paced>,
) {
    let _ = stream.set_nodelay(true);
    let served = Rc::new(Cell::new(0u32));
    let flag = streaming.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let n = served.get() + 1;
        served.set(n);
        let wait = pace.wait(peer);
        let handler = handler.clone();
        let flag = flag.clone();
        async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            let resp = handler
                .respond(req, peer, n >= limits.max_requests)
                .map(|body| Served::new(body, &flag));
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
    let result = match tokio::time::timeout(limits.lifetime, &mut conn).await {
        Err(_) if streaming.get() => {
            let more = limits.stream_lifetime.saturating_sub(limits.lifetime);
            tokio::time::timeout(more, &mut conn).await
        }
        r => r,
    };
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug!("{name}: {peer}: {e}"),
        Err(_) => log::debug!("{name}: {peer}: connection lifetime reached"),
    }
}

/// A server's [`Pace`], with a log line now and then while it makes
/// someone wait.
struct Paced {
    name: &'static str,
    pace: RefCell<Pace>,
    per_s: u32,
    said: RefCell<crate::service::logging::RateLimit>,
}

impl Paced {
    fn new(name: &'static str, limits: &Limits) -> Self {
        Paced {
            name,
            pace: RefCell::new(Pace::new(limits.requests_per_s, limits.request_burst)),
            per_s: limits.requests_per_s,
            said: RefCell::new(crate::service::logging::RateLimit::new(
                Duration::from_secs(30),
            )),
        }
    }

    /// How long a request from `peer` waits; `None` within its rate (and
    /// always on loopback: a reverse proxy on the box brings everyone).
    fn wait(&self, peer: SocketAddr) -> Option<Duration> {
        let ip = peer.ip().to_canonical();
        if ip.is_loopback() {
            return None;
        }
        let wait = self
            .pace
            .borrow_mut()
            .admit(peer_key(ip), std::time::Instant::now());
        if wait.is_zero() {
            return None;
        }
        if let Some(held) = self.said.borrow_mut().allow() {
            log::info!(
                "{}: {peer} asks more than {} times a second: its requests wait their turn ({held} similar message(s) suppressed)",
                self.name,
                self.per_s
            );
        }
        Some(wait)
    }
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
}

impl Served {
    fn new(body: Body, flag: &Rc<Cell<bool>>) -> Self {
        let streaming = matches!(body, Either::Right(_)).then(|| {
            flag.set(true);
            flag.clone()
        });
        Served { body, streaming }
    }
}

impl hyper::body::Body for Served {
    type Data = Bytes;
    type Error = <Body as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_server_makes_room_from_the_address_holding_the_most() {
        let conns = Rc::new(Conns::default());
        let hog: IpAddr = "10.9.0.2".parse().unwrap();
        let other: IpAddr = "10.9.0.3".parse().unwrap();
        let newcomer: IpAddr = "10.9.0.9".parse().unwrap();
        let mut held: Vec<_> = (0..3).map(|_| conns.take(hog, 16).unwrap()).collect();
        held.push(conns.take(other, 16).unwrap());
        assert_eq!(conns.total(), 4);
        // The hog's oldest connection is asked to close, no other.
        assert!(conns.make_room_for(newcomer));
        let asked = |i: usize| {
            let n = held[i].1.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        assert!(asked(0), "the oldest of the address holding the most");
        assert!(!asked(1) && !asked(2) && !asked(3));
        // Shares even out: an address does not take from one holding
        // only one more than itself.
        held.remove(0);
        held.push(conns.take(newcomer, 16).unwrap());
        assert!(!conns.make_room_for(other), "2 against 1: even enough");
        // Shares even: an address holding some is refused at once.
        assert_eq!(conns.when_full(other), WhenFull::Refuse);
        // Every address holds one: a first connection from a new address
        // (or one from loopback) is served over the cap.
        let even = Rc::new(Conns::default());
        let _one: Vec<_> = [hog, other, newcomer]
            .iter()
            .map(|ip| even.take(*ip, 16).unwrap())
            .collect();
        assert_eq!(even.when_full(hog), WhenFull::Refuse);
        assert_eq!(
            even.when_full("10.9.0.77".parse().unwrap()),
            WhenFull::Spare
        );
        assert_eq!(
            even.when_full("127.0.0.1".parse().unwrap()),
            WhenFull::Spare
        );
        // The per-address cap still holds; an IPv6 /64 is one address.
        let v6 = |i: u16| IpAddr::from([0xfd00, 0, 0, 1, 0, 0, 0, i]);
        assert!(conns.take(v6(1), 1).is_some_and(|s| {
            held.push(s);
            true
        }));
        assert!(conns.take(v6(2), 1).is_none());
        drop(held);
        assert_eq!(conns.total(), 0);
        assert!(conns.inner.borrow().per_ip.is_empty());
    }

    #[test]
    fn room_is_made_from_an_idle_connection_before_a_download() {
        let conns = Rc::new(Conns::default());
        let hog: IpAddr = "10.9.0.2".parse().unwrap();
        let newcomer: IpAddr = "10.9.0.9".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| conns.take(hog, 16).unwrap()).collect();
        let asked = |i: usize| {
            let n = held[i].1.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        // The oldest two are downloading: the third, idle, goes.
        held[0].2.set(true);
        held[1].2.set(true);
        assert!(conns.make_room_for(newcomer));
        assert!(!asked(0) && !asked(1) && asked(2));
        // All downloading: the oldest goes.
        held[2].2.set(true);
        assert!(conns.make_room_for(newcomer));
        assert!(asked(0) && !asked(1) && !asked(2));
    }

    #[test]
    fn a_connection_streams_only_while_its_download_s_body_lives() {
        let flag = Rc::new(Cell::new(false));
        let small = Served::new(Either::Left(Full::new(Bytes::from_static(b"ok"))), &flag);
        assert!(!flag.get(), "a small answer is not a download");
        drop(small);
        let (tx, body) = Channel::<Bytes, std::io::Error>::new(1);
        let download = Served::new(Either::Right(body), &flag);
        assert!(flag.get());
        drop(tx);
        // Sent to its end: hyper drops it, and the connection is idle again.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let frames = rt.block_on(http_body_util::BodyExt::collect(download));
        assert!(frames.is_ok());
        assert!(!flag.get());
    }
}
