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

use super::accept::{canonical_ip, Accepted, Registry};
use super::client::{Client, Flow};
use super::meta::build_meta;
use super::protocol::{self as p, Outbound};
use super::status::StatusBuilder;
use super::WsCtx;
use crate::control::secret::Secret;
use crate::control::{Command, Request, Response};
use crate::stats::Role;
use crate::types::{onset_bits, BandsFrame, SpectrumFrame, BAND_NAMES};
use ringbuf::traits::Consumer;
use ringbuf::HeapCons;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes};

/// How often `server_status` goes out.
const STATUS_EVERY: Duration = Duration::from_millis(500);
/// Longest sleep in poll (heartbeat, stop flag, new clients).
pub(super) const MAX_SLEEP: Duration = Duration::from_millis(50);
/// Largest `devices` or `presets` message: longer lists are cut and say
/// `"truncated": true`, so a message that cannot be sent is never built.
pub const MAX_LIST_BYTES: usize = 64 * 1024;

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
    registry: Arc<Registry>,
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
    /// Requests sent to control and not answered yet, all clients.
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
                let mut s = self.status.build(
                    &self.ctx,
                    self.clients.len() as u32,
                    self.drops,
                    hz,
                    self.snapshot_seq,
                );
                s.monitor = self.audio_status(true);
                let json = Outbound::ServerStatus(&s).to_json();
                self.broadcast_frame(json);
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
                    self.registry.release(ip);
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
        log::info!(
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
        let status = self.greeting_status();
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

    /// A `server_status` of now, counting the new client (from a builder
    /// of its own, so the 2 Hz figures keep their intervals).
    fn greeting_status(&mut self) -> Message {
        let hz = self
            .last_meta
            .as_ref()
            .map_or(60.0, |m| m.ws_snapshot_hz as f64);
        let mut s = self.greet_status.build(
            &self.ctx,
            self.clients.len() as u32,
            self.drops,
            hz,
            self.snapshot_seq,
        );
        s.monitor = self.audio_status(false);
        Message::Text(Outbound::ServerStatus(&s).to_json().into())
    }

    /// Queue a reply for client `id`; a client whose replies pile up is
    /// closed.
    pub(super) fn reply_to(&mut self, id: u64, json: String) {
        if let Some(i) = self.clients.iter().position(|c| c.id == id) {
            if !self.clients[i].push_reply(Message::Text(json.into())) {
                self.remove(i, CloseCode::Policy, "not reading its replies");
            }
        }
    }

    fn answer(&mut self) {
        while let Ok(r) = self.ctx.replies.try_recv() {
            // A client that left took its outstanding requests off the
            // total already (see `remove`).
            if let Some(c) = self.clients.iter_mut().find(|c| c.id == r.client) {
                c.in_flight = c.in_flight.saturating_sub(1);
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            for resp in r.responses {
                match resp {
                    Response::Error(reason) => {
                        self.reply_to(r.client, Outbound::error(reason).to_json());
                        self.snap_back(r.client);
                    }
                    Response::Devices(items) => {
                        self.devices_json = devices_json(&items);
                        self.reply_to(r.client, self.devices_json.clone());
                    }
                    Response::DevicesChanged(items) => {
                        self.devices_json = devices_json(&items);
                        for id in self.clients.iter().map(|c| c.id).collect::<Vec<_>>() {
                            self.reply_to(id, self.devices_json.clone());
                        }
                    }
                    Response::Presets(list) => {
                        self.presets_json = bounded_list(
                            &list.items,
                            |i| p::PresetJson {
                                name: i.name.clone(),
                                saved_at: p::local_time(i.saved_at, "%Y-%m-%d %H:%M"),
                            },
                            |items, truncated| {
                                Outbound::Presets {
                                    items,
                                    truncated: truncated || list.truncated,
                                }
                                .to_json()
                            },
                        );
                        self.reply_to(r.client, self.presets_json.clone());
                    }
                    Response::MetaChanged => self.maybe_meta(true),
                    Response::Clamped(list) => {
                        // The sender gets this meta instead of the plain one.
                        let json = p::with_clamped(&self.meta_json, &list);
                        if let Some(c) = self.clients.iter_mut().find(|c| c.id == r.client) {
                            c.meta_due = false;
                        }
                        self.reply_to(r.client, json);
                    }
                }
            }
        }
    }

    /// After a refused command: the meta in force, so the client's
    /// controls snap back to the real values (the Python UI re-reads it).
    pub(super) fn snap_back(&mut self, id: u64) {
        if self.last_meta.is_none() {
            self.maybe_meta(true);
        }
        self.reply_to(id, self.meta_json.to_string());
    }

    /// The meta in force, as JSON.
    pub(super) fn meta_json(&self) -> &str {
        &self.meta_json
    }

    /// Queue `json` for every client. It was encoded once; the clients'
    /// queues share its one buffer (a reference count, no copy each).
    fn broadcast_frame(&mut self, json: String) {
        if self.clients.is_empty() {
            return;
        }
        let shared = Utf8Bytes::from(json);
        for c in self.clients.iter_mut() {
            self.drops += c.push_frame(Message::Text(shared.clone()));
        }
    }

    fn drain_frames(&mut self) {
        while let Some(f) = self.spectrum.try_pop() {
            if f.has_bins && !self.clients.is_empty() {
                p::fft_frame(f.bins(), &mut self.fft_buf);
                // Built once, shared by every client's queue.
                let shared = bytes::Bytes::copy_from_slice(&self.fft_buf);
                for c in self.clients.iter_mut() {
                    self.drops += c.push_frame(Message::Binary(shared.clone()));
                }
            }
            if f.onset {
                let ev = Outbound::Onset {
                    band: "broadband",
                    t: f.time_s - f.onset_lag_s as f64,
                    strength: f.onset_strength,
                    count: f.onset_count,
                }
                .to_json();
                self.broadcast_frame(ev);
            }
            if f.tempo.beat {
                let ev = Outbound::Beat {
                    index: f.tempo.beat_index,
                    bpm: f.tempo.bpm,
                    confidence: f.tempo.confidence,
                    t: f.time_s - f.tempo.beat_lag_s as f64,
                }
                .to_json();
                self.broadcast_frame(ev);
            }
            self.latest_spec = f;
        }
        while let Some(f) = self.bands.try_pop() {
            if f.band_onsets != 0 && !self.clients.is_empty() {
                for (k, bit) in [onset_bits::LOW, onset_bits::MID, onset_bits::HIGH]
                    .iter()
                    .enumerate()
                {
                    if f.band_onsets & bit != 0 {
                        let ev = Outbound::Onset {
                            band: BAND_NAMES[k],
                            t: f.time_s,
                            strength: f.lmh[k],
                            count: f.band_onset_count[k],
                        }
                        .to_json();
                        self.broadcast_frame(ev);
                    }
                }
            }
            self.latest_bands = f;
        }
    }

    fn send_snapshot(&mut self) {
        self.snapshot_seq += 1;
        if self.clients.is_empty() {
            return;
        }
        let b = &self.latest_bands;
        let s = &self.latest_spec;
        let finite = |v: f32, floor: f32| if v.is_finite() { v.max(floor) } else { floor };
        let snap = p::Snapshot {
            seq: self.snapshot_seq,
            low: b.lmh[0],
            mid: b.lmh[1],
            high: b.lmh[2],
            low_raw: b.lmh_raw[0],
            mid_raw: b.lmh_raw[1],
            high_raw: b.lmh_raw[2],
            t: self.started.elapsed().as_secs_f64() * 1000.0,
            t_stream: b.time_s,
            bpm: if s.tempo.locked { s.tempo.bpm } else { 0.0 },
            low_onset: u8::from(b.band_onset_count[0] != self.onsets_seen[0]),
            mid_onset: u8::from(b.band_onset_count[1] != self.onsets_seen[1]),
            high_onset: u8::from(b.band_onset_count[2] != self.onsets_seen[2]),
            level: p::Level {
                rms_dbfs: finite(b.rms_dbfs, -160.0),
                peak_dbfs: finite(b.peak_dbfs, -160.0),
            },
            tempo: p::Tempo {
                bpm: if s.tempo.locked { s.tempo.bpm } else { 0.0 },
                confidence: s.tempo.confidence,
                phase: s.tempo.phase,
                locked: s.tempo.locked,
            },
            silent: b.silent,
            band_onsets: p::Lmh {
                low: b.band_onset_count[0],
                mid: b.band_onset_count[1],
                high: b.band_onset_count[2],
            },
            onset_count: s.onset_count,
            beat_index: s.tempo.beat_index,
            spectral: p::Spectral {
                centroid_hz: finite(s.centroid_hz, 0.0),
                flatness: finite(s.flatness, 0.0),
                rolloff_hz: finite(s.rolloff_hz, 0.0),
                flux: finite(s.flux, 0.0),
            },
        };
        self.onsets_seen = b.band_onset_count;
        let json = Outbound::Snapshot(&snap).to_json();
        self.broadcast_frame(json);
    }

    fn flush_all(&mut self, now: Instant) {
        let stall = Duration::from_secs_f64(self.ctx.config.ws.stall_timeout_s);
        let mut i = 0;
        while i < self.clients.len() {
            let c = &mut self.clients[i];
            let flow = c.write_out(&self.meta_json, now);
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
        log::info!(
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
        self.in_flight = self.in_flight.saturating_sub(c.in_flight);
        self.registry.release(canonical_ip(&c.peer));
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

/// The `devices` message for a listing.
fn devices_json(items: &[crate::control::DeviceItem]) -> String {
    bounded_list(
        items,
        |d| p::DeviceJson::from(d),
        |items, truncated| Outbound::Devices { items, truncated }.to_json(),
    )
}

/// The JSON of a list message built by `make(items, truncated)`, with as
/// many items as fit in [`MAX_LIST_BYTES`].
fn bounded_list<T, J: serde::Serialize>(
    items: &[T],
    convert: impl Fn(&T) -> J,
    make: impl Fn(Vec<J>, bool) -> String,
) -> String {
    let mut out = Vec::with_capacity(items.len());
    let mut bytes = 256;
    for item in items {
        let j = convert(item);
        bytes += serde_json::to_string(&j).map(|s| s.len() + 1).unwrap_or(0);
        if bytes > MAX_LIST_BYTES {
            return make(out, true);
        }
        out.push(j);
    }
    make(out, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::DeviceItem;

    #[test]
    fn list_messages_never_outgrow_the_limit() {
        let items: Vec<DeviceItem> = (0..5000)
            .map(|index| DeviceItem {
                index,
                name: format!("hw:CARD=Device{index},DEV=0"),
                description: "x".repeat(100),
                ..Default::default()
            })
            .collect();
        let json = bounded_list(
            &items,
            |d| p::DeviceJson::from(d),
            |items, truncated| Outbound::Devices { items, truncated }.to_json(),
        );
        assert!(json.len() <= MAX_LIST_BYTES, "{}", json.len());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["truncated"], true);
        assert!(v["items"].as_array().unwrap().len() > 100);
        let few = bounded_list(
            &items[..3],
            |d| p::DeviceJson::from(d),
            |items, truncated| Outbound::Devices { items, truncated }.to_json(),
        );
        let v: serde_json::Value = serde_json::from_str(&few).unwrap();
        assert_eq!(v["truncated"], false);
    }
}
