//! Accepting connections and running WebSocket handshakes (`p4-ws-accept`).
//!
//! One thread, no thread per connection: handshakes run on non-blocking
//! sockets in a `poll()` loop, each under a whole deadline
//! ([`HANDSHAKE_DEADLINE`], not a per-read timeout) and a byte budget
//! ([`HANDSHAKE_BYTES`]). Handshakes in progress are capped
//! ([`MAX_PENDING`] in all, [`MAX_PENDING_PER_IP`] per address, an IPv6
//! host by its /64); when an address is at its cap its own oldest handshake
//! is dropped, and when all are taken the oldest of the address holding the
//! most, so clients that trickle one header byte at a time cannot lock out
//! a client that sends its request at once. Connected clients are counted in a [`Registry`] shared with the
//! broadcaster: over `ws.max-clients` (or `ws.max-clients-per-ip` from one
//! address, an IPv6 host by its /64) the handshake is answered with 503, and
//! clients without the token never take the last quarter of the places
//! ([`kept_places`](super::registry::kept_places)), so watchers from a few addresses cannot lock out the
//! operator.
//!
//! The handshake is also where the trust checks happen: the Host header
//! must name this box and a browser Origin must be the UI's own (see
//! [`crate::transport::hosts`]); a client is authorized when it is on the
//! loopback interface (`ws.trust-loopback`) or passes `?token=`. Wrong
//! tokens spend a budget per address that outlives connections
//! ([`Registry::check_token`]): past it, `?token=` is answered with 429
//! without being checked.
//!
//! When the process runs out of file descriptors, accepting backs off
//! instead of spinning.

use super::conn::Conn;
use super::guesses::too_many_guesses;
use super::registry::{canonical_ip, peer_key, Registry};
use crate::control::secret::Secret;
use crate::transport::hosts::{single_header, HostCheck};
use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::http::header::{ORIGIN, SEC_WEBSOCKET_KEY};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::WebSocket;

/// Longest a whole handshake may take, from accept to the last byte of the
/// response.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(3);
/// Most bytes a handshake request may have.
pub const HANDSHAKE_BYTES: usize = 16 * 1024;
/// Most handshakes in progress.
pub const MAX_PENDING: usize = 64;
/// Most handshakes in progress from one address (loopback excepted).
pub const MAX_PENDING_PER_IP: usize = 8;
/// Most connections accepted per wake-up.
const ACCEPT_BURST: usize = 16;
/// Longest single poll() of the acceptor (a pending handshake's deadline
/// or the end of an accept pause cuts it shorter; a stop ends it at once).
const MAX_WAIT: Duration = Duration::from_secs(10);

/// A client that completed its handshake.
pub struct Accepted {
    /// The socket (the broadcaster makes it non-blocking).
    pub ws: WebSocket<Conn>,
    /// It may change settings (loopback, or the right `?token=`); also
    /// whether its place is a privileged one ([`Registry::admit`]).
    pub authorized: bool,
    /// Its address.
    pub peer: SocketAddr,
}

/// What the acceptor checks.
pub struct Policy {
    /// The control secret.
    pub secret: Secret,
    /// Loopback clients are authorized without the secret.
    pub trust_loopback: bool,
    /// Port the UI is served on (its Origin is allowed).
    pub http_port: u16,
    /// Further allowed Origins.
    pub allowed_origins: Vec<String>,
    /// The names of this box.
    pub hosts: HostCheck,
    /// Most connected clients.
    pub max_clients: usize,
    /// Most connected clients from one address (loopback excepted).
    pub max_clients_per_ip: usize,
    /// tungstenite limits.
    pub ws_config: WebSocketConfig,
}

/// The `token` query parameter of a request URI.
pub fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (hex, b[i]) {
            (Some(v), _) => {
                out.push(v);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, c) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Everything the handshake callbacks need.
struct Shared {
    policy: RefCell<Policy>,
    registry: Arc<Registry>,
}

/// The handshake callback: checks Host, Origin and the caps, and decides
/// whether the client may change settings.
struct Gate {
    shared: Rc<Shared>,
    peer: SocketAddr,
    /// Set once the client was counted in the registry: whether it is
    /// authorized.
    admitted: Rc<Cell<Option<bool>>>,
}

fn refuse(status: u16, why: String) -> ErrorResponse {
    let mut e = ErrorResponse::new(Some(format!("{why}\n")));
    *e.status_mut() = tungstenite::http::StatusCode::from_u16(status)
        .unwrap_or(tungstenite::http::StatusCode::FORBIDDEN);
    e
}

impl Callback for Gate {
    fn on_request(self, req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
        let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
        let mut p = self.shared.policy.borrow_mut();
        let policy = &mut *p;
        if let Err(why) = policy
            .hosts
            .allowed_host(crate::transport::hosts::host_header(req.headers()))
        {
            crate::peer_log!(log::Level::Info, "ws: refusing {}: {why}", self.peer);
            return Err(refuse(403, why));
        }
        if req.uri().authority().is_some() {
            // absolute-form: its authority would bypass the Host check.
            crate::peer_log!(
                log::Level::Info,
                "ws: refusing {}: absolute-form request",
                self.peer
            );
            return Err(refuse(400, "absolute-form requests are not served".into()));
        }
        if single_header(req.headers(), SEC_WEBSOCKET_KEY).is_err() {
            crate::peer_log!(
                log::Level::Info,
                "ws: refusing {}: two Sec-WebSocket-Key headers",
                self.peer
            );
            return Err(refuse(400, "bad WebSocket handshake".into()));
        }
        let origin = single_header(req.headers(), ORIGIN);
        if !origin.is_ok_and(|o| {
            policy
                .hosts
                .origin_allowed(o, policy.http_port, &policy.allowed_origins)
        }) {
            crate::peer_log!(
                log::Level::Info,
                "ws: refusing {}: origin {:?} not allowed",
                self.peer,
                header("origin").map(crate::control::device::shorten)
            );
            return Err(refuse(403, "origin not allowed".into()));
        }
        let ip = canonical_ip(&self.peer);
        let trusted = policy.trust_loopback && ip.is_loopback();
        let token = query_token(req.uri().query()).filter(|_| !trusted);
        let token_ok = match token {
            None => false,
            Some(t) => match self
                .shared
                .registry
                .check_token(ip, Instant::now(), || policy.secret.matches(&t))
            {
                Ok(ok) => {
                    if !ok {
                        crate::peer_log!(
                            log::Level::Warn,
                            "ws: {} connected with a wrong control token (?token=); admitted watch-only",
                            self.peer
                        );
                    }
                    ok
                }
                Err(wait) => {
                    let why = too_many_guesses(wait);
                    crate::peer_log!(log::Level::Warn, "ws: refusing {}: {why}", self.peer);
                    return Err(refuse(429, why));
                }
            },
        };
        let privileged = trusted || token_ok;
        if let Err(why) = self.shared.registry.admit(
            ip,
            privileged,
            policy.max_clients,
            policy.max_clients_per_ip,
        ) {
            crate::peer_log!(log::Level::Warn, "ws: refusing {}: {why}", self.peer);
            return Err(refuse(503, why));
        }
        self.admitted.set(Some(privileged));
        Ok(resp)
    }
}

type Handshake = MidHandshake<ServerHandshake<Conn, Gate>>;

struct Pending {
    mid: Handshake,
    peer: SocketAddr,
    deadline: Instant,
    admitted: Rc<Cell<Option<bool>>>,
}

/// Start the acceptor on a bound listener. Handshaken clients go to
/// `accepted`.
pub fn spawn(
    listener: TcpListener,
    policy: Policy,
    registry: Arc<Registry>,
    accepted: Sender<Accepted>,
    broadcaster: Arc<crate::rt::Wake>,
    stop: Arc<AtomicBool>,
    stop_fd: crate::rt::StopFd,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-ws-accept".into())
        .spawn(move || {
            let mut a = Acceptor {
                listener,
                shared: Rc::new(Shared {
                    policy: RefCell::new(policy),
                    registry,
                }),
                accepted,
                broadcaster,
                stop_fd,
                pending: Vec::new(),
                paused_until: None,
                backoff: Duration::from_millis(50),
                fd_warnings: crate::service::logging::RateLimit::new(Duration::from_secs(30)),
            };
            while !stop.load(Ordering::Relaxed) {
                a.turn();
            }
        })
}

struct Acceptor {
    listener: TcpListener,
    shared: Rc<Shared>,
    accepted: Sender<Accepted>,
    /// Woken for each new client (it parks while it has none).
    broadcaster: Arc<crate::rt::Wake>,
    /// In every poll(): a stop ends the wait (no periodic wake-up).
    stop_fd: crate::rt::StopFd,
    pending: Vec<Pending>,
    /// Accepting is paused (out of file descriptors) until then.
    paused_until: Option<Instant>,
    backoff: Duration,
    fd_warnings: crate::service::logging::RateLimit,
}

impl Acceptor {
    fn turn(&mut self) {
        let now = Instant::now();
        let listening = self.paused_until.is_none_or(|t| now >= t);
        let (listener_ready, ready) = {
            let mut fds = Vec::with_capacity(self.pending.len() + 2);
            fds.push(nix::poll::PollFd::new(
                self.stop_fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            ));
            if listening {
                fds.push(nix::poll::PollFd::new(
                    self.listener.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                ));
            }
            for p in &self.pending {
                fds.push(nix::poll::PollFd::new(
                    p.mid.get_ref().get_ref().tcp().as_fd(),
                    nix::poll::PollFlags::POLLIN,
                ));
            }
            let timeout = self
                .pending
                .iter()
                .map(|p| p.deadline.saturating_duration_since(now))
                .chain(self.paused_until.map(|t| t.saturating_duration_since(now)))
                .fold(MAX_WAIT, Duration::min);
            // Round up: a deadline is never polled for 0 ms again and again.
            let ms = timeout
                .as_micros()
                .div_ceil(1000)
                .clamp(1, u16::MAX as u128) as u16;
            let n = nix::poll::poll(&mut fds, ms).unwrap_or(0);
            let mut ready: Vec<bool> = fds
                .iter()
                .map(|f| n > 0 && f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            // The stop fd: the caller's loop looks at the flag next.
            ready.remove(0);
            let listener_ready = listening && !ready.is_empty() && ready.remove(0);
            (listener_ready, ready)
        };
        // Continue the handshakes that have something to read (the rest
        // only when their deadline passes).
        let now = Instant::now();
        let mut keep = Vec::with_capacity(self.pending.len());
        for (p, r) in std::mem::take(&mut self.pending).into_iter().zip(ready) {
            if r {
                self.advance(p.mid, p.peer, p.deadline, p.admitted, &mut keep);
            } else if now >= p.deadline {
                crate::peer_log!(
                    log::Level::Info,
                    "ws: handshake with {} took too long; dropped",
                    p.peer
                );
                release_if_admitted(&self.shared.registry, &p.admitted, p.peer);
            } else {
                keep.push(p);
            }
        }
        self.pending = keep;
        if listener_ready {
            self.accept_some();
        }
    }

    fn accept_some(&mut self) {
        for _ in 0..ACCEPT_BURST {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    self.backoff = Duration::from_millis(50);
                    self.start(stream, peer);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: the connection stays in the
                    // backlog; try again later instead of spinning on it.
                    if let Some(held) = self.fd_warnings.allow() {
                        log::warn!(
                            "ws: cannot accept: {e}; pausing for {} ms ({held} similar message(s) suppressed)",
                            self.backoff.as_millis()
                        );
                    }
                    self.paused_until = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(1));
                    return;
                }
            }
        }
    }

    fn start(&mut self, stream: TcpStream, peer: SocketAddr) {
        let ip = canonical_ip(&peer);
        // Per /64 for IPv6, as every other cap (tester x: one host's
        // addresses each counted on their own, so it could take all 64).
        // At its cap the address gives up its own oldest, not the
        // newcomer: one guest holding its /64's 8 with handshakes that
        // never start kept every other host of the venue's Wi-Fi out
        // (review y), as the oldest of all did for everyone (tester x).
        let key = peer_key(ip);
        let mine = || {
            self.pending
                .iter()
                .enumerate()
                .filter(|(_, p)| peer_key(p.peer.ip()) == key)
        };
        if !ip.is_loopback() && mine().count() >= MAX_PENDING_PER_IP {
            if let Some((i, _)) = mine().next() {
                let why = format!(
                    "{MAX_PENDING_PER_IP} handshakes from {peer}'s address in progress; dropped its oldest"
                );
                self.drop_pending(i, &why);
            }
        }
        if self.pending.len() >= MAX_PENDING {
            let i = hog_oldest(self.pending.iter().map(|p| peer_key(p.peer.ip())));
            let why = format!(
                "{MAX_PENDING} handshakes in progress; dropped the oldest of the address with the most"
            );
            self.drop_pending(i, &why);
        }
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let mut conn = Conn::new(stream);
        conn.refill(HANDSHAKE_BYTES);
        let admitted = Rc::new(Cell::new(None));
        let gate = Gate {
            shared: self.shared.clone(),
            peer,
            admitted: admitted.clone(),
        };
        let config = self.shared.policy.borrow().ws_config;
        let mid = ServerHandshake::start(conn, gate, Some(config));
        let deadline = Instant::now() + HANDSHAKE_DEADLINE;
        let mut keep = Vec::new();
        self.advance(mid, peer, deadline, admitted, &mut keep);
        self.pending.extend(keep);
    }

    /// Give up handshake `i` to make room for a newcomer: say `why` (one
    /// rate-limited log line for every such case) and give back its place
    /// in the registry if its request was admitted already.
    fn drop_pending(&mut self, i: usize, why: &str) {
        let p = self.pending.remove(i);
        crate::peer_log!(log::Level::Info, "ws: {why} ({})", p.peer);
        release_if_admitted(&self.shared.registry, &p.admitted, p.peer);
    }

    /// Run a handshake as far as it goes without blocking.
    fn advance(
        &mut self,
        mid: Handshake,
        peer: SocketAddr,
        deadline: Instant,
        admitted: Rc<Cell<Option<bool>>>,
        keep: &mut Vec<Pending>,
    ) {
        match mid.handshake() {
            Ok(ws) => {
                let Some(authorized) = admitted.get() else {
                    return;
                };
                if let Err(e) = self.accepted.send(Accepted {
                    ws,
                    authorized,
                    peer,
                }) {
                    self.shared
                        .registry
                        .release(canonical_ip(&e.0.peer), e.0.authorized);
                } else {
                    self.broadcaster.wake();
                }
            }
            Err(HandshakeError::Interrupted(mid)) => {
                if mid.get_ref().get_ref().spent() {
                    crate::peer_log!(
                        log::Level::Info,
                        "ws: handshake from {peer} larger than {HANDSHAKE_BYTES} bytes; dropped"
                    );
                    release_if_admitted(&self.shared.registry, &admitted, peer);
                } else if Instant::now() >= deadline {
                    crate::peer_log!(
                        log::Level::Info,
                        "ws: handshake with {peer} took too long; dropped"
                    );
                    release_if_admitted(&self.shared.registry, &admitted, peer);
                } else {
                    keep.push(Pending {
                        mid,
                        peer,
                        deadline,
                        admitted,
                    });
                }
            }
            Err(HandshakeError::Failure(e)) => {
                release_if_admitted(&self.shared.registry, &admitted, peer);
                crate::peer_log!(log::Level::Info, "ws: handshake with {peer} failed: {e}");
            }
        }
    }
}

/// Which handshake in progress gives its place when all are taken: the
/// oldest of the address (`keys`: oldest first, one per handshake) holding
/// the most, of those the one whose oldest came first. Dropping the oldest
/// of all let an address with handshakes to spare push out everyone
/// else's (tester x: one IPv6 host at 2 000 connections a second, a client
/// that sent its request 50 ms after connecting never got through).
fn hog_oldest(keys: impl Iterator<Item = std::net::IpAddr>) -> usize {
    // (key, handshakes, index of its oldest): at most MAX_PENDING entries.
    let mut seen: Vec<(std::net::IpAddr, usize, usize)> = Vec::new();
    for (i, k) in keys.enumerate() {
        match seen.iter_mut().find(|(s, _, _)| *s == k) {
            Some(e) => e.1 += 1,
            None => seen.push((k, 1, i)),
        }
    }
    seen.iter()
        .max_by_key(|(_, n, first)| (*n, std::cmp::Reverse(*first)))
        .map_or(0, |e| e.2)
}

fn release_if_admitted(registry: &Registry, admitted: &Cell<Option<bool>>, peer: SocketAddr) {
    if let Some(privileged) = admitted.take() {
        registry.release(canonical_ip(&peer), privileged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_the_query() {
        assert_eq!(
            query_token(Some("a=1&token=s%20e+cret")),
            Some("s e cret".into())
        );
        assert_eq!(query_token(Some("a=1")), None);
        assert_eq!(query_token(None), None);
    }

    #[test]
    fn a_full_queue_of_handshakes_gives_up_one_of_the_address_holding_the_most() {
        let v6 = |i: u16| peer_key(std::net::IpAddr::from([0xfd00, 9, 0, 0, 0, 0, 0, i]));
        let client = peer_key("192.0.2.7".parse().unwrap());
        // The client's handshake is the oldest; a host's /64 holds the rest.
        let mut keys = vec![client];
        keys.extend((1..64).map(v6));
        assert_eq!(hog_oldest(keys.iter().copied()), 1);
        // Two addresses holding as many: the one whose oldest came first.
        let a = peer_key("192.0.2.1".parse().unwrap());
        let b = peer_key("192.0.2.2".parse().unwrap());
        assert_eq!(hog_oldest([client, b, a, a, b].into_iter()), 1);
        assert_eq!(hog_oldest(std::iter::empty()), 0);
    }
}
