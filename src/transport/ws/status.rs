//! `server_status`: the Python server's diagnostics plus phase4's counters,
//! built from [`Stats`] and per-thread CPU time ([`CpuMeter`]) every half
//! second.

use super::protocol::{DeviceStatus, LatencyMs, Perf, PerfAll, Realtime, RingDrops, ServerStatus};
use super::WsCtx;
use crate::config::Config;
use crate::service::cpu::{CpuInterval, CpuMeter};
use crate::stats::{DeviceInfo, LatencySummary, Role, Stats, N_ROLES, ROLE_NAMES};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Keeps the previous readings so each status covers the last interval.
pub(super) struct StatusBuilder {
    started: Instant,
    cpu: CpuMeter,
    blocks: u64,
    snapshots: u64,
    latency: Option<Vec<u64>>,
    /// `avg_ms` of each thread over the last [`HISTORY`] periods.
    history: [std::collections::VecDeque<f64>; N_ROLES],
}

/// Status periods `p95_ms` looks back over (10 s at 2 Hz).
const HISTORY: usize = 20;

/// The 95th percentile of `v` (nearest rank), 0 when empty.
fn p95(v: &std::collections::VecDeque<f64>) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().collect();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n => s[((0.95 * n as f64).ceil() as usize).clamp(1, n) - 1],
    }
}

/// What the threads did since the previous status.
struct Interval {
    /// CPU time spent.
    cpu: CpuInterval,
    /// Each thread's CPU, percent of one core.
    pct: [f64; N_ROLES],
    /// Blocks captured (the unit of the capture and bands threads).
    blocks: f64,
    /// FFT hops those blocks make (the spectrum thread's unit).
    hops: f64,
    /// Snapshots sent (this thread's unit).
    snapshots: f64,
    /// Capture to OSC send of the bands.
    latency: LatencySummary,
    /// Length of one block at the device's rate.
    block_ms: f64,
    /// Length of one FFT hop at the device's rate.
    hop_ms: f64,
}

impl Interval {
    /// The interval of `cpu`, with `blocks` blocks and `snapshots`
    /// snapshots (both at least one), for `cfg` at `rate` Hz.
    fn new(
        cpu: CpuInterval,
        blocks: f64,
        snapshots: f64,
        latency: LatencySummary,
        cfg: &Config,
        rate: u32,
    ) -> Self {
        let pct: [f64; N_ROLES] = std::array::from_fn(|i| cpu.pct(cpu.roles_s[i]));
        let sr = rate.max(1) as f64;
        let block_ms = 1000.0 * cfg.audio.block_frames as f64 / sr;
        let hop_ms = 1000.0 * cfg.fft.hop_frames as f64 / sr;
        Interval {
            cpu,
            pct,
            blocks,
            hops: blocks * block_ms / hop_ms.max(1e-9),
            snapshots,
            latency,
            block_ms,
            hop_ms,
        }
    }

    /// The threads whose CPU time is counted per unit of work, each with
    /// the units it did.
    fn timed(&self) -> [(Role, f64); 4] {
        [
            (Role::Capture, self.blocks),
            (Role::Bands, self.blocks),
            (Role::Spectrum, self.hops),
            (Role::Ws, self.snapshots),
        ]
    }

    /// CPU time of `role` per unit of its work (`units` of them), ms.
    fn avg_ms(&self, role: Role, units: f64) -> f64 {
        1000.0 * self.cpu.roles_s[role as usize] / units.max(1.0)
    }

    /// `cpu_pct`: the threads that run (a thread id), and everything else.
    fn cpu_pct(&self, tids: &[i32; N_ROLES]) -> std::collections::BTreeMap<&'static str, f64> {
        (0..N_ROLES)
            .filter(|i| tids[*i] != 0)
            .map(|i| (ROLE_NAMES[i], self.pct[i]))
            .chain([("other", self.cpu.pct(self.cpu.other_s))])
            .collect()
    }
}

impl StatusBuilder {
    pub(super) fn new(stats: &Stats) -> Self {
        StatusBuilder {
            started: Instant::now(),
            cpu: CpuMeter::new(),
            blocks: stats.blocks.load(Ordering::Relaxed),
            snapshots: 0,
            latency: None,
            history: std::array::from_fn(|_| std::collections::VecDeque::with_capacity(HISTORY)),
        }
    }

    pub(super) fn build(
        &mut self,
        ctx: &WsCtx,
        clients: u32,
        ws_drops: u64,
        snapshot_hz: f64,
        snapshots: u64,
    ) -> ServerStatus {
        let stats = &ctx.stats;
        let tids = stats.role_tids();
        let cpu = self.cpu.sample(&tids);
        let (blocks, snaps) = self.counts_since_last(stats, snapshots);
        let latency = self.latency_since_last(stats);
        let dev = stats.device_info();
        let cfg = ctx.shared.config();
        let iv = Interval::new(cpu, blocks, snaps, latency, &cfg, dev.rate);
        self.remember(&iv);
        let perf = self.perf_all(&iv, &cfg, snapshot_hz);
        let xruns = stats.xruns.load(Ordering::Relaxed);
        let drops = [
            stats.ring_drops[0].load(Ordering::Relaxed),
            stats.ring_drops[1].load(Ordering::Relaxed),
        ];
        ServerStatus {
            cb_overruns: xruns,
            dsp_drops: drops[0],
            fft_drops: drops[1],
            perf,
            xruns,
            ring_drops: RingDrops {
                bands: drops[0],
                spectrum: drops[1],
            },
            frame_drops: stats.frame_drops.load(Ordering::Relaxed),
            ws_drops,
            latency_ms: latency_ms(&iv.latency),
            realtime: realtime(stats),
            clients,
            device: device_status(stats, dev),
            cpu_pct: iv.cpu_pct(&tids),
            process_cpu_pct: iv.cpu.pct(iv.cpu.process_s),
            osc_sent: stats.osc_sent.load(Ordering::Relaxed),
            osc_failed: stats.osc_failed.load(Ordering::Relaxed),
            uptime_s: self.started.elapsed().as_secs_f64(),
            monitor: None,
            rig: crate::rig::status::server_status(stats),
        }
    }

    /// Blocks captured and snapshots sent since the last status (at least
    /// one each, they divide).
    fn counts_since_last(&mut self, stats: &Stats, snapshots: u64) -> (f64, f64) {
        let blocks = stats.blocks.load(Ordering::Relaxed);
        let d_blocks = blocks.saturating_sub(self.blocks).max(1) as f64;
        self.blocks = blocks;
        let d_snaps = snapshots.saturating_sub(self.snapshots).max(1) as f64;
        self.snapshots = snapshots;
        (d_blocks, d_snaps)
    }

    /// The latency histogram's window since the last status.
    fn latency_since_last(&mut self, stats: &Stats) -> LatencySummary {
        let latency = stats.latency.summary_since(self.latency.as_deref());
        self.latency = Some(stats.latency.snapshot());
        latency
    }

    /// Add this interval's `avg_ms` of each timed thread to its history.
    fn remember(&mut self, iv: &Interval) {
        for (role, units) in iv.timed() {
            let h = &mut self.history[role as usize];
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(iv.avg_ms(role, units));
        }
    }

    /// `perf`: each thread's CPU per unit of work, and the latencies.
    fn perf_all(&self, iv: &Interval, cfg: &Config, snapshot_hz: f64) -> PerfAll {
        let perf = |role: Role, units: f64| Perf {
            avg_ms: iv.avg_ms(role, units),
            p95_ms: p95(&self.history[role as usize]),
            load_pct: iv.pct[role as usize],
            enabled: None,
        };
        let fft_on = cfg.fft.enabled;
        let fft = Perf {
            enabled: Some(fft_on),
            ..perf(Role::Spectrum, iv.hops)
        };
        PerfAll {
            cb: perf(Role::Capture, iv.blocks),
            dsp: perf(Role::Bands, iv.blocks),
            fft,
            ws: perf(Role::Ws, iv.snapshots),
            lmh_e2e: lmh_e2e(&iv.latency, iv.block_ms),
            fft_e2e: Perf {
                enabled: Some(fft_on && cfg.osc.send_fft),
                ..fft
            },
            block_period_ms: iv.block_ms,
            hop_period_ms: iv.hop_ms,
            ws_period_ms: 1000.0 / snapshot_hz.max(1.0),
        }
    }
}

/// `perf.lmh_e2e`: capture to OSC send of the bands, from the latency
/// histogram; its load is the median's share of a block.
fn lmh_e2e(lat: &LatencySummary, block_ms: f64) -> Perf {
    Perf {
        avg_ms: lat.p50_us as f64 / 1000.0,
        p95_ms: lat.p95_us as f64 / 1000.0,
        load_pct: 100.0 * lat.p50_us as f64 / 1000.0 / block_ms.max(1e-9),
        enabled: None,
    }
}

/// `latency_ms`: the histogram's percentiles in ms.
fn latency_ms(lat: &LatencySummary) -> LatencyMs {
    LatencyMs {
        p50: lat.p50_us as f64 / 1000.0,
        p95: lat.p95_us as f64 / 1000.0,
        p99: lat.p99_us as f64 / 1000.0,
        max: lat.max_us as f64 / 1000.0,
        n: lat.count,
    }
}

/// `realtime`: what the real-time threads were granted.
fn realtime(stats: &Stats) -> Realtime {
    Realtime {
        capture: stats.grant(&stats.rt_capture).as_str(),
        workers: stats.grant(&stats.rt_workers).as_str(),
        mlock: stats.grant(&stats.mem_locked).as_str(),
        cpu: stats.pinned_cpu().map(|c| c as u32),
    }
}

/// `device`: the capture device as opened, and its recoveries.
fn device_status(stats: &Stats, dev: DeviceInfo) -> DeviceStatus {
    DeviceStatus {
        name: dev.name,
        up: stats.delivering(),
        rate: dev.rate,
        format: dev.format,
        access: dev.access,
        channels: dev.channels,
        period: dev.period,
        clocked: dev.clocked,
        suspends: stats.suspends.load(Ordering::Relaxed),
        reopens: stats.reopens.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An interval of one second in which capture spent `capture_s` and
    /// the spectrum thread 30 ms, over `blocks` blocks.
    fn interval(capture_s: f64, blocks: f64, cfg: &Config) -> Interval {
        let cpu = CpuInterval {
            wall_s: 1.0,
            roles_s: [capture_s, 0.02, 0.03, 0.0, 0.04],
            other_s: 0.05,
            process_s: 0.15,
        };
        Interval::new(cpu, blocks, 30.0, LatencySummary::default(), cfg, 48_000)
    }

    #[test]
    fn the_spectrum_thread_is_timed_per_hop_and_capture_per_block() {
        let mut cfg = Config::default();
        cfg.audio.block_frames = 256;
        cfg.fft.hop_frames = 512;
        let iv = interval(0.01, 100.0, &cfg);
        assert!((iv.hops - 50.0).abs() < 1e-9, "{}", iv.hops);
        assert!((iv.block_ms - 256_000.0 / 48_000.0).abs() < 1e-12);
        let [cb, _, fft, ws] = iv.timed();
        assert!(
            (iv.avg_ms(fft.0, fft.1) - 0.6).abs() < 1e-9,
            "30 ms over 50 hops"
        );
        assert!(
            (iv.avg_ms(cb.0, cb.1) - 0.1).abs() < 1e-9,
            "10 ms over 100 blocks"
        );
        assert_eq!(ws, (Role::Ws, 30.0));
        assert!((iv.pct[Role::Spectrum as usize] - 3.0).abs() < 1e-9);
    }

    #[test]
    fn p95_looks_back_over_the_last_twenty_periods_of_timed_threads() {
        let mut b = StatusBuilder::new(&Stats::default());
        let cfg = Config::default();
        for k in 0..25 {
            b.remember(&interval(k as f64 / 1000.0, 1.0, &cfg));
        }
        let capture = &b.history[Role::Capture as usize];
        assert_eq!(capture.len(), HISTORY);
        assert!((capture[0] - 5.0).abs() < 1e-9, "the oldest five are gone");
        // Nearest rank: the 19th of 20 sorted values (5..=24 ms).
        assert!((p95(capture) - 23.0).abs() < 1e-9, "{}", p95(capture));
        assert!(b.history[Role::Osc as usize].is_empty(), "OSC has no unit");
    }

    #[test]
    fn latency_figures_are_the_histograms_in_ms_and_a_share_of_a_block() {
        let lat = LatencySummary {
            count: 10,
            p50_us: 2_000,
            p95_us: 4_000,
            p99_us: 5_000,
            max_us: 9_000,
        };
        let e2e = lmh_e2e(&lat, 8.0);
        assert_eq!((e2e.avg_ms, e2e.p95_ms, e2e.load_pct), (2.0, 4.0, 25.0));
        assert_eq!(e2e.enabled, None);
        let l = latency_ms(&lat);
        assert_eq!((l.p50, l.p99, l.max, l.n), (2.0, 5.0, 9.0, 10));
    }
}
