//! `server_status`: the Python server's diagnostics plus phase4's counters,
//! built from [`Stats`] and per-thread CPU time every half second.

use super::protocol::{DeviceStatus, LatencyMs, Perf, PerfAll, Realtime, RingDrops, ServerStatus};
use super::WsCtx;
use crate::stats::{Role, Stats, N_ROLES, ROLE_NAMES};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Keeps the previous readings so each status covers the last interval.
pub(super) struct StatusBuilder {
    started: Instant,
    at: Instant,
    cpu: [f64; N_ROLES],
    process_cpu: f64,
    blocks: u64,
    snapshots: u64,
    latency: Option<Vec<u64>>,
}

fn thread_cpu(stats: &Stats) -> [f64; N_ROLES] {
    std::array::from_fn(|i| match stats.tid[i].load(Ordering::Relaxed) {
        0 => 0.0,
        tid => crate::service::thread_cpu_s(tid).unwrap_or(0.0),
    })
}

/// CPU time of the whole process, seconds.
pub fn process_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks: f64 = [11usize, 12]
        .iter()
        .filter_map(|i| f.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

impl StatusBuilder {
    pub(super) fn new(stats: &Stats) -> Self {
        StatusBuilder {
            started: Instant::now(),
            at: Instant::now(),
            cpu: thread_cpu(stats),
            process_cpu: process_cpu_s(),
            blocks: stats.blocks.load(Ordering::Relaxed),
            snapshots: 0,
            latency: None,
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
        let dt = self.at.elapsed().as_secs_f64().max(1e-3);
        self.at = Instant::now();
        let cpu = thread_cpu(stats);
        let pct: [f64; N_ROLES] =
            std::array::from_fn(|i| 100.0 * (cpu[i] - self.cpu[i]).max(0.0) / dt);
        let spent: [f64; N_ROLES] = std::array::from_fn(|i| (cpu[i] - self.cpu[i]).max(0.0));
        self.cpu = cpu;
        let pcpu = process_cpu_s();
        let process_pct = 100.0 * (pcpu - self.process_cpu).max(0.0) / dt;
        self.process_cpu = pcpu;
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
        let perf = |role: Role, units: f64| Perf {
            avg_ms: 1000.0 * spent[role as usize] / units.max(1.0),
            p95_ms: None,
            load_pct: pct[role as usize],
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
                fft: perf(Role::Spectrum, hops),
                ws: perf(Role::Ws, d_snaps),
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
                .filter(|i| stats.tid[*i].load(Ordering::Relaxed) != 0)
                .map(|i| (ROLE_NAMES[i], pct[i]))
                .collect(),
            process_cpu_pct: process_pct,
            osc_sent: stats.osc_sent.load(Ordering::Relaxed),
            osc_failed: stats.osc_failed.load(Ordering::Relaxed),
            uptime_s: self.started.elapsed().as_secs_f64(),
            rig: crate::rig::status::server_status(stats),
        }
    }
}
