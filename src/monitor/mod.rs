//! Hearing and keeping what the box hears: the Opus monitor stream,
//! recordings to WAV and the replay buffer.
//!
//! ```text
//! p4-capture ─► SPSC ring of blocks ─► p4-monitor ─┬─► Opus, one encoder per preset in use
//!   (pushes only while the gate is     (normal     │     └─► SPSC ring of packets ─► p4-ws ─► listeners
//!    open: someone listens, records    priority)   └─► the tape: the last N seconds in the
//!    or the replay buffer is on)                        recording's sample format (preallocated)
//!                                                             ▲
//!   WS commands ─► p4-record: start/stop, save the replay buffer, list, delete;
//!                  follows the tape and writes WAV files; quota and free-space guard
//! ```
//!
//! Threads: `p4-monitor` encodes and fills the tape, `p4-record` does every
//! disk operation. Neither is a real-time thread; the capture thread only
//! makes a `Copy` push of each block into the monitor's ring, and only while
//! [`MonitorHub::gate`] is open, so with nobody listening, nothing recording
//! and the replay buffer off the monitor costs one atomic load per block.
//! A full ring drops the block for the monitor (counted in
//! `ring_drops[MONITOR_DROP_SLOT]`), never makes capture wait (except for a
//! clockless source, which waits for every consumer by design).
//!
//! Never uses dsp, control or transport internals; the WebSocket and HTTP
//! servers use [`MonitorLink`] and [`files`].

pub mod commands;
pub mod encoder;
pub mod files;
pub mod packet;
pub mod recorder;
pub mod tape;
mod thread;
pub mod tickets;
mod wav_out;

use crate::config::Config;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

pub use thread::{spawn, Spawned};

/// Index of the monitor's ring in `Stats::ring_drops`.
pub const MONITOR_DROP_SLOT: usize = 3;

/// The four quality presets of the seeds' embedded audio subsystem (its
/// "input" bit rates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// 16 kbit/s: speech-grade, for a bad network.
    Low = 0,
    /// 64 kbit/s: the default; music sounds like music.
    Medium = 1,
    /// 128 kbit/s.
    High = 2,
    /// 256 kbit/s: near-transparent.
    Ultra = 3,
}

impl Preset {
    /// Every preset, in wire order.
    pub const ALL: [Preset; 4] = [Preset::Low, Preset::Medium, Preset::High, Preset::Ultra];

    /// Target bit rate, bit/s.
    pub fn bitrate(self) -> i32 {
        match self {
            Preset::Low => 16_000,
            Preset::Medium => 64_000,
            Preset::High => 128_000,
            Preset::Ultra => 256_000,
        }
    }

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Low => "low",
            Preset::Medium => "medium",
            Preset::High => "high",
            Preset::Ultra => "ultra",
        }
    }

    /// From the name on the wire.
    pub fn parse(s: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == s)
    }

    /// From the wire index.
    pub fn from_index(i: u8) -> Option<Preset> {
        Preset::ALL.get(i as usize).copied()
    }

    /// Bit in [`MonitorHub::wanted`].
    pub fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Counters of the monitor thread (read by `server_status`).
#[derive(Debug, Default)]
pub struct MonitorCounters {
    /// Opus packets produced, per preset.
    pub packets: [AtomicU64; 4],
    /// Packets dropped because the broadcaster's ring was full.
    pub packet_drops: AtomicU64,
    /// Time spent in `opus_encode_float`, ns (all presets).
    pub encode_ns: AtomicU64,
    /// Blocks that arrived after a gap (a dropped block, an xrun).
    pub gaps: AtomicU64,
    /// Listeners per preset (set by the broadcaster).
    pub listeners: [AtomicU32; 4],
    /// Kernel thread id of `p4-monitor` (CPU accounting).
    pub tid: AtomicI32,
}

/// What the recorder reports (written by `p4-record`, read by status);
/// on the wire as `recordings.state` and `server_status.monitor.recording`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RecorderStatus {
    /// A recording is running.
    #[serde(rename = "active")]
    pub recording: bool,
    /// Its current file.
    pub file: Option<String>,
    /// Seconds recorded into it.
    pub seconds: f64,
    /// Why the last recording stopped by itself (full disk, quota, ...).
    pub error: Option<String>,
    /// Seconds the replay buffer holds now, and at most.
    pub replay_s: f64,
    /// Replay capacity.
    pub replay_capacity_s: f64,
    /// Bytes all recordings take.
    pub used_bytes: u64,
    /// The quota.
    pub quota_bytes: u64,
    /// Free bytes on the recordings' file system.
    pub free_bytes: u64,
}

/// State shared by capture, `p4-monitor`, `p4-record` and the WebSocket
/// broadcaster.
#[derive(Debug)]
pub struct MonitorHub {
    /// Capture pushes blocks to the monitor only while this is set.
    pub gate: Arc<AtomicBool>,
    /// Presets someone listens to ([`Preset::bit`]), set by the broadcaster.
    pub wanted: AtomicU8,
    /// A recording needs the tape.
    pub recording: AtomicBool,
    /// The replay buffer is on (the tape always runs).
    pub replay_on: bool,
    /// Counters.
    pub counters: MonitorCounters,
    /// The recorder's report.
    pub status: Mutex<RecorderStatus>,
}

impl MonitorHub {
    /// A hub for `config`; the gate is open from the start when the replay
    /// buffer is on.
    pub fn new(config: &Config) -> Arc<Self> {
        let replay_on =
            config.record.enabled && config.record.replay_s > 0.0 && config.state_dir().is_some();
        Arc::new(MonitorHub {
            gate: Arc::new(AtomicBool::new(replay_on)),
            wanted: AtomicU8::new(0),
            recording: AtomicBool::new(false),
            replay_on,
            counters: MonitorCounters::default(),
            status: Mutex::new(RecorderStatus::default()),
        })
    }

    /// Open or close the gate after a change of listeners or recording.
    pub fn update_gate(&self) {
        let open = self.replay_on
            || self.recording.load(Ordering::Relaxed)
            || self.wanted.load(Ordering::Relaxed) != 0;
        self.gate.store(open, Ordering::Relaxed);
    }

    /// Set the presets in use (the broadcaster, each turn).
    pub fn set_wanted(&self, mask: u8, per_preset: [u32; 4]) {
        for (c, n) in self.counters.listeners.iter().zip(per_preset) {
            c.store(n, Ordering::Relaxed);
        }
        if self.wanted.swap(mask, Ordering::Relaxed) != mask {
            self.update_gate();
        }
    }

    /// A copy of the recorder's report.
    pub fn recorder_status(&self) -> RecorderStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What the WebSocket broadcaster holds to serve listeners and pass on
/// recording commands.
pub struct MonitorLink {
    /// Shared state.
    pub hub: Arc<MonitorHub>,
    /// Opus packets from `p4-monitor`.
    pub packets: ringbuf::HeapCons<packet::AudioPacket>,
    /// Commands to `p4-record`.
    pub requests: std::sync::mpsc::SyncSender<recorder::RecRequest>,
    /// Its answers.
    pub replies: std::sync::mpsc::Receiver<recorder::RecReply>,
    /// Whether listening is allowed (`monitor.enabled`).
    pub listen_enabled: bool,
    /// `monitor.max-listeners`.
    pub max_listeners: u32,
    /// Opus frame length, ms.
    pub frame_ms: u32,
}
