//! The `meta` message: the settings in force, built from what control
//! publishes in [`crate::control::Shared`].

use super::protocol as p;
use super::WsCtx;
use std::sync::atomic::Ordering;

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
        auth_required: true,
        version: env!("CARGO_PKG_VERSION"),
    }
}
