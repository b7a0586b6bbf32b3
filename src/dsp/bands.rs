//! The bands worker's processing: L/M/H band-passes → block RMS → smoother →
//! auto-scaler, block level (RMS and peak in dBFS), per-band onsets and the
//! silence state.
//!
//! Definitions:
//! - `low/mid/high`: see [`super::scaler`]; the RMS of each band-passed block
//!   is smoothed with a one-pole per band (attack τ while it rises, release
//!   τ while it falls), auto-scaled, and multiplied by the master gain
//!   (after the band onsets saw it).
//! - `rms_dbfs`: `20·log10(√(mean(x²)))` of the block; a full-scale sine
//!   reads −3.01 dBFS. `peak_dbfs`: `20·log10(max|x|)`. Floor −160 dBFS.
//! - `silent`: the block's level without its DC offset ([`ac_dbfs`]) below
//!   the threshold for at least the hold time; any block above the
//!   threshold leaves silence at once. (A cheap interface's offset is not
//!   heard: at −40 dBFS it kept silence from ever being said, and the beat
//!   tracker coasted 3× longer into the quiet.)
//!
//! Real-time safety: all state is built in [`BandsProcessor::new`];
//! [`BandsProcessor::process`] never allocates, locks, logs or blocks. A
//! parameter change redesigns the filters in place.

use super::biquad::BandPass;
use super::onset::BandOnsets;
use super::params::{DspParams, ParamsRx};
use super::scaler::{band_bin_counts, AutoScaler, ScalerSettings, Smoother};
use crate::types::{BandsFrame, Block};

/// Lowest level reported, in dBFS.
pub const LEVEL_FLOOR_DBFS: f32 = -160.0;

/// The level in dBFS of a signal whose mean square is `mean_sq` and mean
/// `mean`, its DC offset taken out: `√(mean(x²) − mean(x)²)`.
pub fn ac_dbfs(mean_sq: f32, mean: f32) -> f32 {
    to_dbfs((mean_sq - mean * mean).max(0.0).sqrt())
}

/// Amplitude → dBFS, floored.
#[inline]
pub fn to_dbfs(x: f32) -> f32 {
    if x <= 0.0 {
        LEVEL_FLOOR_DBFS
    } else {
        (20.0 * x.log10()).max(LEVEL_FLOOR_DBFS)
    }
}

/// State of the bands worker.
pub struct BandsProcessor {
    sr: f32,
    block_frames: usize,
    fft_window: usize,
    filters: [BandPass; 3],
    bank: super::biquad::BandBank,
    smoother: Smoother,
    scaler: AutoScaler,
    onsets: BandOnsets,
    onset_count: [u32; 3],
    silent: bool,
    below_s: f32,
    applied_generation: u64,
    applied: Option<DspParams>,
}

impl BandsProcessor {
    /// A processor for `block_frames` blocks at `sr`; `fft_window` is the
    /// spectrum's window, which sets the noise-gate geometry.
    pub fn new(sr: u32, block_frames: usize, fft_window: usize, p: &DspParams) -> Self {
        let sr_f = sr as f32;
        let dt = block_frames as f32 / sr_f;
        super::lanes::warm_up();
        let mut s = BandsProcessor {
            sr: sr_f,
            block_frames,
            fft_window,
            filters: [BandPass::new(p.filter_order, 30.0, 250.0, sr as f64); 3],
            bank: Default::default(),
            smoother: Smoother::default(),
            scaler: AutoScaler::new(
                ScalerSettings::new(dt, 0.05, 60.0, 0.001, 1.0, -80.0, 0.0),
                [1.0; 3],
                [1.0; 3],
            ),
            onsets: BandOnsets::new(dt),
            onset_count: [0; 3],
            silent: false,
            below_s: 0.0,
            applied_generation: u64::MAX,
            applied: None,
        };
        s.apply(p);
        s
    }

    /// Bring filters, smoother and scaler in line with `p`. No allocation.
    pub fn apply(&mut self, p: &DspParams) {
        let sr = self.sr as f64;
        let dt = self.block_frames as f32 / self.sr;
        let old = self.applied;
        let filters_changed = old.is_none_or(|o| {
            o.filter_order != p.filter_order
                || o.bands
                    .iter()
                    .zip(p.bands.iter())
                    .any(|(a, b)| a.lo_hz != b.lo_hz || a.hi_hz != b.hi_hz)
        });
        if filters_changed {
            for (f, b) in self.filters.iter_mut().zip(p.bands.iter()) {
                f.design(p.filter_order, b.lo_hz as f64, b.hi_hz as f64, sr);
            }
            self.bank.load(&self.filters);
        }
        self.smoother.set_taus(
            dt,
            p.bands.map(|b| b.tau_s),
            p.bands.map(|b| b.tau_attack_s),
        );
        let settings = ScalerSettings::from_params(dt, p);
        let edges = [
            (self.filters[0].lo_hz as f32, self.filters[0].hi_hz as f32),
            (self.filters[1].lo_hz as f32, self.filters[1].hi_hz as f32),
            (self.filters[2].lo_hz as f32, self.filters[2].hi_hz as f32),
        ];
        let (n_eff, k_lin) = band_bin_counts(
            edges,
            self.fft_window,
            self.sr,
            p.n_bins as usize,
            p.f_min_hz,
        );
        self.scaler.set_settings(settings, n_eff, k_lin);
        self.applied_generation = p.generation;
        self.applied = Some(*p);
    }

    /// Process one block with the newest parameters from `params`.
    #[inline]
    pub fn process(&mut self, block: &Block, params: &mut ParamsRx) -> BandsFrame {
        params.poll();
        if params.get().generation != self.applied_generation {
            let p = *params.get();
            self.apply(&p);
        }
        self.process_block(block, params.get())
    }

    fn process_block(&mut self, block: &Block, p: &DspParams) -> BandsFrame {
        let x = block.samples();
        let n = x.len().max(1);
        let energy = self.bank.energy(x);
        let rms = energy.map(|e| (e / n as f64).sqrt() as f32);
        let smoothed = self.smoother.update(rms);
        let lmh = self.scaler.update(smoothed);

        let (sum_sq, peak, sum) = super::lanes::sum_sq_peak(x);
        let rms_dbfs = to_dbfs((sum_sq / n as f32).sqrt());
        let heard_dbfs = ac_dbfs(sum_sq / n as f32, sum / n as f32);
        let peak_dbfs = to_dbfs(peak);

        let bits = if p.onset_enabled {
            self.onsets.process(&lmh, p)
        } else {
            0
        };
        for (i, c) in self.onset_count.iter_mut().enumerate() {
            if bits & (1 << i) != 0 {
                *c = c.wrapping_add(1);
            }
        }

        let dt = x.len() as f32 / self.sr;
        if heard_dbfs < p.silence_threshold_dbfs {
            self.below_s += dt;
            if self.below_s >= p.silence_hold_s {
                self.silent = true;
            }
        } else {
            self.below_s = 0.0;
            self.silent = false;
        }

        // The master gain scales what leaves the worker, after the onset
        // detectors saw the auto-scaled values (as the Python server does).
        let gain = if p.master_gain.is_finite() {
            p.master_gain.max(0.0)
        } else {
            1.0
        };
        BandsFrame {
            seq: block.seq,
            t_capture_ns: block.t_capture_ns,
            time_s: block.time_s(),
            lmh: lmh.map(|v| v * gain),
            lmh_raw: smoothed,
            rms_dbfs,
            peak_dbfs,
            band_onsets: bits,
            band_onset_count: self.onset_count,
            silent: self.silent,
        }
    }

    /// The band edges in use (clamped to what the sample rate allows).
    pub fn effective_bands(&self) -> [(f64, f64); 3] {
        [
            (self.filters[0].lo_hz, self.filters[0].hi_hz),
            (self.filters[1].lo_hz, self.filters[1].hi_hz),
            (self.filters[2].lo_hz, self.filters[2].hi_hz),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn run_tone(freq: f32, amp: f32, strength: f32, seconds: f32) -> BandsFrame {
        run_tone_dc(freq, amp, 0.0, strength, seconds)
    }

    /// `run_tone` with a DC offset of `dc` added.
    fn run_tone_dc(freq: f32, amp: f32, dc: f32, strength: f32, seconds: f32) -> BandsFrame {
        let mut cfg = Config::default();
        cfg.autoscale.strength = strength as f64;
        let p = DspParams::from_config(&cfg);
        let mut proc = BandsProcessor::new(48_000, 256, 1024, &p);
        let mut rx = ParamsRx::fixed(p);
        let mut block = Block::zeroed();
        block.len = 256;
        block.sample_rate = 48_000;
        let mut out = BandsFrame::default();
        let blocks = (seconds * 48_000.0 / 256.0) as u64;
        for b in 0..blocks {
            for (i, s) in block.samples[..256].iter_mut().enumerate() {
                let t = (b * 256 + i as u64) as f32 / 48_000.0;
                *s = dc + amp * (2.0 * std::f32::consts::PI * freq * t).sin();
            }
            block.seq = b;
            out = proc.process(&block, &mut rx);
        }
        out
    }

    #[test]
    fn raw_mode_puts_each_tone_in_its_band() {
        for (f, band) in [(100.0, 0), (2000.0, 1), (8000.0, 2)] {
            let out = run_tone(f, 0.5, 0.0, 1.0);
            for other in 0..3 {
                if other != band {
                    // Raw mode is dB mapped over 80 dB: 0.2 is 16 dB.
                    assert!(
                        out.lmh[band] > out.lmh[other] + 0.2,
                        "{f} Hz: {:?}",
                        out.lmh
                    );
                }
            }
        }
    }

    #[test]
    fn level_of_a_full_scale_sine() {
        let out = run_tone(1000.0, 1.0, 1.0, 0.2);
        assert!((out.rms_dbfs + 3.0103).abs() < 0.05, "{}", out.rms_dbfs);
        assert!(out.peak_dbfs > -0.1 && out.peak_dbfs <= 0.0);
    }

    #[test]
    fn silence_reads_zero_and_becomes_silent_after_the_hold() {
        let out = run_tone(100.0, 0.0, 1.0, 1.0);
        assert_eq!(out.lmh, [0.0; 3]);
        assert!(!out.silent, "hold is 2 s");
        let out = run_tone(100.0, 0.0, 1.0, 2.5);
        assert!(out.silent);
        assert_eq!(out.rms_dbfs, LEVEL_FLOOR_DBFS);
    }

    #[test]
    fn a_dc_offset_is_not_heard_as_sound() {
        // A cheap interface's offset of 1 % (−40 dBFS), and nothing else:
        // the level says −40 dBFS, silence is said after the hold.
        let out = run_tone_dc(100.0, 0.0, 0.01, 1.0, 2.5);
        assert!((out.rms_dbfs + 40.0).abs() < 0.01, "{}", out.rms_dbfs);
        assert!(out.silent);
        // A quiet tone on the same offset is sound, whatever the offset.
        let out = run_tone_dc(1000.0, 0.01, 0.5, 1.0, 2.5);
        assert!(!out.silent);
        let out = run_tone_dc(1000.0, 0.0001, 0.5, 1.0, 2.5);
        assert!(out.silent, "a −83 dBFS tone on a large offset");
    }
}
