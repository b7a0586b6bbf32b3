//! Plugging into a rig: the outputs that let VJ, lighting and DJ tools find
//! phase4 and follow its tempo (issue 13).
//!
//! - [`mdns`]: DNS-SD announcement (through avahi-daemon, or our own
//!   responder) of `_oscjson._tcp`, `_osc._udp` and `_http._tcp`;
//! - [`oscquery`]: the OSCQuery server (namespace, HOST_INFO, LISTEN
//!   streaming) and the OSC input port for writable settings;
//! - [`link`]: the tempo feed for the separate `phase4-link` program, which
//!   is the Ableton Link peer (Link is GPL; phase4 stays MIT);
//! - [`midi`]: MIDI clock through the ALSA sequencer (`p4-midi`);
//! - [`wled`]: WLED Audio Sync v2 multicast.
//!
//! Threads: `p4-rig` ([`hub`]) is the one consumer of the pipeline for all
//! of these: it drains its own rings (blocks from capture when WLED is on,
//! feature frames from the workers when any output needs them) on a 10 ms
//! clock of its own, so the real-time threads only push one more `Copy`
//! value per block or hop and are never made to wake it. Nothing here
//! exists while its section is off.
//!
//! Never runs on, locks against or allocates for a real-time thread.

pub mod hub;
pub mod link;
pub mod mdns;
pub mod midi;
pub mod oscquery;
mod spawn;
pub mod status;
pub mod wled;

pub use spawn::{enabled, spawn_rig_outputs, taps, ControlAccess, RigCtx, RigPending, RigTaps};

use crate::rt::AtomicF32;
use midi::clock::TempoSnapshot;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

/// Bits of [`RigStats::enabled`].
pub mod outputs {
    /// mDNS announcement.
    pub const DISCOVERY: u8 = 1;
    /// OSCQuery server.
    pub const OSCQUERY: u8 = 2;
    /// Link feed.
    pub const LINK: u8 = 4;
    /// MIDI clock.
    pub const MIDI: u8 = 8;
    /// WLED Audio Sync.
    pub const WLED: u8 = 16;
    /// OSC input port.
    pub const OSC_INPUT: u8 = 32;
}

/// Counters and states of the rig outputs (all atomics; part of
/// [`crate::stats::Stats`]).
#[derive(Debug, Default)]
pub struct RigStats {
    /// Which outputs run ([`outputs`] bits).
    pub enabled: AtomicU8,
    /// Kernel thread ids, for CPU accounting (0 = not running).
    pub tid_rig: AtomicI32,
    /// `p4-midi`.
    pub tid_midi: AtomicI32,
    /// `p4-oscq`.
    pub tid_oscq: AtomicI32,
    /// WLED packets sent.
    pub wled_sent: AtomicU64,
    /// WLED packets the network refused.
    pub wled_failed: AtomicU64,
    /// Link feed datagrams sent.
    pub link_sent: AtomicU64,
    /// Link feed datagrams refused (phase4-link not running).
    pub link_failed: AtomicU64,
    /// [`midi::MidiState`] as u8.
    pub midi_state: AtomicU8,
    /// Clock pulses sent.
    pub midi_pulses: AtomicU64,
    /// Sequencer ports subscribed to ours.
    pub midi_subscribers: AtomicU32,
    /// Messages the sequencer refused.
    pub midi_failed: AtomicU64,
    /// mDNS backend in use (see [`mdns_state`]).
    pub mdns_state: AtomicU8,
    /// OSCQuery WebSocket clients.
    pub oscq_clients: AtomicU32,
    /// OSCQuery HTTP requests answered.
    pub oscq_requests: AtomicU64,
    /// OSC input messages applied.
    pub osc_in_ok: AtomicU64,
    /// OSC input messages refused (bad value, no permission, rate).
    pub osc_in_refused: AtomicU64,
    /// Latest tempo seen by `p4-rig` (0 while not locked).
    pub bpm: AtomicF32,
}

/// Values of [`RigStats::mdns_state`].
pub mod mdns_state {
    /// Not announcing.
    pub const OFF: u8 = 0;
    /// Registered with avahi-daemon.
    pub const AVAHI: u8 = 1;
    /// Our own responder answers.
    pub const BUILTIN: u8 = 2;
    /// Waiting for avahi-daemon (backend "avahi").
    pub const WAITING: u8 = 3;
    /// Names as shown.
    pub const NAMES: [&str; 4] = ["off", "avahi", "builtin", "waiting-for-avahi"];
}

impl RigStats {
    /// Whether output `bit` runs.
    pub fn on(&self, bit: u8) -> bool {
        self.enabled.load(Ordering::Relaxed) & bit != 0
    }
}

/// The tempo as `p4-rig` last saw it, for the MIDI thread. A mutex between
/// two threads that are not real-time, held for a copy.
#[derive(Debug, Default)]
pub struct TempoShare {
    snap: Mutex<TempoSnapshot>,
    fresh: AtomicBool,
}

impl TempoShare {
    /// Publish a new tempo.
    pub fn set(&self, s: TempoSnapshot) {
        if let Ok(mut g) = self.snap.lock() {
            *g = s;
        }
        self.fresh.store(true, Ordering::Relaxed);
    }

    /// The latest tempo.
    pub fn get(&self) -> TempoSnapshot {
        self.snap.lock().map(|g| *g).unwrap_or_default()
    }
}
