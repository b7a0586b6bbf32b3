//! The broadcaster thread (`p4-ws`): one loop that owns every client.
//!
//! Each turn: adopt new clients, pass on control's answers, drain the frame
//! rings, send a snapshot when one is due, flush every client once (one
//! write per client per turn), drop clients that stayed stuck, then sleep in
//! `poll()` on the client sockets until the next snapshot is due or a
//! client sends something, and read a bounded amount from each (see
//! [`super::inbound`]). FFT frames are therefore sent in the turn after they
//! were computed, at most one snapshot period late; every frame is sent
//! (none is skipped for a client that keeps up).
//!
//! Every step of a turn is bounded per client, so no client can hold up the
//! snapshots of the others or this thread's heartbeat (which the watchdog
//! checks).
//!
//! This file owns the turn and the client set (adopting, greeting,
//! flushing, removing); what goes out is built in [`frames`] (the workers'
//! features) and [`answers`] (control's answers).

use super::accept::Accepted;
use super::client::{Client, Flow};
use super::meta::build_meta;
use super::protocol::{self as p, Outbound};
use super::registry::{canonical_ip, Registry};
use super::status::StatusBuilder;
use super::WsCtx;
use crate::control::secret::Secret;
use crate::control::{Command, Request};
use crate::stats::Role;
use crate::types::{BandsFrame, SpectrumFrame};
use ringbuf::HeapCons;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes};

pub(super) mod answers;
mod frames;

/// How often `server_status` goes out.
const STATUS_EVERY: Duration = Duration::from_millis(500);
/// Longest sleep in poll (heartbeat, stop flag, new clients).
pub(super) const MAX_SLEEP: Duration = Duration::from_millis(50);

pub(super) fn spawn(
    ctx: WsCtx,
    secret: Secret,
    accepted: Receiver<Accepted>,
    wake: Arc<crate::rt::Wake>,
    registry: Arc<Registry>,
    bands: HeapCons<BandsFrame>,
    spectrum: HeapCons<SpectrumFrame>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-ws".into())
        .spawn(move || {
            ctx.stats.tid[Role::Ws as usize].store(crate::service::gettid(), Ordering::Relaxed);
            // The acceptor wakes this thread when a client arrives: with
            // none it parks for [`MAX_SLEEP`] instead of ticking at the
            // snapshot rate.
            wake.register_current();
            let mut b = Broadcaster::new(ctx, secret, accepted, registry, bands, spectrum);
            b.run();
        })
}

pub(super) struct Broadcaster {
    pub(super) ctx: WsCtx,
    pub(super) secret: Secret,
    accepted: Receiver<Accepted>,
    pub(super) registry: Arc<Registry>,
    bands: HeapCons<BandsFrame>,
    spectrum: HeapCons<SpectrumFrame>,
    pub(super) clients: Vec<Client>,
    next_id: u64,
    last_meta: Option<p::Meta>,
    /// Encoded once; every client's queue shares it.
    meta_json: Utf8Bytes,
    latest_bands: BandsFrame,
    latest_spec: SpectrumFrame,
    snapshot_seq: u64,
    pub(super) next_snapshot: Instant,
    next_status: Instant,
    fft_buf: Vec<u8>,
    status: StatusBuilder,
    greet_status: StatusBuilder,
    pub(super) drops: u64,
    /// Requests sent to control and not answered yet, all clients, those
    /// that have left included.
    pub(super) in_flight: u32,
    /// The newest `devices` and `presets` messages: a new client gets them
    /// at once with its meta and a `server_status` of now (the Python
    /// server's greeting), without a round trip to control.
    devices_json: String,
    presets_json: String,
    /// When the broadcaster started: `snapshot.t` counts ms from here.
    started: Instant,
    /// Band onset counters at the previous snapshot.
    onsets_seen: [u32; 3],
    /// Where reading starts next turn (round robin).
    pub(super) read_from: usize,
    /// Closed clients' sockets, kept briefly (see [`Broadcaster::linger`]).
    lingering: Vec<(std::net::TcpStream, Instant)>,
    /// The monitor stream's status readings.
    pub(super) audio: super::audio::AudioStatus,
}

impl Broadcaster {
    fn new(
        ctx: WsCtx,
        secret: Secret,
        accepted: Receiver<Accepted>,
        registry: Arc<Registry>,
        bands: HeapCons<BandsFrame>,
        spectrum: HeapCons<SpectrumFrame>,
    ) -> Self {
        let status = StatusBuilder::new(&ctx.stats);
        let greet_status = StatusBuilder::new(&ctx.stats);
        Broadcaster {
            ctx,
            secret,
            accepted,
            registry,
            bands,
            spectrum,
            clients: Vec::new(),
            next_id: 1,
            last_meta: None,
            meta_json: Utf8Bytes::default(),
            latest_bands: BandsFrame::default(),
            latest_spec: SpectrumFrame::zeroed(),
            snapshot_seq: 0,
            next_snapshot: Instant::now(),
            next_status: Instant::now() + STATUS_EVERY,
            fft_buf: Vec::with_capacity(4 + 4 * crate::types::MAX_FFT_BINS),
            status,
            greet_status,
            drops: 0,
            in_flight: 0,
            read_from: 0,
            lingering: Vec::new(),
            audio: Default::default(),
            devices_json: String::new(),
            presets_json: String::new(),
            started: Instant::now(),
            onsets_seen: [0; 3],
        }
    }

    fn run(&mut self) {
        while !self.ctx.stop.load(Ordering::Relaxed) {
            self.ctx.stats.beat(Role::Ws);
            let now = Instant::now();
            self.adopt();
            self.answer();
            self.drain_frames();
            self.audio_turn();
            self.maybe_meta(false);
            let hz = self
                .ctx
                .shared
                .state
                .lock()
                .map(|s| s.ws.snapshot_hz)
                .unwrap_or(60.0);
            if now >= self.next_snapshot {
                self.send_snapshot();
                let period = Duration::from_secs_f64(1.0 / hz.clamp(1.0, 1000.0));
                self.next_snapshot += period;
                if self.next_snapshot < now {
                    self.next_snapshot = now + period;
                }
            }
            if now >= self.next_status && !self.clients.is_empty() {
                self.next_status = now + STATUS_EVERY;
                self.broadcast_status(hz);
            }
            self.flush_all(now);
            self.drain_lingering();
            self.sleep_and_read();
        }
        for c in self.clients.iter_mut() {
            let _ = c.ws.close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "server stopping".into(),
            }));
            let _ = c.ws.flush();
        }
    }

    /// How long to park while no client is connected: [`MAX_SLEEP`], or
    /// less when the workers' rings to this thread would be a quarter full
    /// sooner (high block rates: 96 kHz / 64 frames fills half the ring in
    /// 21 ms, and parking that long dropped frames), so that no frame is
    /// dropped for nobody.
    pub(super) fn idle_wait(&self) -> Duration {
        let sr = self.ctx.shared.sample_rate.load(Ordering::Relaxed) as f64;
        if sr == 0.0 {
            // The device's rate is not known yet (start-up): wake often.
            return Duration::from_millis(5);
        }
        let block = self.ctx.config.audio.block_frames.max(1) as f64;
        let quarter_ring = (crate::dsp::worker::FRAME_RING / 4) as f64 * block / sr;
        MAX_SLEEP.min(Duration::from_secs_f64(quarter_ring))
    }

    /// Send meta to everyone when it changed (or when `force`).
    fn maybe_meta(&mut self, force: bool) {
        let m = build_meta(&self.ctx);
        if force || self.last_meta.as_ref() != Some(&m) {
            self.meta_json = Outbound::Meta(&m).to_json().into();
            self.last_meta = Some(m);
            for c in self.clients.iter_mut() {
                c.meta_due = true;
            }
        }
    }

    /// Take in the clients the acceptor handed over since the last turn.
    fn adopt(&mut self) {
        while let Ok(a) = self.accepted.try_recv() {
            let id = self.next_id;
            self.next_id += 1;
            let ip = canonical_ip(&a.peer);
            match Client::new(
                id,
                a.ws,
                a.authorized,
                a.peer,
                self.ctx.config.ws.max_messages_per_s,
            ) {
                Ok(c) => self.welcome(c),
                Err(e) => {
                    log::warn!("ws: cannot set up client: {e}");
                    self.registry.release(ip, a.authorized);
                }
            }
        }
    }

    /// Greet a new client and count it in; ask control for the devices and
    /// presets when there are none to send it yet.
    fn welcome(&mut self, mut c: Client) {
        if self.last_meta.is_none() {
            self.maybe_meta(true);
        }
        let cached = self.greet(&mut c);
        crate::peer_log!(
            log::Level::Info,
            "ws: client {} connected from {}{}",
            c.id,
            c.peer,
            if c.authorized { "" } else { " (watch only)" }
        );
        if !cached {
            c.in_flight += 1;
            self.in_flight += 1;
        }
        let id = c.id;
        self.clients.push(c);
        self.ctx
            .stats
            .ws_clients
            .store(self.clients.len() as u32, Ordering::Relaxed);
        let status = self.greeting_status(self.clients.last().is_some_and(|c| c.authorized));
        if let Some(c) = self.clients.last_mut() {
            let _ = c.push_reply(status);
        }
        if !cached {
            let _ = self.ctx.requests.send(Request {
                client: id,
                command: Command::Hello,
            });
        }
    }

    /// The greeting: meta (sent first, `meta_due`), phase4's auth, then
    /// devices and presets at once (the Python server's greeting) when
    /// they are cached; returns whether they were.
    fn greet(&self, c: &mut Client) -> bool {
        let auth = Outbound::Auth {
            authorized: c.authorized,
            required: true,
        };
        let _ = c.push_reply(Message::Text(auth.to_json().into()));
        let cached = !self.devices_json.is_empty() && !self.presets_json.is_empty();
        if cached {
            let _ = c.push_reply(Message::Text(self.devices_json.clone().into()));
            let _ = c.push_reply(Message::Text(self.presets_json.clone().into()));
        }
        cached
    }

    /// A `server_status` of now, counting the new client; the recorder's
    /// state only for an authorized one (see [`Broadcaster::status_jsons`]).
    fn greeting_status(&mut self, authorized: bool) -> Message {
        let hz = self
            .last_meta
            .as_ref()
            .map_or(60.0, |m| m.ws_snapshot_hz as f64);
        let (full, watch) = self.status_jsons(true, hz, !authorized);
        Message::Text(if authorized { full } else { watch }.into())
    }

    /// The periodic `server_status` to every client: the full one to the
    /// authorized, the one without the recorder's state to the others.
    fn broadcast_status(&mut self, hz: f64) {
        let watchers = self.clients.iter().any(|c| !c.authorized);
        let (full, watch) = self.status_jsons(false, hz, watchers);
        let full = Utf8Bytes::from(full);
        let watch = Utf8Bytes::from(watch);
        for c in self.clients.iter_mut() {
            let json = if c.authorized { &full } else { &watch };
            self.drops += c.push_frame(Message::Text(json.clone()));
        }
    }

    /// A `server_status` of now, as JSON: the full one, and (when `watch`
    /// is asked for, else empty) the one for clients without the token.
    /// That one leaves out `monitor.recording`: the recording's file name,
    /// its length and the disk figures are the token holders' business,
    /// as are the `recordings` listings. A new client's greeting has a
    /// builder of its own, so the periodic 2 Hz figures keep their
    /// intervals (and the monitor's CPU interval is not restarted).
    fn status_jsons(&mut self, greeting: bool, hz: f64, watch: bool) -> (String, String) {
        let builder = if greeting {
            &mut self.greet_status
        } else {
            &mut self.status
        };
        let mut s = builder.build(
            &self.ctx,
            self.clients.len() as u32,
            self.drops,
            hz,
            self.snapshot_seq,
        );
        s.monitor = self.audio_status(!greeting);
        let full = Outbound::ServerStatus(&s).to_json();
        let watch = match s.monitor.as_mut() {
            Some(m) if watch => {
                m.recording = None;
                Outbound::ServerStatus(&s).to_json()
            }
            _ if watch => full.clone(),
            _ => String::new(),
        };
        (full, watch)
    }

    fn flush_all(&mut self, now: Instant) {
        let stall = Duration::from_secs_f64(self.ctx.config.ws.stall_timeout_s);
        let mut i = 0;
        while i < self.clients.len() {
            let c = &mut self.clients[i];
            let dropped_before = c.drops;
            let flow = c.write_out(&self.meta_json, now);
            // Frames it dropped for their age.
            self.drops += c.drops - dropped_before;
            let stalled = c.stalled_for(now);
            if flow == Flow::Closed {
                self.remove(i, CloseCode::Normal, "");
            } else if stalled > stall {
                self.remove(i, CloseCode::Policy, "stopped reading (ws.stall-timeout-s)");
            } else {
                i += 1;
            }
        }
    }

    /// Close client `i` with `code` (no close frame when the connection is
    /// already gone: `why` empty) and forget it.
    pub(super) fn remove(&mut self, i: usize, code: CloseCode, why: &str) {
        let mut c = self.clients.swap_remove(i);
        crate::peer_log!(
            log::Level::Info,
            "ws: client {} ({}) disconnected: {}; {} frame(s) dropped for it{}",
            c.id,
            c.peer,
            if why.is_empty() { "closed" } else { why },
            c.drops,
            if c.errors_suppressed > 0 {
                format!(", {} error reply(ies) suppressed", c.errors_suppressed)
            } else {
                String::new()
            }
        );
        if !why.is_empty() {
            let _ = c.ws.close(Some(CloseFrame {
                code,
                reason: p::truncate(why, 120).into(),
            }));
        }
        // Also sends tungstenite's answer to a client's close frame.
        let _ = c.ws.flush();
        let _ = c.ws.get_ref().tcp().shutdown(std::net::Shutdown::Write);
        self.linger(c.ws.get_ref().tcp());
        // Its requests still at control stay in `in_flight` until control
        // answers them (see `answer`): connecting, sending a burst and
        // leaving, over and over, must not queue more than MAX_IN_FLIGHT.
        self.registry
            .release(canonical_ip(&c.peer), c.privileged_place);
        self.ctx
            .stats
            .ws_clients
            .store(self.clients.len() as u32, Ordering::Relaxed);
    }
}

impl Broadcaster {
    /// Keep a closed client's socket for up to [`LINGER`], discarding what
    /// it still sends: closing a socket with unread data makes the kernel
    /// answer with a reset, which can destroy the close frame before the
    /// client reads it.
    fn linger(&mut self, tcp: &std::net::TcpStream) {
        let Ok(copy) = tcp.try_clone() else { return };
        if self.lingering.len() >= MAX_LINGERING {
            self.lingering.remove(0);
        }
        self.lingering.push((copy, Instant::now() + LINGER));
    }

    /// Discard what lingering sockets received; drop those that are done.
    pub(super) fn drain_lingering(&mut self) {
        let now = Instant::now();
        let mut buf = [0u8; 4096];
        self.lingering.retain_mut(|(s, until)| {
            if now >= *until {
                return false;
            }
            for _ in 0..4 {
                match std::io::Read::read(s, &mut buf) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) => return e.kind() == std::io::ErrorKind::WouldBlock,
                }
            }
            true
        });
    }
}

/// How long a closed client's socket is kept to let the close frame arrive.
const LINGER: Duration = Duration::from_secs(1);
/// Most sockets kept lingering.
const MAX_LINGERING: usize = 64;
