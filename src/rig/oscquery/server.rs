//! The OSCQuery HTTP server and WebSocket upgrade (`p4-oscq`), one port.
//!
//! Each connection runs on a short-lived handler thread (at most
//! `oscquery.max-clients` at once; more are closed at once). The handler
//! peeks at the request head (at most [`MAX_HEAD`] bytes, within
//! [`IO_TIMEOUT`]) and parses it with `httparse`: a WebSocket upgrade is
//! handed to `tungstenite` (which reads the same head) and then to the
//! streaming thread; anything else is answered from the namespace with
//! `Connection: close`. Only GET and HEAD; every answer is JSON, small, and
//! read-only: writes go to the OSC input port, never through HTTP.

use super::listen::{self, ListenCtx};
use super::namespace::{Answer, Namespace};
use super::{build_namespace, Live};
use crate::config::Config;
use crate::stats::Stats;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocketConfig;

/// Largest request head read.
pub const MAX_HEAD: usize = 8192;
/// Longest a request may take to arrive, and a response to be written.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Stack of a handler thread.
const HANDLER_STACK: usize = 128 * 1024;

/// Bind the port and start the acceptor and the streaming thread.
pub fn spawn(
    config: &Config,
    live: Live,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let q = &config.oscquery;
    let listener = TcpListener::bind((q.bind.as_str(), q.port))?;
    listener.set_nonblocking(true)?;
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
    let active = Arc::new(AtomicUsize::new(0));
    let streamer = listen::spawn(ListenCtx {
        ns: ns.clone(),
        live: live.clone(),
        stats: stats.clone(),
        stop: stop.clone(),
        hz: q.listen_hz,
        active: active.clone(),
        incoming: ws_rx,
    })?;
    let acceptor = std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-oscq".into())
        .spawn(move || {
            stats
                .rig
                .tid_oscq
                .store(crate::service::gettid(), Ordering::Relaxed);
            accept_loop(&listener, &ns, &live, &stats, &stop, &active, max, &ws_tx)
        })?;
    Ok(vec![acceptor, streamer])
}

#[allow(clippy::too_many_arguments)]
fn accept_loop(
    listener: &TcpListener,
    ns: &Arc<Namespace>,
    live: &Live,
    stats: &Arc<Stats>,
    stop: &AtomicBool,
    active: &Arc<AtomicUsize>,
    max: usize,
    ws_tx: &SyncSender<tungstenite::WebSocket<TcpStream>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [nix::poll::PollFd::new(
            listener.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
        while let Ok((stream, _peer)) = listener.accept() {
            // Connected WebSocket clients and handlers in flight share the cap.
            if active.fetch_add(1, Ordering::SeqCst) >= max {
                active.fetch_sub(1, Ordering::SeqCst);
                drop(stream);
                continue;
            }
            let (ns, live, stats, active2, ws_tx) = (
                ns.clone(),
                live.clone(),
                stats.clone(),
                active.clone(),
                ws_tx.clone(),
            );
            let spawned = std::thread::Builder::new()
                .stack_size(HANDLER_STACK)
                .name("p4-oscq-req".into())
                .spawn(move || {
                    if !handle(stream, &ns, &live, &stats, &ws_tx) {
                        active2.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// What the request head says.
struct Head {
    len: usize,
    method: String,
    path: String,
    upgrade: bool,
}

/// Peek until a whole head is there; `Err` is the status to answer.
fn read_head(stream: &TcpStream) -> Result<Head, u16> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = vec![0u8; MAX_HEAD];
    loop {
        let n = stream.peek(&mut buf).map_err(|_| 408u16)?;
        if n == 0 {
            return Err(400);
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..n]) {
            Ok(httparse::Status::Complete(len)) => {
                let upgrade = req.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("upgrade")
                        && String::from_utf8_lossy(h.value).eq_ignore_ascii_case("websocket")
                });
                return Ok(Head {
                    len,
                    method: req.method.unwrap_or("").to_string(),
                    path: req.path.unwrap_or("").to_string(),
                    upgrade,
                });
            }
            Ok(httparse::Status::Partial) if n == buf.len() => return Err(431),
            Ok(httparse::Status::Partial) => {
                if Instant::now() >= deadline {
                    return Err(408);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return Err(400),
        }
    }
}

/// Serve one connection. Returns true when it became a WebSocket client
/// (which then keeps its place under the cap until it leaves).
fn handle(
    mut stream: TcpStream,
    ns: &Namespace,
    live: &Live,
    stats: &Stats,
    ws_tx: &SyncSender<tungstenite::WebSocket<TcpStream>>,
) -> bool {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let head = match read_head(&stream) {
        Ok(h) => h,
        Err(status) => {
            let _ = respond(&mut stream, status, "{}", false);
            return false;
        }
    };
    if head.upgrade && head.method == "GET" {
        let cfg = WebSocketConfig {
            max_message_size: Some(4096),
            max_frame_size: Some(4096),
            write_buffer_size: 16 * 1024,
            max_write_buffer_size: 256 * 1024,
            ..Default::default()
        };
        return match tungstenite::accept_with_config(stream, Some(cfg)) {
            Ok(ws) => ws_tx.try_send(ws).is_ok(),
            Err(_) => false,
        };
    }
    // Consume the head we peeked at.
    let mut sink = vec![0u8; head.len];
    if stream.read_exact(&mut sink).is_err() {
        return false;
    }
    stats.rig.oscq_requests.fetch_add(1, Ordering::Relaxed);
    let head_only = head.method == "HEAD";
    if head.method != "GET" && !head_only {
        let _ = respond(&mut stream, 405, "{}", false);
        return false;
    }
    let (status, body) = route(ns, live, &head.path);
    let _ = respond(&mut stream, status, &body, head_only);
    false
}

/// Status and JSON body for a request target (`/path?QUERY#fragment`).
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

fn respond(
    stream: &mut TcpStream,
    status: u16,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let body = if status == 204 { "" } else { body };
    // Reads are open to the LAN (DESIGN.md section 9), so browser-based
    // OSCQuery clients on other origins may read them too.
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-cache\r\nAccess-Control-Allow-Origin: *\r\nX-Content-Type-Options: nosniff\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}
