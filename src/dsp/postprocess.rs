//! The per-bin port of the L/M/H auto-scaler for the log spectrum, so one set
//! of knobs tunes both (Python server semantics).
//!
//! Per hop, for each log bin `j` (all in linear amplitude, `10^(dB/20)`):
//!
//! 1. Empty bins ([`EMPTY_BIN_DB`]) are filled by linear interpolation between
//!    their nearest non-empty neighbours (the edge value beyond the ends).
//! 2. Tilt: `tilt_db_per_oct · log2(f_centre / 1 kHz)` dB is added to every
//!    bin before the auto-scaler (not to the raw-strength baseline).
//! 3. One-pole smoothing with a per-bin τ interpolated piecewise-linearly in
//!    log-frequency between the L/M/H band centres (geometric means of the
//!    edges), clamped to the nearest band outside them: the bands' attack τ
//!    while the bin rises, their release τ while it falls.
//! 4. Peak follower (attack/release of the auto-scaler) on the smoothed value,
//!    starting at the noise floor.
//! 5. The peak is smeared across log frequency by a normalised Gaussian of
//!    σ = `peak_smear_oct` octaves (reflected at the edges, truncated at 4σ).
//! 6. `scaled = tanh(max(0, smooth − nf) / max(smeared_peak, nf))`.
//! 7. Strength blend with the (untilted) dB baseline mapped from
//!    `[db_floor, db_ceiling]`, 0 where the bin is below the noise floor.
//!
//! Real-time safety: every array is sized for [`MAX_FFT_BINS`] at
//! construction; retuning recomputes in place.

use super::logbins::LogBinMap;
use super::params::DspParams;
use super::scaler::{tau_to_alpha, ScalerSettings, EPS};
use crate::types::{EMPTY_BIN_DB, MAX_FFT_BINS};

/// Largest smear kernel radius, in bins.
const MAX_RADIUS: usize = 4 * MAX_FFT_BINS;
/// The tilt is 0 dB at this frequency.
pub const TILT_REF_HZ: f32 = 1000.0;

/// The per-bin post-processor.
pub struct PostProcessor {
    n: usize,
    hop_s: f32,
    /// Per-bin smoothing coefficient while the bin falls.
    alpha: Vec<f32>,
    /// While it rises.
    alpha_attack: Vec<f32>,
    /// Per-bin tilt as a linear gain.
    tilt: Vec<f32>,
    smooth: Vec<f32>,
    peak: Vec<f32>,
    peak_smeared: Vec<f32>,
    interp_db: Vec<f32>,
    lin: Vec<f32>,
    padded: Vec<f32>,
    kernel: Vec<f32>,
    radius: usize,
    settings: ScalerSettings,
    warmed: bool,
}

impl PostProcessor {
    /// A post-processor for one hop every `hop_s` seconds.
    pub fn new(hop_s: f32) -> Self {
        PostProcessor {
            n: 0,
            hop_s,
            alpha: vec![0.0; MAX_FFT_BINS],
            alpha_attack: vec![0.0; MAX_FFT_BINS],
            tilt: vec![1.0; MAX_FFT_BINS],
            smooth: vec![0.0; MAX_FFT_BINS],
            peak: vec![0.0; MAX_FFT_BINS],
            peak_smeared: vec![0.0; MAX_FFT_BINS],
            interp_db: vec![0.0; MAX_FFT_BINS],
            lin: vec![0.0; MAX_FFT_BINS],
            padded: vec![0.0; MAX_FFT_BINS + 2 * MAX_RADIUS],
            kernel: vec![0.0; 2 * MAX_RADIUS + 1],
            radius: 0,
            settings: ScalerSettings::new(hop_s, 0.05, 60.0, 0.001, 1.0, -80.0, 0.0),
            warmed: false,
        }
    }

    /// Retune for `p` over the bins of `map`. Resets state when the bin layout
    /// changed. No allocation.
    pub fn configure(&mut self, p: &DspParams, map: &LogBinMap, layout_changed: bool) {
        let n = map.n_bins();
        self.n = n;
        self.settings = ScalerSettings::from_params(self.hop_s, p);
        // Per-bin τ, interpolated in log10(f) between the band centres.
        let centre = |b: &super::params::BandParams| (b.lo_hz * b.hi_hz).sqrt().max(1e-3).log10();
        let release = p.bands.map(|b| (centre(&b), b.tau_s));
        let attack = p.bands.map(|b| (centre(&b), b.tau_attack_s));
        for j in 0..n {
            let f = map.centre_hz(j);
            let lf = f.log10();
            self.alpha[j] = tau_to_alpha(self.hop_s, interpolate(release, lf));
            self.alpha_attack[j] = tau_to_alpha(self.hop_s, interpolate(attack, lf));
            let tilt_db = p.tilt_db_per_oct * (f.max(1e-3) / TILT_REF_HZ).log2();
            self.tilt[j] = if tilt_db.is_finite() {
                10f32.powf(tilt_db / 20.0)
            } else {
                1.0
            };
        }
        // Gaussian smear kernel in bins.
        let sigma = p.peak_smear_oct * map.bins_per_octave();
        if sigma > 0.0 {
            let radius = ((4.0 * sigma + 0.5) as usize).clamp(1, MAX_RADIUS);
            let mut sum = 0.0;
            for i in 0..=2 * radius {
                let x = i as f32 - radius as f32;
                let v = (-0.5 * (x / sigma) * (x / sigma)).exp();
                self.kernel[i] = v;
                sum += v;
            }
            self.kernel[..=2 * radius]
                .iter_mut()
                .for_each(|v| *v /= sum);
            self.radius = radius;
        } else {
            self.radius = 0;
        }
        let nf = self.settings.noise_floor.max(EPS);
        if layout_changed {
            self.warmed = false;
            self.peak[..n].iter_mut().for_each(|v| *v = nf);
        } else {
            self.peak[..n].iter_mut().for_each(|v| *v = v.max(nf));
        }
    }

    /// Process one hop of raw dB (`db_in[..n]`) into `out[..n]` in [0, 1].
    pub fn process(&mut self, db_in: &[f32], out: &mut [f32]) {
        let n = self.n;
        fill_empty(&db_in[..n], &mut self.interp_db[..n]);
        let s = self.settings;
        let nf = s.noise_floor.max(EPS);
        // 10^(dB/20) as exp(dB · ln10/20): exp is much cheaper than powf.
        const DB_TO_LN: f32 = std::f32::consts::LN_10 / 20.0;
        super::lanes::exp_scaled(&mut self.lin[..n], &self.interp_db[..n], DB_TO_LN);
        follow(
            &self.lin[..n],
            &self.tilt[..n],
            [&self.alpha_attack[..n], &self.alpha[..n]],
            &mut self.smooth[..n],
            &mut self.peak[..n],
            [s.a_attack, s.a_release],
            self.warmed,
        );
        self.warmed = true;
        self.smear();
        knee(
            &mut out[..n],
            &self.smooth[..n],
            &self.peak_smeared[..n],
            nf,
        );
        if s.strength < 1.0 {
            for (o, lin) in out[..n].iter_mut().zip(&self.lin[..n]) {
                *o = s.strength * *o + (1.0 - s.strength) * s.baseline(*lin);
            }
        }
    }

    fn smear(&mut self) {
        let n = self.n;
        let r = self.radius;
        if r == 0 || n < 2 {
            self.peak_smeared[..n].copy_from_slice(&self.peak[..n]);
            return;
        }
        // Reflect-pad once (the index math only for the 2r edge values),
        // then a plain convolution.
        let (left, rest) = self.padded[..n + 2 * r].split_at_mut(r);
        let (mid, right) = rest.split_at_mut(n);
        mid.copy_from_slice(&self.peak[..n]);
        for (i, v) in left.iter_mut().enumerate() {
            *v = self.peak[reflect(i as isize - r as isize, n)];
        }
        for (i, v) in right.iter_mut().enumerate() {
            *v = self.peak[reflect((n + i) as isize, n)];
        }
        convolve(
            &self.padded[..n + 2 * r],
            &self.kernel[..=2 * r],
            &mut self.peak_smeared[..n],
        );
    }
}

super::lanes::multiversion! {
    /// Per bin: the tilted input `lin · tilt` into the one-pole `smooth`
    /// (coefficient `alpha[0]` while rising, `alpha[1]` while falling; a
    /// copy before the first hop), then the peak follower on it
    /// (`peak_alpha` = attack, release). Written without branches so that
    /// it vectorises; the arithmetic is the scalar follower's.
    fn follow(
        lin: &[f32],
        tilt: &[f32],
        alpha: [&[f32]; 2],
        smooth: &mut [f32],
        peak: &mut [f32],
        peak_alpha: [f32; 2],
        warmed: bool,
    ) {
        let ins = lin.iter().zip(tilt).zip(alpha[0].iter().zip(alpha[1]));
        for (((&l, &t), (&up, &down)), (sm, pk)) in ins.zip(smooth.iter_mut().zip(peak.iter_mut())) {
            let x = l * t;
            let v = if warmed {
                let a = if x > *sm { up } else { down };
                *sm + a * (x - *sm)
            } else {
                x
            };
            *sm = v;
            let a = if v > *pk { peak_alpha[0] } else { peak_alpha[1] };
            *pk += a * (v - *pk);
        }
    }
}

super::lanes::multiversion! {
    /// Per bin the soft knee [`ScalerSettings::knee`] of `smooth − nf`
    /// against the smeared peak: `tanh(max(0, x) / max(peak, nf))`, with
    /// the exp inline and no branch ([`super::lanes::exp_fin`]; tanh is 1
    /// in f32 from 9 on), so that it vectorises. `nf` is the noise floor
    /// (≥ [`EPS`]).
    fn knee(out: &mut [f32], smooth: &[f32], peak: &[f32], nf: f32) {
        for (o, (&sm, &pk)) in out.iter_mut().zip(smooth.iter().zip(peak)) {
            let x = (sm - nf).max(0.0) / pk.max(nf).max(EPS);
            let e = super::lanes::exp_fin(2.0 * x.min(9.0));
            *o = (e - 1.0) / (e + 1.0);
        }
    }
}

super::lanes::multiversion! {
    /// `out[j] = Σ_t padded[j + t] · kernel[t]`, each sum in the order of
    /// `t`: the loops run kernel tap by tap over all outputs, which
    /// vectorises across outputs and keeps every output's additions (and
    /// so its bits) those of a plain dot product.
    fn convolve(padded: &[f32], kernel: &[f32], out: &mut [f32]) {
        let n = out.len();
        out.iter_mut().for_each(|o| *o = 0.0);
        for (t, &w) in kernel.iter().enumerate() {
            for (o, &p) in out.iter_mut().zip(&padded[t..t + n]) {
                *o += p * w;
            }
        }
    }
}

/// The τ at `log10(f) = lf` between three `(log10 f, τ)` anchors (band
/// centres, in any order): piecewise linear, the nearest anchor outside.
fn interpolate(mut anchors: [(f32, f32); 3], lf: f32) -> f32 {
    anchors.sort_by(|x, y| x.0.total_cmp(&y.0));
    if lf <= anchors[0].0 {
        anchors[0].1
    } else if lf >= anchors[2].0 {
        anchors[2].1
    } else {
        let (a, b) = if lf <= anchors[1].0 {
            (anchors[0], anchors[1])
        } else {
            (anchors[1], anchors[2])
        };
        let w = (lf - a.0) / (b.0 - a.0).max(1e-9);
        a.1 + w * (b.1 - a.1)
    }
}

/// scipy's `mode="reflect"` index (d c b a | a b c d | d c b a).
#[inline]
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let period = 2 * n;
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - 1 - m;
    }
    m as usize
}

/// Copy `db` into `out`, replacing empty bins by interpolation.
fn fill_empty(db: &[f32], out: &mut [f32]) {
    let n = db.len();
    let valid = |v: f32| v > EMPTY_BIN_DB / 2.0;
    let mut last_valid: Option<usize> = None;
    let mut j = 0;
    while j < n {
        if valid(db[j]) {
            out[j] = db[j];
            last_valid = Some(j);
            j += 1;
            continue;
        }
        let start = j;
        while j < n && !valid(db[j]) {
            j += 1;
        }
        let next = (j < n).then_some(j);
        for (k, o) in out[start..j].iter_mut().enumerate() {
            let pos = start + k;
            *o = match (last_valid, next) {
                (Some(l), Some(r)) => {
                    let w = (pos - l) as f32 / (r - l) as f32;
                    db[l] + w * (db[r] - db[l])
                }
                (Some(l), None) => db[l],
                (None, Some(r)) => db[r],
                (None, None) => -200.0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_scipy() {
        let idx: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(idx, vec![2, 1, 0, 0, 1, 2, 3, 3, 2, 1]);
    }

    #[test]
    fn convolution_matches_a_dot_product_per_output_exactly() {
        let n = 100;
        let r = 9;
        let padded: Vec<f32> = (0..n + 2 * r)
            .map(|i| 1.0 + (i * 31 % 17) as f32 / 7.0)
            .collect();
        let kernel: Vec<f32> = (0..=2 * r)
            .map(|t| (t as f32 * 0.37).sin().abs() / 9.0)
            .collect();
        let mut out = vec![0.0; n];
        convolve(&padded, &kernel, &mut out);
        let mut portable = vec![0.0; n];
        crate::dsp::lanes::set_portable_only(true);
        convolve(&padded, &kernel, &mut portable);
        crate::dsp::lanes::set_portable_only(false);
        assert_eq!(out, portable);
        for (j, o) in out.iter().enumerate() {
            let dot: f32 = padded[j..j + 2 * r + 1]
                .iter()
                .zip(&kernel)
                .map(|(p, w)| p * w)
                .sum();
            assert_eq!(o.to_bits(), dot.to_bits(), "{j}");
        }
    }

    #[test]
    fn empty_bins_are_interpolated_between_neighbours() {
        let db = [
            EMPTY_BIN_DB,
            -10.0,
            EMPTY_BIN_DB,
            EMPTY_BIN_DB,
            -40.0,
            EMPTY_BIN_DB,
        ];
        let mut out = [0.0; 6];
        fill_empty(&db, &mut out);
        assert_eq!(out, [-10.0, -10.0, -20.0, -30.0, -40.0, -40.0]);
    }
}
