//! Counters and gauges every thread updates and the supervisor, the health
//! line and `server_status` read. All atomics: a reader never blocks a writer.
//!
//! Real-time safety: the real-time threads only call `fetch_add`/`store`
//! on these atomics and [`LatencyHistogram::record`], none of which
//! allocate or lock.

use crate::rt::{AtomicF32, RtGrant};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

/// The pipeline threads, in start order, each with a heartbeat slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// ALSA or WAV capture.
    Capture = 0,
    /// L/M/H, level, band onsets, silence.
    Bands = 1,
    /// FFT, log spectrum, spectral shape, broadband onsets, tempo.
    Spectrum = 2,
    /// OSC sender.
    Osc = 3,
    /// WebSocket broadcaster.
    Ws = 4,
}

/// Number of [`Role`]s.
pub const N_ROLES: usize = 5;
/// Thread names, indexed by [`Role`].
pub const ROLE_NAMES: [&str; N_ROLES] = ["capture", "bands", "spectrum", "osc", "ws"];
/// `ring_drops` slot of the rig outputs' block ring (`p4-rig`).
pub const RIG_DROP_SLOT: usize = 2;
/// The DSP workers that have an input ring, indexed like `ring_drops`.
pub const WORKERS: [Role; 2] = [Role::Bands, Role::Spectrum];

/// What the capture side currently has open.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceInfo {
    /// PCM name or WAV path.
    pub name: String,
    /// Sample format as negotiated ("S16_LE", ..., or "WAV").
    pub format: String,
    /// "mmap", "rw" or "wav".
    pub access: String,
    /// Sample rate in Hz.
    pub rate: u32,
    /// Channels opened.
    pub channels: u32,
    /// Frames per period.
    pub period: u32,
    /// Frames in the buffer.
    pub buffer: u32,
    /// Whether the device has a clock (false for the null/file plugins).
    pub clocked: bool,
    /// The sound cards' devices the PCM runs on, behind its plugins (empty
    /// for a WAV file, a server's plugin or before a device opens).
    pub hw: Vec<HwDevice>,
}

/// A sound card's PCM device, as alsa-lib reports an open PCM's chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HwDevice {
    /// Card number.
    pub card: u32,
    /// The card's id (`Loopback`, `Device`: what `CARD=` names), empty
    /// when its control device could not be asked.
    pub id: String,
    /// Device number on the card.
    pub device: u32,
}

/// The shared counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Blocks captured since start.
    pub blocks: AtomicU64,
    /// ALSA overruns recovered.
    pub xruns: AtomicU64,
    /// Suspends recovered.
    pub suspends: AtomicU64,
    /// Times the device went away and came back.
    pub reopens: AtomicU64,
    /// Whether a capture device is open (the capture thread's view; see
    /// [`Stats::delivering`]).
    pub device_up: AtomicBool,
    /// The supervisor saw no progress from the capture thread (it may be
    /// stuck in a driver or a sound server's library).
    pub capture_stale: AtomicBool,
    /// Since when the capture thread has been opening a device (0: it is
    /// not): an open can block for as long as a sound server does not
    /// answer.
    pub opening_since_ns: AtomicU64,
    /// Blocks dropped because a worker's input ring was full, per worker
    /// (bands, spectrum), then the rig outputs' ring ([`RIG_DROP_SLOT`])
    /// and the monitor's ring ([`crate::monitor::MONITOR_DROP_SLOT`]).
    pub ring_drops: [AtomicU64; 4],
    /// Feature frames dropped because an output ring was full.
    pub frame_drops: AtomicU64,
    /// OSC datagrams sent.
    pub osc_sent: AtomicU64,
    /// OSC datagrams the network refused.
    pub osc_failed: AtomicU64,
    /// Per OSC destination, in `[[osc.destinations]]` order.
    pub osc_dests: [OscDestStats; crate::config::MAX_OSC_DESTINATIONS],
    /// WebSocket clients connected.
    pub ws_clients: AtomicU32,
    /// Capture time stamp → OSC datagram sent.
    pub latency: LatencyHistogram,
    /// Last heartbeat of each thread (CLOCK_MONOTONIC ns; 0 = not started).
    pub heartbeat_ns: [AtomicU64; N_ROLES],
    /// Kernel thread id of each thread (for CPU accounting).
    pub tid: [AtomicI32; N_ROLES],
    /// SCHED_FIFO for the capture thread ([`RtGrant`] as u8).
    pub rt_capture: AtomicU8,
    /// SCHED_FIFO for the workers.
    pub rt_workers: AtomicU8,
    /// mlockall.
    pub mem_locked: AtomicU8,
    /// The CPU the per-block threads share (`realtime.cpu`), plus one;
    /// 0: not pinned.
    pub rt_cpu: AtomicU32,
    /// Per-block threads that could not be kept on that CPU.
    pub rt_cpu_refused: AtomicU32,
    /// Latest tempo, for status lines.
    pub bpm: AtomicF32,
    /// What is open (written when a device opens; never on the hot path).
    pub device: Mutex<DeviceInfo>,
    /// Why the last open of the capture device failed (empty once one
    /// succeeded): the STATUS says it while capture retries.
    pub open_error: Mutex<String>,
    /// The highest block peak since a probe last took it
    /// ([`Stats::note_peak`], [`Stats::take_peak`]).
    pub peak_since: AtomicU32,
    /// The rig outputs (mDNS, OSCQuery, Link, MIDI, WLED).
    pub rig: crate::rig::RigStats,
}

/// Counters of one OSC destination.
#[derive(Debug, Default)]
pub struct OscDestStats {
    /// Datagrams sent.
    pub sent: AtomicU64,
    /// Datagrams refused (or skipped after a refusal in the same frame).
    pub failed: AtomicU64,
    /// errno of the last refusal.
    pub last_errno: AtomicI32,
    /// Whether the destination has an address (literal, or resolved).
    pub resolved: AtomicBool,
}

fn grant_to_u8(g: RtGrant) -> u8 {
    match g {
        RtGrant::NotRequested => 0,
        RtGrant::Granted => 1,
        RtGrant::Refused => 2,
    }
}

fn u8_to_grant(v: u8) -> RtGrant {
    match v {
        1 => RtGrant::Granted,
        2 => RtGrant::Refused,
        _ => RtGrant::NotRequested,
    }
}

/// What [`Stats::peak_since`] adds to a peak in dBFS (at least −160), so
/// that the sum is positive and its `f32` bits order as the values do.
const PEAK_OFFSET_DB: f32 = 200.0;

impl Stats {
    /// A block's peak went by (the WebSocket broadcaster notes every
    /// frame's): kept if it is the highest since [`Stats::take_peak`].
    pub fn note_peak(&self, dbfs: f32) {
        if dbfs.is_nan() {
            return;
        }
        let v = (dbfs + PEAK_OFFSET_DB).clamp(f32::MIN_POSITIVE, 2.0 * PEAK_OFFSET_DB);
        self.peak_since.fetch_max(v.to_bits(), Ordering::Relaxed);
    }

    /// The highest peak in dBFS noted since the last call, if any was:
    /// what a probe reports for the device capture has open, which it
    /// does not open again.
    pub fn take_peak(&self) -> Option<f32> {
        match self.peak_since.swap(0, Ordering::Relaxed) {
            0 => None,
            bits => Some(f32::from_bits(bits) - PEAK_OFFSET_DB),
        }
    }

    /// Whether a capture device is open and delivering: open, and its
    /// thread making progress. What clients and the health line are told.
    pub fn delivering(&self) -> bool {
        self.device_up.load(Ordering::Relaxed) && !self.capture_stale.load(Ordering::Relaxed)
    }

    /// How long the capture thread has been opening a device, if it is.
    pub fn opening_for_ns(&self) -> Option<u64> {
        match self.opening_since_ns.load(Ordering::Relaxed) {
            0 => None,
            t => Some(crate::rt::now_ns().saturating_sub(t)),
        }
    }

    /// Mark a thread alive now.
    pub fn beat(&self, role: Role) {
        self.heartbeat_ns[role as usize].store(crate::rt::now_ns(), Ordering::Relaxed);
    }

    /// Record a real-time grant.
    pub fn set_grant(&self, slot: &AtomicU8, g: RtGrant) {
        slot.store(grant_to_u8(g), Ordering::Relaxed);
    }

    /// Keep the calling per-block thread (capture, a worker, the OSC
    /// sender) on the CPU they share, if one was chosen. Called once at the
    /// thread's start, before its loop.
    pub fn pin_hot_thread(&self) {
        let n = self.rt_cpu.load(Ordering::Relaxed);
        if n > 0 && !crate::rt::pin_current_thread(n as usize - 1) {
            self.rt_cpu_refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The CPU the per-block threads share; `None` when they are not
    /// pinned, or one of them could not be.
    pub fn pinned_cpu(&self) -> Option<usize> {
        match self.rt_cpu.load(Ordering::Relaxed) {
            0 => None,
            _ if self.rt_cpu_refused.load(Ordering::Relaxed) > 0 => None,
            n => Some(n as usize - 1),
        }
    }

    /// Read a real-time grant.
    pub fn grant(&self, slot: &AtomicU8) -> RtGrant {
        u8_to_grant(slot.load(Ordering::Relaxed))
    }

    /// The kernel thread id of each role (0 = not running).
    pub fn role_tids(&self) -> [i32; N_ROLES] {
        std::array::from_fn(|i| self.tid[i].load(Ordering::Relaxed))
    }

    /// A copy of the device description.
    pub fn device_info(&self) -> DeviceInfo {
        self.device.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Replace the device description (capture thread, at open time only).
    pub fn set_device_info(&self, info: DeviceInfo) {
        if let Ok(mut d) = self.device.lock() {
            *d = info;
        }
    }

    /// Threads whose heartbeat is older than `max_age_ns` (or never beat),
    /// among those in `roles`.
    pub fn stale_threads(&self, roles: &[Role], max_age_ns: u64) -> Vec<Role> {
        let now = crate::rt::now_ns();
        roles
            .iter()
            .copied()
            .filter(|r| {
                let t = self.heartbeat_ns[*r as usize].load(Ordering::Relaxed);
                t == 0 || now.saturating_sub(t) > max_age_ns
            })
            .collect()
    }
}

/// Number of latency buckets.
const N_BUCKETS: usize = 281;

/// Upper edge in µs of latency bucket `i`: 10 µs steps to 1 ms, 100 µs steps
/// to 10 ms, 1 ms steps to 100 ms, then one overflow bucket.
pub fn bucket_upper_us(i: usize) -> u64 {
    match i {
        0..=99 => (i as u64 + 1) * 10,
        100..=189 => 1000 + (i as u64 - 99) * 100,
        190..=279 => 10_000 + (i as u64 - 189) * 1000,
        _ => u64::MAX,
    }
}

fn bucket_of(us: u64) -> usize {
    if us < 1000 {
        (us / 10) as usize
    } else if us < 10_000 {
        100 + ((us - 1000) / 100) as usize
    } else if us < 100_000 {
        190 + ((us - 10_000) / 1000) as usize
    } else {
        N_BUCKETS - 1
    }
}

/// A fixed-bucket histogram of latencies, lock-free.
#[derive(Debug)]
pub struct LatencyHistogram {
    counts: [AtomicU64; N_BUCKETS],
    max_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            max_us: AtomicU64::new(0),
        }
    }
}

/// Percentiles of a histogram window, in µs (bucket upper edges).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencySummary {
    /// Samples in the window.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest value seen since start.
    pub max_us: u64,
}

impl LatencyHistogram {
    /// Add one latency.
    pub fn record_ns(&self, ns: u64) {
        let us = ns / 1000;
        self.counts[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// The raw counts (for windowed summaries).
    pub fn snapshot(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Summary of the counts since `previous` (a snapshot), or since start.
    pub fn summary_since(&self, previous: Option<&[u64]>) -> LatencySummary {
        let now = self.snapshot();
        let window: Vec<u64> = match previous {
            Some(p) => now
                .iter()
                .zip(p)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            None => now,
        };
        let count: u64 = window.iter().sum();
        let pct = |q: f64| -> u64 {
            if count == 0 {
                return 0;
            }
            let target = (q * count as f64).ceil().max(1.0) as u64;
            let mut acc = 0;
            for (i, c) in window.iter().enumerate() {
                acc += c;
                if acc >= target {
                    return bucket_upper_us(i).min(self.max_us.load(Ordering::Relaxed).max(1));
                }
            }
            0
        };
        LatencySummary {
            count,
            p50_us: pct(0.50),
            p95_us: pct(0.95),
            p99_us: pct(0.99),
            max_us: self.max_us.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_their_values() {
        for us in [
            0u64, 9, 10, 999, 1000, 1099, 9999, 10_000, 99_999, 5_000_000,
        ] {
            let b = bucket_of(us);
            assert!(us < bucket_upper_us(b), "{us} in bucket {b}");
            if b > 0 {
                assert!(us >= bucket_upper_us(b - 1), "{us} below bucket {b}");
            }
        }
    }

    #[test]
    fn percentiles_follow_the_data() {
        let h = LatencyHistogram::default();
        for _ in 0..99 {
            h.record_ns(50_000);
        }
        h.record_ns(3_000_000);
        let s = h.summary_since(None);
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_us, 60);
        assert_eq!(s.p99_us, 60);
        assert_eq!(s.max_us, 3000);
    }

    #[test]
    fn the_highest_peak_since_it_was_taken_is_kept() {
        let s = Stats::default();
        assert_eq!(s.take_peak(), None, "nothing noted");
        for db in [-90.0, -12.5, -160.0, f32::NAN, -40.0] {
            s.note_peak(db);
        }
        assert_eq!(s.take_peak(), Some(-12.5));
        assert_eq!(s.take_peak(), None, "taken");
        s.note_peak(-300.0);
        s.note_peak(f32::NEG_INFINITY);
        assert!(s.take_peak().is_some_and(|db| db < -199.0));
        s.note_peak(3.0);
        assert_eq!(s.take_peak(), Some(3.0), "over full scale");
    }
}
