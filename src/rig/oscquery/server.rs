//! The OSCQuery HTTP server and WebSocket upgrade (`p4-oscq`), one port.
//!
//! The same hyper server as the UI's, with the same limits
//! ([`crate::transport::serve`], [`crate::transport::http::LIMITS`]): request
//! heads of 8 KiB and 32 headers, 5 s to send one, 30 s and 100 requests per
//! connection, 64 connections (16 per address). And the same checks: a Host
//! that is not a name of this box gets 421 (DNS rebinding), a browser
//! Origin other than the UI's own or `ws.allowed-origins` gets 403.
//!
//! Only GET and HEAD; every answer is JSON, small, and read-only: writes go
//! to the OSC input port, never through HTTP. A WebSocket upgrade (GET with
//! `Upgrade: websocket`) is answered here and the socket handed to the
//! streaming thread ([`super::listen`]); connected streaming clients are
//! capped at `oscquery.max-clients`, [`MAX_LISTENERS_PER_IP`] per address
//! (loopback excepted).

use super::listen::{self, ClientSlot, ListenCtx, Upgraded};
use super::namespace::{Answer, Namespace};
use super::{build_namespace, Live};
use crate::config::Config;
use crate::stats::Stats;
use crate::transport::hosts::HostCheck;
use crate::transport::serve::{self, Handler};
use crate::transport::ws::conn::Conn;
use crate::transport::ws::registry::Registry;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use tungstenite::protocol::{Role, WebSocketConfig};

/// Streaming (LISTEN) clients from one address, loopback excepted.
pub const MAX_LISTENERS_PER_IP: usize = 8;
/// Largest message a streaming client may send (a LISTEN is ~60 bytes).
pub const MAX_WS_MESSAGE: usize = 4096;

/// Bind the port and start the server and the streaming thread.
pub fn spawn(
    config: &Config,
    live: Live,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    stop_fd: crate::rt::StopFd,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let q = &config.oscquery;
    let listener = crate::transport::bind::tcp(&q.bind, q.port, "oscquery")?;
    log::info!(
        "oscquery: http://{}:{}/ (namespace, HOST_INFO, LISTEN over WebSocket){}",
        q.bind,
        q.port,
        if q.input_port != 0 {
            format!("; OSC input on UDP {}", q.input_port)
        } else {
            String::new()
        }
    );
    let ns = Arc::new(build_namespace(config));
    let max = q.max_clients as usize;
    // Upgraded clients wait here for the streaming thread; a full queue
    // closes the newcomer.
    let (ws_tx, ws_rx) = sync_channel(max);
    let streamer = listen::spawn(ListenCtx {
        ns: ns.clone(),
        live: live.clone(),
        stats: stats.clone(),
        stop: stop.clone(),
        hz: q.listen_hz,
        incoming: ws_rx,
    })?;
    let (allowed_hosts, bind) = (config.ws.allowed_hosts.clone(), q.bind.clone());
    let (ui_port, allowed_origins) = (config.ws.http_port, config.ws.allowed_origins.clone());
    let server = serve::spawn(
        "p4-oscq",
        "oscquery",
        listener,
        crate::transport::http::LIMITS,
        stop,
        Some(stop_fd),
        move || {
            stats
                .rig
                .tid_oscq
                .store(crate::service::gettid(), Ordering::Relaxed);
            Site {
                ns,
                live,
                stats,
                hosts: RefCell::new(HostCheck::new(&allowed_hosts, &bind)),
                ui_port,
                allowed_origins,
                listeners: Arc::new(Registry::default()),
                max_listeners: max,
                ws_tx,
            }
        },
    )?;
    Ok(vec![server, streamer])
}

/// Everything a request needs (on the server's thread).
struct Site {
    ns: Arc<Namespace>,
    live: Live,
    stats: Arc<Stats>,
    hosts: RefCell<HostCheck>,
    ui_port: u16,
    allowed_origins: Vec<String>,
    listeners: Arc<Registry>,
    max_listeners: usize,
    ws_tx: SyncSender<Upgraded>,
}

/// A status with a JSON error body.
fn error(status: StatusCode, why: &str) -> (StatusCode, String) {
    (status, serde_json::json!({ "error": why }).to_string())
}

/// Whether a header holds `token` in its comma-separated list.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

impl Handler for Site {
    fn respond(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        last: bool,
    ) -> Response<serve::Body> {
        self.stats.rig.oscq_requests.fetch_add(1, Ordering::Relaxed);
        // Two Origin fields are refused, whichever comes first.
        let origin = crate::transport::hosts::single_header(req.headers(), header::ORIGIN)
            .map(|o| o.map(str::to_string));
        let checked = match &origin {
            Ok(o) => self.check(&req, o.as_deref()),
            Err(_) => Err(error(StatusCode::FORBIDDEN, "origin not allowed")),
        };
        let origin = origin.ok().flatten();
        let (status, body) = match checked {
            Err(refusal) => refusal,
            Ok(()) if has_token(req.headers(), header::UPGRADE, "websocket") => {
                match self.upgrade(req, peer) {
                    Ok(r) => return r,
                    Err(refusal) => refusal,
                }
            }
            Ok(()) if !matches!(*req.method(), Method::GET | Method::HEAD) => {
                error(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD")
            }
            Ok(()) => {
                let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
                let (status, body) = route(&self.ns, &self.live, target);
                (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    body,
                )
            }
        };
        let origin_ok = status != StatusCode::FORBIDDEN;
        let body = if status == StatusCode::NO_CONTENT {
            Bytes::new()
        } else {
            Bytes::from(body)
        };
        let mut r = serve::response(status, "application/json", body, last);
        // A browser page may read the namespace only from an origin the
        // UI's WebSocket would also accept.
        if let Some(o) = origin.filter(|_| origin_ok) {
            if let Ok(v) = HeaderValue::from_str(&o) {
                let hs = r.headers_mut();
                hs.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
                hs.insert(header::VARY, HeaderValue::from_static("Origin"));
            }
        }
        r
    }
}

impl Site {
    /// The Host and Origin checks the UI server makes, and no
    /// absolute-form targets (their authority would bypass the Host check).
    fn check<B>(&self, req: &Request<B>, origin: Option<&str>) -> Result<(), (StatusCode, String)> {
        let host = crate::transport::hosts::host_header(req.headers());
        let mut hosts = self.hosts.borrow_mut();
        if let Err(why) = hosts.allowed_host(host) {
            crate::peer_log!(log::Level::Info, "oscquery: refused a request: {why}");
            return Err(error(
                StatusCode::MISDIRECTED_REQUEST,
                "this Host is not a name of this machine (ws.allowed-hosts)",
            ));
        }
        if !hosts.origin_allowed(origin, self.ui_port, &self.allowed_origins) {
            return Err(error(StatusCode::FORBIDDEN, "origin not allowed"));
        }
        if req.uri().authority().is_some() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "absolute-form requests are not served",
            ));
        }
        Ok(())
    }

    /// Answer a WebSocket handshake with 101 and hand the socket to the
    /// streaming thread once hyper lets go of it.
    fn upgrade(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<serve::Body>, (StatusCode, String)> {
        let h = req.headers();
        let key = h
            .get(header::SEC_WEBSOCKET_KEY)
            .map(|k| k.as_bytes())
            .filter(|k| !k.is_empty() && k.len() <= 64);
        let ok = *req.method() == Method::GET
            && has_token(h, header::CONNECTION, "upgrade")
            && h.get(header::SEC_WEBSOCKET_VERSION)
                .is_some_and(|v| v.as_bytes() == b"13");
        let Some(key) = key.filter(|_| ok) else {
            return Err(error(StatusCode::BAD_REQUEST, "bad WebSocket handshake"));
        };
        let accept = tungstenite::handshake::derive_accept_key(key);
        let ip = peer.ip().to_canonical();
        if self
            .listeners
            .admit(
                ip,
                ip.is_loopback(),
                self.max_listeners,
                MAX_LISTENERS_PER_IP,
            )
            .is_err()
        {
            crate::peer_log!(log::Level::Info,
                "oscquery: refusing a streaming client from {peer}: {} in all (oscquery.max-clients; a quarter kept for loopback) or {MAX_LISTENERS_PER_IP} from it already",
                self.max_listeners
            );
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many streaming clients",
            ));
        }
        let slot = ClientSlot::new(self.listeners.clone(), ip);
        let tx = self.ws_tx.clone();
        tokio::task::spawn_local(async move {
            let Ok(up) = hyper::upgrade::on(req).await else {
                return;
            };
            let Ok(parts) = up.downcast::<hyper_util::rt::TokioIo<tokio::net::TcpStream>>() else {
                return;
            };
            let Ok(stream) = parts.io.into_inner().into_std() else {
                return;
            };
            let cfg = WebSocketConfig::default()
                .max_message_size(Some(MAX_WS_MESSAGE))
                .max_frame_size(Some(MAX_WS_MESSAGE))
                .read_buffer_size(8 * 1024)
                .write_buffer_size(16 * 1024)
                .max_write_buffer_size(256 * 1024);
            let ws = tungstenite::WebSocket::from_partially_read(
                Conn::new(stream),
                parts.read_buf.to_vec(),
                Role::Server,
                Some(cfg),
            );
            // A full queue drops the newcomer (and its slot).
            let _ = tx.try_send(Upgraded { ws, slot });
        });
        let mut r = Response::new(http_body_util::Either::Left(Full::new(Bytes::new())));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let hs = r.headers_mut();
        hs.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        hs.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        Ok(r)
    }
}

/// Status and JSON body for a request target (`/path?QUERY`).
pub fn route(ns: &Namespace, live: &Live, target: &str) -> (u16, String) {
    let target = target.split('#').next().unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let ok_path = path.starts_with('/')
        && path.len() <= 256
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'\\' | b'#' | b'?'));
    if !ok_path {
        return (400, r#"{"error":"bad path"}"#.into());
    }
    match ns.answer(path, query, live) {
        Answer::Json(v) => (200, v.to_string()),
        Answer::NoContent => (204, String::new()),
        Answer::BadRequest(e) => (400, serde_json::json!({ "error": e }).to_string()),
        Answer::NotFound => (404, r#"{"error":"no such node"}"#.into()),
    }
}
