//! The WebSocket server: the Python feature server's protocol (see
//! [`protocol`] and docs/protocol.md) on synchronous `tungstenite`.
//!
//! Threads:
//! - `p4-ws-accept` accepts connections and runs each handshake on a
//!   short-lived thread (Origin check, `?token=`, client cap);
//! - `p4-ws` is the broadcaster: one thread that owns every client socket
//!   (non-blocking), drains the workers' frame rings, sends snapshots at
//!   `ws_snapshot_hz`, FFT frames, events and `server_status`, reads
//!   inbound messages, and hands commands to the control thread.
//!
//! Not a real-time thread, and it never makes one wait: the workers push
//! into bounded rings and drop when they are full; each client has a bounded
//! queue and a non-blocking socket (see [`client`]).

pub mod accept;
pub mod client;
pub mod protocol;
mod server;
mod status;

use crate::config::{Config, WsConfig};
use crate::control::{Reply, Request, Shared};
use crate::stats::Stats;
use crate::types::{BandsFrame, SpectrumFrame};
use ringbuf::HeapCons;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Everything the WebSocket threads are given.
pub struct WsCtx {
    /// The configuration as started (ports, limits, token).
    pub config: Config,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// The settings in force (for meta).
    pub shared: Arc<Shared>,
    /// Commands to the control thread.
    pub requests: Sender<Request>,
    /// Its answers.
    pub replies: Receiver<Reply>,
}

/// Whether binding to `bind` exposes the server beyond this machine.
pub fn beyond_loopback(bind: &str) -> bool {
    bind.parse::<std::net::IpAddr>()
        .map(|ip| !ip.is_loopback())
        .unwrap_or(true)
}

/// Bind the port and start the acceptor and the broadcaster. Binding
/// happens here, so a taken port is a start-up error.
pub fn spawn(
    ctx: WsCtx,
    bands: HeapCons<BandsFrame>,
    spectrum: HeapCons<SpectrumFrame>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let ws: &WsConfig = &ctx.config.ws;
    let listener = TcpListener::bind((ws.bind.as_str(), ws.port))?;
    if beyond_loopback(&ws.bind) && ws.token.is_empty() {
        log::warn!(
            "ws: listening on {}:{} beyond loopback without a control token: anyone on the network can change settings (set ws.token)",
            ws.bind,
            ws.port
        );
    }
    log::info!(
        "ws: listening on ws://{}:{} (control token {})",
        ws.bind,
        ws.port,
        if ws.token.is_empty() { "off" } else { "on" }
    );
    let max = ws.max_message_bytes as usize;
    // Messages up to 4x the limit are read and answered with an error;
    // larger ones close the connection (1009) without being buffered.
    let wsc = tungstenite::protocol::WebSocketConfig {
        max_message_size: Some(max * 4),
        max_frame_size: Some(max * 4),
        write_buffer_size: 64 * 1024,
        max_write_buffer_size: 256 * 1024,
        ..Default::default()
    };
    let policy = accept::Policy {
        token: ws.token.clone(),
        http_port: ws.http_port,
        allowed_origins: ws.allowed_origins.clone(),
        max_clients: ws.max_clients as usize,
        ws_config: wsc,
    };
    let active = Arc::new(AtomicUsize::new(0));
    let (acc_tx, acc_rx) = std::sync::mpsc::channel();
    let acceptor = accept::spawn(listener, policy, acc_tx, active.clone(), ctx.stop.clone())?;
    let broadcaster = server::spawn(ctx, acc_rx, active, bands, spectrum)?;
    Ok(vec![acceptor, broadcaster])
}
