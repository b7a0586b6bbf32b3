//! The `meta` message: the settings in force, built from what control
//! publishes in [`crate::control::Shared`].

use super::protocol as p;
use super::WsCtx;
use crate::config::{
    name_of, BandConfig, BandOnsetConfig, Card, Config, FftView, Palette, Style3d, UiLayout,
};
use std::sync::atomic::Ordering;

/// The meta message for the settings in force.
pub(super) fn build_meta(ctx: &WsCtx) -> p::Meta {
    let cfg = ctx.shared.config();
    let sr = match ctx.shared.sample_rate.load(Ordering::Relaxed) {
        0 => cfg.audio.sample_rate_hz,
        sr => sr,
    };
    let (index, name) = ctx.shared.device();
    p::Meta {
        sr,
        blocksize: cfg.audio.block_frames,
        n_fft_bins: cfg.fft.n_bins,
        bands: per_band(&cfg, |b| p::BandEdges {
            lo_hz: b.lo_hz,
            hi_hz: b.hi_hz,
        }),
        fft_enabled: cfg.fft.enabled,
        fft_db_floor: cfg.fft.db_floor,
        fft_db_ceiling: cfg.fft.db_ceiling,
        fft_f_min: cfg.fft.f_min_hz,
        fft_send_raw_db: cfg.fft.send_raw_db,
        fft_peak_smear_oct: cfg.fft.peak_smear_oct,
        tau: per_band(&cfg, |b| b.tau_s),
        autoscale: autoscale(&cfg),
        fft_tilt_db_per_oct: cfg.fft.tilt_db_per_oct,
        fft_window_size: cfg.fft.window_frames,
        tau_attack: per_band(&cfg, |b| b.tau_attack_s),
        filter_order: cfg.dsp.filter_order,
        ws_snapshot_hz: cfg.ws.snapshot_hz.round().clamp(0.0, u32::MAX as f64) as u32,
        ui_peak_decay_per_s: cfg.ui.peak_decay_per_s,
        ui_show_onsets: cfg.ui.show_onsets,
        ui_fft_view: name_of(&FftView::ALL, cfg.ui.fft_view),
        ui_fft3d_style: name_of(&Style3d::ALL, cfg.ui.fft3d_style),
        ui_palette: name_of(&Palette::ALL, cfg.ui.palette),
        ui_layout: ui_layout(&cfg.ui.layout),
        device: p::DeviceMeta { index, name },
        fft_window: cfg.fft.window_frames,
        fft_hop: cfg.fft.hop_frames,
        onset: onset(&cfg),
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
        osc: osc(&cfg),
        auth_required: true,
        version: env!("CARGO_PKG_VERSION"),
    }
}

/// `f` of each band's settings, as low/mid/high.
fn per_band<T>(cfg: &Config, f: impl Fn(BandConfig) -> T) -> p::Lmh<T> {
    p::Lmh {
        low: f(cfg.dsp.low),
        mid: f(cfg.dsp.mid),
        high: f(cfg.dsp.high),
    }
}

/// `meta.autoscale`.
fn autoscale(cfg: &Config) -> p::AutoscaleMeta {
    p::AutoscaleMeta {
        tau_attack_s: cfg.autoscale.tau_attack_s,
        tau_release_s: cfg.autoscale.tau_release_s,
        noise_floor: cfg.autoscale.noise_floor,
        strength: cfg.autoscale.strength,
        master_gain: cfg.autoscale.master_gain,
    }
}

/// `meta.ui_layout`, the quadrants by card name.
fn ui_layout(layout: &UiLayout) -> p::UiLayoutMeta {
    p::UiLayoutMeta {
        split_x: layout.split_x,
        split_y: layout.split_y,
        quadrants: layout.quadrants.map(|c| {
            let i = Card::ALL.iter().position(|a| *a == c).unwrap_or(0);
            Card::NAMES[i]
        }),
    }
}

/// `meta.onset`: the per-band detectors and the broadband one.
fn onset(cfg: &Config) -> p::OnsetMeta {
    p::OnsetMeta {
        low: band_onset(cfg.onset.low),
        mid: band_onset(cfg.onset.mid),
        high: band_onset(cfg.onset.high),
        enabled: cfg.onset.enabled,
        sensitivity: cfg.onset.sensitivity,
        min_gap_s: cfg.onset.min_gap_s,
    }
}

fn band_onset(b: BandOnsetConfig) -> p::BandOnsetMeta {
    p::BandOnsetMeta {
        sensitivity: b.sensitivity,
        refractory_s: b.refractory_s,
        slow_tau_s: b.slow_tau_s,
        abs_floor: b.abs_floor,
    }
}

/// `meta.osc`: the sender's settings and destinations.
fn osc(cfg: &Config) -> p::OscMeta {
    p::OscMeta {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadrants_are_sent_by_card_name_in_slot_order() {
        let layout = UiLayout {
            split_x: 0.3,
            split_y: 0.7,
            quadrants: [Card::ALL[3], Card::ALL[2], Card::ALL[1], Card::ALL[0]],
        };
        let m = ui_layout(&layout);
        assert_eq!(
            m.quadrants,
            [
                Card::NAMES[3],
                Card::NAMES[2],
                Card::NAMES[1],
                Card::NAMES[0]
            ]
        );
        assert_eq!((m.split_x, m.split_y), (0.3, 0.7));
    }

    #[test]
    fn per_band_settings_go_out_as_low_mid_high() {
        let mut cfg = Config::default();
        cfg.dsp.low.tau_s = 0.1;
        cfg.dsp.mid.tau_s = 0.2;
        cfg.dsp.high.tau_s = 0.3;
        let tau = per_band(&cfg, |b| b.tau_s);
        assert_eq!(
            tau,
            p::Lmh {
                low: 0.1,
                mid: 0.2,
                high: 0.3
            }
        );
    }
}
