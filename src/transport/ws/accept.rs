//! Accepting connections (`p4-ws-accept`) and the WebSocket handshake.
//!
//! Each handshake runs on a short-lived thread with socket timeouts, so a
//! client that opens a TCP connection and says nothing holds up neither other
//! clients nor the broadcaster. The handshake is where the browser Origin is
//! checked and the `?token=` read; the client count is capped before it.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::WebSocket;

/// Longest a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client that completed its handshake.
pub struct Accepted {
    /// The socket, still blocking (the broadcaster makes it non-blocking).
    pub ws: WebSocket<TcpStream>,
    /// It presented the right token in the URL.
    pub authorized: bool,
    /// Its address, for logs.
    pub peer: String,
}

/// What the acceptor checks.
#[derive(Clone)]
pub struct Policy {
    /// The control token (empty: none).
    pub token: String,
    /// Port the UI is served on (its Origin is allowed).
    pub http_port: u16,
    /// Further allowed Origins.
    pub allowed_origins: Vec<String>,
    /// Most clients (connected plus handshaking).
    pub max_clients: usize,
    /// tungstenite limits.
    pub ws_config: WebSocketConfig,
}

/// Split `host[:port]` (IPv6 in brackets); the port is `None` when absent.
fn split_host_port(s: &str) -> (String, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once(']') {
            return (
                h.to_ascii_lowercase(),
                p.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_ascii_lowercase(), p.parse().ok()),
        _ => (s.to_ascii_lowercase(), None),
    }
}

/// Whether a browser page from `origin` may connect. No Origin header means
/// no browser (scripts, tools): allowed. Otherwise the Origin must be the
/// UI's own (same host the client asked for, UI port) or listed.
pub fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    http_port: u16,
    allowed: &[String],
) -> bool {
    let Some(origin) = origin else { return true };
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let (o_host, o_port) = split_host_port(rest.trim_end_matches('/'));
    let Some((h_host, _)) = host.map(split_host_port) else {
        return false;
    };
    o_host == h_host && o_port == Some(http_port)
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

/// The `token` query parameter of a request URI.
pub fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_decode(v))
}

/// Compare without an early exit on the first differing byte.
pub fn token_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0 && !expected.is_empty()
}

#[allow(clippy::result_large_err)] // tungstenite's callback type
fn handshake(stream: TcpStream, policy: &Policy) -> Result<Accepted, String> {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut authorized = policy.token.is_empty();
    let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
        if !origin_allowed(
            header("origin"),
            header("host"),
            policy.http_port,
            &policy.allowed_origins,
        ) {
            let mut e = ErrorResponse::new(Some("origin not allowed".into()));
            *e.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
            return Err(e);
        }
        if let Some(t) = query_token(req.uri().query()) {
            authorized = authorized || token_matches(&policy.token, &t);
        }
        Ok(resp)
    };
    let ws = tungstenite::accept_hdr_with_config(stream, cb, Some(policy.ws_config))
        .map_err(|e| format!("handshake with {peer} failed: {e}"))?;
    Ok(Accepted {
        ws,
        authorized,
        peer,
    })
}

/// Start the acceptor on a bound listener. Handshaken clients go to
/// `accepted`; `active` counts clients handshaking or connected (the
/// broadcaster decrements it when one leaves).
pub fn spawn(
    listener: TcpListener,
    policy: Policy,
    accepted: Sender<Accepted>,
    active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-ws-accept".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut fds = [nix::poll::PollFd::new(listener.as_fd(), nix::poll::PollFlags::POLLIN)];
                if nix::poll::poll(&mut fds, 200u16).unwrap_or(0) == 0 {
                    continue;
                }
                let Ok((mut stream, peer)) = listener.accept() else {
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                if active.load(Ordering::Relaxed) >= policy.max_clients {
                    log::warn!("ws: refusing {peer}: already {} clients (ws.max-clients)", policy.max_clients);
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                    let _ = stream.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let (policy, accepted, active2) = (policy.clone(), accepted.clone(), active.clone());
                let spawned = std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
                    .name("p4-ws-handshake".into())
                    .spawn(move || match handshake(stream, &policy) {
                        Ok(a) => {
                            if accepted.send(a).is_err() {
                                active2.fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            log::info!("ws: {e}");
                            active2.fetch_sub(1, Ordering::Relaxed);
                        }
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::Relaxed);
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_uis_own_origin_or_listed_ones_are_allowed() {
        let none: Vec<String> = vec![];
        assert!(origin_allowed(None, Some("x:8765"), 8766, &none));
        assert!(origin_allowed(
            Some("http://127.0.0.1:8766"),
            Some("127.0.0.1:8765"),
            8766,
            &none
        ));
        assert!(origin_allowed(
            Some("http://MyPi.local:8766"),
            Some("mypi.local:8765"),
            8766,
            &none
        ));
        assert!(origin_allowed(
            Some("http://[::1]:8766"),
            Some("[::1]:8765"),
            8766,
            &none
        ));
        assert!(!origin_allowed(
            Some("http://evil.example:8766"),
            Some("127.0.0.1:8765"),
            8766,
            &none
        ));
        assert!(!origin_allowed(
            Some("http://127.0.0.1:9999"),
            Some("127.0.0.1:8765"),
            8766,
            &none
        ));
        assert!(!origin_allowed(
            Some("null"),
            Some("127.0.0.1:8765"),
            8766,
            &none
        ));
        let listed = vec!["https://studio.example".to_string()];
        assert!(origin_allowed(
            Some("https://studio.example"),
            Some("127.0.0.1:8765"),
            8766,
            &listed
        ));
    }

    #[test]
    fn tokens_come_from_the_query_and_compare_exactly() {
        assert_eq!(
            query_token(Some("a=1&token=s%20e+cret")),
            Some("s e cret".into())
        );
        assert_eq!(query_token(Some("a=1")), None);
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "ab"));
        assert!(!token_matches("", ""));
    }
}
