//! The `meta` message: the settings in force, built from what control
//! publishes in [`crate::control::Shared`].

use super::protocol as p;
use super::WsCtx;
use crate::config::{name_of, BandOnsetConfig, Card, FftView, Palette, Style3d};
use std::sync::atomic::Ordering;

fn band_onset(b: BandOnsetConfig) -> p::BandOnsetMeta {
    p::BandOnsetMeta {
        sensitivity: b.sensitivity,
        refractory_s: b.refractory_s,
        slow_tau_s: b.slow_tau_s,
        abs_floor: b.abs_floor,
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
            master_gain: cfg.autoscale.master_gain,
        },
        fft_tilt_db_per_oct: cfg.fft.tilt_db_per_oct,
        fft_window_size: cfg.fft.window_frames,
        tau_attack: p::Lmh {
            low: cfg.dsp.low.tau_attack_s,
            mid: cfg.dsp.mid.tau_attack_s,
            high: cfg.dsp.high.tau_attack_s,
        },
        filter_order: cfg.dsp.filter_order,
        ws_snapshot_hz: cfg.ws.snapshot_hz.round().clamp(0.0, u32::MAX as f64) as u32,
        ui_peak_decay_per_s: cfg.ui.peak_decay_per_s,
        ui_show_onsets: cfg.ui.show_onsets,
        ui_fft_view: name_of(&FftView::ALL, cfg.ui.fft_view),
        ui_fft3d_style: name_of(&Style3d::ALL, cfg.ui.fft3d_style),
        ui_palette: name_of(&Palette::ALL, cfg.ui.palette),
        ui_layout: p::UiLayoutMeta {
            split_x: cfg.ui.layout.split_x,
            split_y: cfg.ui.layout.split_y,
            quadrants: cfg.ui.layout.quadrants.map(|c| {
                let i = Card::ALL.iter().position(|a| *a == c).unwrap_or(0);
                Card::NAMES[i]
            }),
        },
        device: p::DeviceMeta { index, name },
        fft_window: cfg.fft.window_frames,
        fft_hop: cfg.fft.hop_frames,
        onset: p::OnsetMeta {
            low: band_onset(cfg.onset.low),
            mid: band_onset(cfg.onset.mid),
            high: band_onset(cfg.onset.high),
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
