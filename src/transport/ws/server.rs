//! The broadcaster thread (`p4-ws`): one loop that owns every client.
//!
//! Each turn: adopt new clients, pass on control's answers, drain the frame
//! rings, send a snapshot when one is due, flush every client once (one
//! write per client per turn), drop clients that stayed stuck, then sleep in
//! `poll()` on the client sockets until the next snapshot is due or a
//! client sends something. FFT frames are therefore sent in the turn after
//! they were computed, at most one snapshot period late; every frame is
//! sent (none is skipped for a client that keeps up).

use super::accept::{token_matches, Accepted};
use super::client::{Client, Flow};
use super::protocol::{self as p, Action, Outbound};
use super::status::StatusBuilder;
use super::WsCtx;
use crate::control::{Command, Request, Response};
use crate::stats::Role;
use crate::types::{onset_bits, BandsFrame, SpectrumFrame, BAND_NAMES};
use ringbuf::traits::Consumer;
use ringbuf::HeapCons;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

/// How often `server_status` goes out.
const STATUS_EVERY: Duration = Duration::from_millis(500);
/// Longest sleep in poll (heartbeat, stop flag, new clients).
const MAX_SLEEP: Duration = Duration::from_millis(50);

pub(super) fn spawn(
    ctx: WsCtx,
    accepted: Receiver<Accepted>,
    active: Arc<AtomicUsize>,
    bands: HeapCons<BandsFrame>,
    spectrum: HeapCons<SpectrumFrame>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-ws".into())
        .spawn(move || {
            ctx.stats.tid[Role::Ws as usize].store(crate::service::gettid(), Ordering::Relaxed);
            let mut b = Broadcaster::new(ctx, accepted, active, bands, spectrum);
            b.run();
        })
}

struct Broadcaster {
    ctx: WsCtx,
    accepted: Receiver<Accepted>,
    active: Arc<AtomicUsize>,
    bands: HeapCons<BandsFrame>,
    spectrum: HeapCons<SpectrumFrame>,
    clients: Vec<Client>,
    next_id: u64,
    last_meta: Option<p::Meta>,
    meta_json: String,
    latest_bands: BandsFrame,
    latest_spec: SpectrumFrame,
    snapshot_seq: u64,
    next_snapshot: Instant,
    next_status: Instant,
    fft_buf: Vec<u8>,
    status: StatusBuilder,
    drops: u64,
}

impl Broadcaster {
    fn new(
        ctx: WsCtx,
        accepted: Receiver<Accepted>,
        active: Arc<AtomicUsize>,
        bands: HeapCons<BandsFrame>,
        spectrum: HeapCons<SpectrumFrame>,
    ) -> Self {
        let status = StatusBuilder::new(&ctx.stats);
        Broadcaster {
            ctx,
            accepted,
            active,
            bands,
            spectrum,
            clients: Vec::new(),
            next_id: 1,
            last_meta: None,
            meta_json: String::new(),
            latest_bands: BandsFrame::default(),
            latest_spec: SpectrumFrame::zeroed(),
            snapshot_seq: 0,
            next_snapshot: Instant::now(),
            next_status: Instant::now() + STATUS_EVERY,
            fft_buf: Vec::with_capacity(4 + 4 * crate::types::MAX_FFT_BINS),
            status,
            drops: 0,
        }
    }

    fn run(&mut self) {
        while !self.ctx.stop.load(Ordering::Relaxed) {
            self.ctx.stats.beat(Role::Ws);
            let now = Instant::now();
            self.adopt();
            self.answer();
            self.drain_frames();
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
            if now >= self.next_status {
                self.next_status = now + STATUS_EVERY;
                let s = self.status.build(
                    &self.ctx,
                    self.clients.len() as u32,
                    self.drops,
                    hz,
                    self.snapshot_seq,
                );
                let json = Outbound::ServerStatus(&s).to_json();
                self.broadcast_text(&json, true);
            }
            self.flush_all(now);
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

    fn meta(&self) -> p::Meta {
        build_meta(&self.ctx)
    }

    /// Send meta to everyone when it changed (or when `force`).
    fn maybe_meta(&mut self, force: bool) {
        let m = self.meta();
        if force || self.last_meta.as_ref() != Some(&m) {
            self.meta_json = Outbound::Meta(&m).to_json();
            self.last_meta = Some(m);
            let json = self.meta_json.clone();
            self.broadcast_text(&json, false);
        }
    }

    fn adopt(&mut self) {
        while let Ok(a) = self.accepted.try_recv() {
            let id = self.next_id;
            self.next_id += 1;
            match Client::new(id, a.ws, a.authorized, a.peer) {
                Ok(mut c) => {
                    c.fill_budget(self.ctx.config.ws.max_messages_per_s);
                    if self.last_meta.is_none() {
                        let m = self.meta();
                        self.meta_json = Outbound::Meta(&m).to_json();
                        self.last_meta = Some(m);
                    }
                    c.push(Message::Text(self.meta_json.clone()), false);
                    let auth = Outbound::Auth {
                        authorized: c.authorized,
                        required: !self.ctx.config.ws.token.is_empty(),
                    };
                    c.push(Message::Text(auth.to_json()), false);
                    log::info!(
                        "ws: client {} connected from {}{}",
                        id,
                        c.peer,
                        if c.authorized { "" } else { " (watch only)" }
                    );
                    self.clients.push(c);
                    self.ctx
                        .stats
                        .ws_clients
                        .store(self.clients.len() as u32, Ordering::Relaxed);
                    let _ = self.ctx.requests.send(Request {
                        client: id,
                        command: Command::Hello,
                    });
                }
                Err(e) => {
                    log::warn!("ws: cannot set up client: {e}");
                    self.active.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn send_to(&mut self, id: u64, json: String) {
        if let Some(c) = self.clients.iter_mut().find(|c| c.id == id) {
            c.push(Message::Text(json), false);
        }
    }

    fn answer(&mut self) {
        while let Ok(r) = self.ctx.replies.try_recv() {
            for resp in r.responses {
                match resp {
                    Response::Error(reason) => {
                        self.send_to(r.client, Outbound::Error { reason }.to_json())
                    }
                    Response::Devices(items) => {
                        let items = items.iter().map(p::DeviceJson::from).collect();
                        self.send_to(r.client, Outbound::Devices { items }.to_json());
                    }
                    Response::Presets(items) => {
                        let items = items
                            .into_iter()
                            .map(|i| p::PresetJson {
                                name: i.name,
                                saved_at: i.saved_at,
                            })
                            .collect();
                        self.send_to(r.client, Outbound::Presets { items }.to_json());
                    }
                    Response::MetaChanged => self.maybe_meta(true),
                }
            }
        }
    }

    fn broadcast_text(&mut self, json: &str, droppable: bool) {
        for c in self.clients.iter_mut() {
            self.drops += c.push(Message::Text(json.to_string()), droppable);
        }
    }

    fn drain_frames(&mut self) {
        while let Some(f) = self.spectrum.try_pop() {
            if f.has_bins && !self.clients.is_empty() {
                p::fft_frame(f.bins(), &mut self.fft_buf);
                for c in self.clients.iter_mut() {
                    self.drops += c.push(Message::Binary(self.fft_buf.clone()), true);
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
                self.broadcast_text(&ev, true);
            }
            if f.tempo.beat {
                let ev = Outbound::Beat {
                    index: f.tempo.beat_index,
                    bpm: f.tempo.bpm,
                    confidence: f.tempo.confidence,
                    t: f.time_s - f.tempo.beat_lag_s as f64,
                }
                .to_json();
                self.broadcast_text(&ev, true);
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
                        self.broadcast_text(&ev, true);
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
            t: b.time_s,
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
        let json = Outbound::Snapshot(&snap).to_json();
        self.broadcast_text(&json, true);
    }

    fn flush_all(&mut self, now: Instant) {
        let stall = Duration::from_secs_f64(self.ctx.config.ws.stall_timeout_s);
        let mut i = 0;
        while i < self.clients.len() {
            let c = &mut self.clients[i];
            let flow = c.write_out(now);
            let gone = match flow {
                Flow::Closed => Some("closed"),
                _ if c.stalled_for(now) > stall => Some("stopped reading (ws.stall-timeout-s)"),
                _ => None,
            };
            if let Some(why) = gone {
                self.remove(i, why);
            } else {
                i += 1;
            }
        }
    }

    fn remove(&mut self, i: usize, why: &str) {
        let mut c = self.clients.swap_remove(i);
        log::info!(
            "ws: client {} ({}) disconnected: {why}; {} frame(s) dropped for it",
            c.id,
            c.peer,
            c.drops
        );
        if why != "closed" {
            let _ = c.ws.close(Some(CloseFrame {
                code: CloseCode::Policy,
                reason: why.to_string().into(),
            }));
            let _ = c.ws.flush();
        }
        let _ = c.ws.get_ref().shutdown(std::net::Shutdown::Both);
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.ctx
            .stats
            .ws_clients
            .store(self.clients.len() as u32, Ordering::Relaxed);
    }

    /// Sleep until the next snapshot (at most [`MAX_SLEEP`]) or until a
    /// client sends something; then read everything that arrived.
    fn sleep_and_read(&mut self) {
        let wait = self
            .next_snapshot
            .saturating_duration_since(Instant::now())
            .min(MAX_SLEEP);
        let ms = wait.as_millis().max(1) as u16;
        let ready: Vec<bool> = {
            let mut fds: Vec<nix::poll::PollFd> = self
                .clients
                .iter()
                .map(|c| {
                    nix::poll::PollFd::new(c.ws.get_ref().as_fd(), nix::poll::PollFlags::POLLIN)
                })
                .collect();
            if fds.is_empty() {
                std::thread::sleep(Duration::from_millis(ms as u64));
                return;
            }
            match nix::poll::poll(&mut fds, ms) {
                Ok(n) if n > 0 => fds
                    .iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect(),
                _ => return,
            }
        };
        let mut i = 0;
        let mut k = 0;
        while i < self.clients.len() {
            let was_ready = ready.get(k).copied().unwrap_or(false);
            k += 1;
            if was_ready && !self.read_client(i) {
                self.remove(i, "closed");
                continue;
            }
            i += 1;
        }
    }

    /// Read everything a client sent; false when it is gone.
    fn read_client(&mut self, i: usize) -> bool {
        loop {
            let msg = match self.clients[i].ws.read() {
                Ok(m) => m,
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return true
                }
                Err(tungstenite::Error::Capacity(e)) => {
                    let c = &mut self.clients[i];
                    log::info!(
                        "ws: client {} sent an oversized message ({e}); closing",
                        c.id
                    );
                    let _ = c.ws.close(Some(CloseFrame {
                        code: CloseCode::Size,
                        reason: "message too big".into(),
                    }));
                    let _ = c.ws.flush();
                    return false;
                }
                Err(_) => return false,
            };
            match msg {
                Message::Text(t) => self.inbound(i, &t),
                Message::Binary(_) => {
                    let e = Outbound::Error {
                        reason: "binary frames are not accepted; send JSON text".into(),
                    };
                    self.clients[i].push(Message::Text(e.to_json()), false);
                }
                Message::Close(_) => return false,
                _ => {}
            }
        }
    }

    fn inbound(&mut self, i: usize, text: &str) {
        let now = Instant::now();
        let ws = &self.ctx.config.ws;
        let (max, rate) = (ws.max_message_bytes as usize, ws.max_messages_per_s);
        let token = ws.token.clone();
        let c = &mut self.clients[i];
        let err = |reason: String| Message::Text(Outbound::Error { reason }.to_json());
        if !c.admit(rate, now) {
            if c.should_report_rate(now) {
                c.push(err(format!("rate limit: at most {rate} messages per second (ws.max-messages-per-s); message dropped")), false);
            }
            return;
        }
        if text.len() > max {
            c.push(
                err(format!(
                    "message too large: {} bytes, limit {max} (ws.max-message-bytes)",
                    text.len()
                )),
                false,
            );
            return;
        }
        let action = match p::parse(text) {
            Ok(m) => m.into_action(),
            Err(reason) => {
                c.push(err(reason), false);
                return;
            }
        };
        match action {
            Action::Auth(t) => {
                if token.is_empty() || token_matches(&token, &t) {
                    c.authorized = true;
                    let a = Outbound::Auth {
                        authorized: true,
                        required: !token.is_empty(),
                    };
                    c.push(Message::Text(a.to_json()), false);
                } else {
                    c.push(err("auth: wrong token".into()), false);
                }
            }
            Action::Command(cmd) => {
                if cmd.mutates() && !c.authorized {
                    c.push(
                        err("not authorized: this server needs the control token to change settings (connect with ?token=... or send {\"type\":\"auth\",\"token\":...})".into()),
                        false,
                    );
                    return;
                }
                let _ = self.ctx.requests.send(Request {
                    client: c.id,
                    command: cmd,
                });
            }
        }
    }
}

/// The meta message for the settings in force.
pub(super) fn build_meta(ctx: &WsCtx) -> p::Meta {
    let cfg = ctx.shared.config();
    let sr = match ctx.shared.sample_rate.load(Ordering::Relaxed) {
        0 => cfg.audio.sample_rate_hz,
        sr => sr,
    };
    let (index, name) = ctx.shared.device();
    let edges = |b: crate::config::BandConfig| p::BandEdges {
        lo_hz: b.lo_hz,
        hi_hz: b.hi_hz,
    };
    p::Meta {
        sr,
        blocksize: cfg.audio.block_frames,
        n_fft_bins: cfg.fft.n_bins,
        bands: p::Lmh {
            low: edges(cfg.dsp.low),
            mid: edges(cfg.dsp.mid),
            high: edges(cfg.dsp.high),
        },
        fft_enabled: cfg.fft.enabled,
        fft_db_floor: cfg.fft.db_floor,
        fft_db_ceiling: cfg.fft.db_ceiling,
        fft_f_min: cfg.fft.f_min_hz,
        fft_send_raw_db: cfg.fft.send_raw_db,
        fft_peak_smear_oct: cfg.fft.peak_smear_oct,
        tau: p::Lmh {
            low: cfg.dsp.low.tau_s,
            mid: cfg.dsp.mid.tau_s,
            high: cfg.dsp.high.tau_s,
        },
        autoscale: p::AutoscaleMeta {
            tau_attack_s: cfg.autoscale.tau_attack_s,
            tau_release_s: cfg.autoscale.tau_release_s,
            noise_floor: cfg.autoscale.noise_floor,
            strength: cfg.autoscale.strength,
        },
        ws_snapshot_hz: cfg.ws.snapshot_hz,
        device: p::DeviceMeta { index, name },
        fft_window: cfg.fft.window_frames,
        fft_hop: cfg.fft.hop_frames,
        onset: p::OnsetMeta {
            enabled: cfg.onset.enabled,
            sensitivity: cfg.onset.sensitivity,
            min_gap_s: cfg.onset.min_gap_s,
        },
        tempo: p::TempoMeta {
            enabled: cfg.tempo.enabled,
            min_bpm: cfg.tempo.min_bpm,
            max_bpm: cfg.tempo.max_bpm,
            lock_confidence: cfg.tempo.lock_confidence,
        },
        silence: p::SilenceMeta {
            threshold_dbfs: cfg.silence.threshold_dbfs,
            hold_s: cfg.silence.hold_s,
        },
        osc: p::OscMeta {
            enabled: cfg.osc.enabled,
            prefix: cfg.osc.prefix.clone(),
            send_fft: cfg.osc.send_fft,
            destinations: cfg
                .osc
                .destinations
                .iter()
                .map(|d| p::OscDest {
                    host: d.host.clone(),
                    port: d.port,
                })
                .collect(),
        },
        auth_required: !ctx.config.ws.token.is_empty(),
        version: env!("CARGO_PKG_VERSION"),
    }
}
