//! `server_status`: the Python server's diagnostics plus phase4's counters,
//! built from [`Stats`] and per-thread CPU time ([`CpuMeter`]) every half
//! second.

use super::protocol::{DeviceStatus, LatencyMs, Perf, PerfAll, Realtime, RingDrops, ServerStatus};
use super::WsCtx;
use crate::service::cpu::CpuMeter;
use crate::stats::{Role, Stats, N_ROLES, ROLE_NAMES};
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
        let spent = cpu.roles_s;
        let pct: [f64; N_ROLES] = std::array::from_fn(|i| cpu.pct(spent[i]));
        let blocks = stats.blocks.load(Ordering::Relaxed);
        let d_blocks = blocks.saturating_sub(self.blocks).max(1) as f64;
        self.blocks = blocks;
        let d_snaps = snapshots.saturating_sub(self.snapshots).max(1) as f64;
        self.snapshots = snapshots;
        let lat = stats.latency.summary_since(self.latency.as_deref());
        self.latency = Some(stats.latency.snapshot());

        let dev = stats.device_info();
        let cfg = ctx.shared.config();
        let sr = dev.rate.max(1) as f64;
        let block_ms = 1000.0 * cfg.audio.block_frames as f64 / sr;
        let hop_ms = 1000.0 * cfg.fft.hop_frames as f64 / sr;
        let hops = d_blocks * block_ms / hop_ms.max(1e-9);
        let units = [
            (Role::Capture, d_blocks),
            (Role::Bands, d_blocks),
            (Role::Spectrum, hops),
            (Role::Ws, d_snaps),
        ];
        for (role, n) in units {
            let h = &mut self.history[role as usize];
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(1000.0 * spent[role as usize] / n.max(1.0));
        }
        let history = &self.history;
        let perf = |role: Role, units: f64| Perf {
            avg_ms: 1000.0 * spent[role as usize] / units.max(1.0),
            p95_ms: p95(&history[role as usize]),
            load_pct: pct[role as usize],
            enabled: None,
        };
        let fft_on = cfg.fft.enabled;
        let fft = Perf {
            enabled: Some(fft_on),
            ..perf(Role::Spectrum, hops)
        };
        // Capture to OSC send of the bands, from the latency histogram.
        let lmh_e2e = Perf {
            avg_ms: lat.p50_us as f64 / 1000.0,
            p95_ms: lat.p95_us as f64 / 1000.0,
            load_pct: 100.0 * lat.p50_us as f64 / 1000.0 / block_ms.max(1e-9),
            enabled: None,
        };
        let fft_e2e = Perf {
            enabled: Some(fft_on && cfg.osc.send_fft),
            ..fft
        };
        let xruns = stats.xruns.load(Ordering::Relaxed);
        let drops = [
            stats.ring_drops[0].load(Ordering::Relaxed),
            stats.ring_drops[1].load(Ordering::Relaxed),
        ];
        ServerStatus {
            cb_overruns: xruns,
            dsp_drops: drops[0],
            fft_drops: drops[1],
            perf: PerfAll {
                cb: perf(Role::Capture, d_blocks),
                dsp: perf(Role::Bands, d_blocks),
                fft,
                ws: perf(Role::Ws, d_snaps),
                lmh_e2e,
                fft_e2e,
                block_period_ms: block_ms,
                hop_period_ms: hop_ms,
                ws_period_ms: 1000.0 / snapshot_hz.max(1.0),
            },
            xruns,
            ring_drops: RingDrops {
                bands: drops[0],
                spectrum: drops[1],
            },
            frame_drops: stats.frame_drops.load(Ordering::Relaxed),
            ws_drops,
            latency_ms: LatencyMs {
                p50: lat.p50_us as f64 / 1000.0,
                p95: lat.p95_us as f64 / 1000.0,
                p99: lat.p99_us as f64 / 1000.0,
                max: lat.max_us as f64 / 1000.0,
                n: lat.count,
            },
            realtime: Realtime {
                capture: stats.grant(&stats.rt_capture).as_str(),
                workers: stats.grant(&stats.rt_workers).as_str(),
                mlock: stats.grant(&stats.mem_locked).as_str(),
                cpu: stats.pinned_cpu().map(|c| c as u32),
            },
            clients,
            device: DeviceStatus {
                name: dev.name,
                up: stats.device_up.load(Ordering::Relaxed),
                rate: dev.rate,
                format: dev.format,
                access: dev.access,
                channels: dev.channels,
                period: dev.period,
                clocked: dev.clocked,
                suspends: stats.suspends.load(Ordering::Relaxed),
                reopens: stats.reopens.load(Ordering::Relaxed),
            },
            cpu_pct: (0..N_ROLES)
                .filter(|i| tids[*i] != 0)
                .map(|i| (ROLE_NAMES[i], pct[i]))
                .chain([("other", cpu.pct(cpu.other_s))])
                .collect(),
            process_cpu_pct: cpu.pct(cpu.process_s),
            osc_sent: stats.osc_sent.load(Ordering::Relaxed),
            osc_failed: stats.osc_failed.load(Ordering::Relaxed),
            uptime_s: self.started.elapsed().as_secs_f64(),
            monitor: None,
            rig: crate::rig::status::server_status(stats),
        }
    }
}
