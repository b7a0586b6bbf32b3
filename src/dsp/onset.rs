//! Onset detection: per-band onsets on the L/M/H envelopes, and a broadband
//! spectral-flux onset detector on the FFT magnitudes.
//!
//! Definitions:
//! - Band onsets ([`BandOnsets`]), the Python server's per-band detector
//!   with its per-band settings (`[onset.<band>]`, `set_onset` with a band):
//!   for each auto-scaled L/M/H value `x`, novelty
//!   `n = max(0, fast(x) − slow(x))` (one-pole envelopes, τ 12 ms and the
//!   band's `slow_tau_s`); `m` is a 1 s running mean of `n`. An onset when
//!   `n > max(sensitivity·m, abs_floor)` and more than `refractory_s` after
//!   the band's previous one; the band re-arms once
//!   `n < max(0.6·m, abs_floor/2)` (a Schmitt trigger: one onset per rise).
//! - Broadband onsets ([`FluxOnset`]), SuperFlux-like: the rfft magnitudes go
//!   through a log-frequency triangular filterbank (12 bands per octave from
//!   30 Hz to 16 kHz, bands narrower than one FFT bin merged), are
//!   compressed with `ln(1 + λ·m)` (λ = 10⁵: the knee sits near −100 dB, so
//!   the detector is nearly level-independent), and compared with the
//!   largest of the last frames of the last 35 ms (3 hops), each
//!   *max-filtered across ±1 band*, which ignores vibrato, slow glides and
//!   the hop-to-hop swing of a held bass note's leakage
//!   ([`recent::ONSET_REFERENCE_S`]).
//!   `odf = mean_b max(0, S_t[b] − max_{k=1..3} maxfilt(S_{t−k})[b])`.
//!   `flux` is the classic half-wave rectified log-magnitude flux (no max
//!   filter) on the same bands compressed with λ = 10³.
//! - The ODF handed to the beat tracker is the SuperFlux with λ = 10³:
//!   nearer to linear for loud components, so a kick outweighs a hi-hat
//!   and quiet noise contributes little (chosen on the evaluation corpus),
//!   against the largest of the last 45 ms (4 hops; [`recent::BEAT_REFERENCE_S`]).
//! - Peak picking is causal with one hop of look-ahead: the previous hop's
//!   `odf` is an onset when it is the largest of the last 30 ms and of the
//!   current hop, exceeds the mean of the last 100 ms by `δ·scale`, where
//!   `scale` is a 2 s running mean of `odf`, each hop's value limited to
//!   twice the scale (so the threshold follows the music's density and
//!   level between its loudest hits, which would otherwise hide the quiet
//!   ones; [`SCALE_CLIP`]) and `δ` follows the sensitivity, and the
//!   previous onset is at least `onset_min_gap_s` old.
//! - `strength = 1 − exp(−(odf − threshold)/scale)`, in (0, 1] (exactly 1
//!   only where f32 rounds a very strong onset up).
//! - `lag_s` = one hop (the look-ahead) + [`ODF_PEAK_LAG_S`].
//! - `beat_groups`: the beat tracker's input, the same λ = 10³ SuperFlux
//!   summed separately over four frequency groups of bands (centres below
//!   150 Hz, 150–500 Hz, 500 Hz–2 kHz, above 2 kHz; see
//!   [`BEAT_GROUP_EDGES_HZ`]), each the mean over its bands. The tracker
//!   normalises each group on its own (`tempo`), so the kick and the bass
//!   are not drowned by the many high bands.
//! - `low_power`: the power of the rfft bins below [`LOW_HZ`] (DC
//!   excluded), the kick drum; the tracker uses it only to check which of
//!   the chains a quarter, half or three quarters of a beat apart carries
//!   the kick (`tempo`), never as part of its beat signal.
//!
//! Real-time safety: state is allocated in `new`; `process` never allocates,
//! locks, logs or blocks, and never panics on any input (non-finite values
//! are treated as zero).

mod filterbank;
pub mod frontend;
mod recent;

use super::params::DspParams;
use crate::types::onset_bits;
use filterbank::FilterBank;
use recent::{hops_in, Recent, BEAT_REFERENCE_S, ONSET_REFERENCE_S};

/// Seconds between an onset and the end of the analysis window of the hop in
/// which the spectral-flux ODF peaks for it (1024-frame window at 48 kHz:
/// the flux peaks once the attack is well inside the window). Measured with
/// clicks by the unit test `flux_onsets_fall_on_clicks`.
pub const ODF_PEAK_LAG_S: f32 = 0.0085;

/// Upper edge of the low band whose power (the kick) checks the beat phase.
pub const LOW_HZ: f32 = 110.0;
/// Most rfft bins the low band may span.
const LOW_MAX_BINS: usize = 16;

/// Number of frequency groups of the beat tracker's input.
pub const BEAT_GROUPS: usize = 4;
/// Upper edges (Hz, band centre) of all but the last group.
pub const BEAT_GROUP_EDGES_HZ: [f32; BEAT_GROUPS - 1] = [150.0, 500.0, 2000.0];

/// Compression constant of the log magnitude.
const LOG_LAMBDA: f32 = 1.0e5;
/// Filterbank resolution.
/// Compression of the beat tracker's ODF: close to linear for loud
/// components, so that the energy of a kick outweighs a hi-hat.
const BEAT_LAMBDA: f32 = 1.0e3;
/// Peak-picking threshold above the local mean, in units of the running
/// mean of the ODF, at sensitivity 0.5.
const DELTA: f32 = 1.0;
/// Filterbank resolution.
const BANDS_PER_OCTAVE: f32 = 12.0;
/// Filterbank range.
const F_LO_HZ: f32 = 30.0;
const F_HI_HZ: f32 = 16_000.0;
/// Length of the ODF history kept for peak picking (hops).
const HIST: usize = 32;
/// An ODF below this is never an onset (mean log ratio per band).
const ODF_FLOOR: f32 = 0.05;
/// The threshold's scale follows the ODF between the hits, not the hits: each
/// hop counts at most this many times the current scale. Kicks and snares
/// read 20–100 times the ODF of the hops around them, and in a sparse mix
/// their plain mean set a threshold above the quiet hits in between (a
/// closed hi-hat between kicks: house_124 onset recall 0.63 → 0.70, funk_105
/// 0.88 → 0.97 in the synthetic evaluation; docs/eval.md).
const SCALE_CLIP: f32 = 2.0;

#[inline]
fn finite_or_zero(x: f32) -> f32 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// One-pole coefficient for a time constant `tau_s` at step `dt_s`.
#[inline]
pub(crate) fn one_pole(dt_s: f32, tau_s: f32) -> f32 {
    if tau_s <= 0.0 {
        1.0
    } else {
        1.0 - (-dt_s / tau_s).exp()
    }
}

/// Threshold multiplier for a sensitivity in [0, 1]: 1 at 0.5, ×4 at 0,
/// ÷4 at 1.
#[inline]
fn sensitivity_gain(s: f32) -> f32 {
    let s = if s.is_finite() {
        s.clamp(0.0, 1.0)
    } else {
        0.5
    };
    (2.0f32).powf((0.5 - s) * 4.0)
}

/// Fast envelope of the band onset detectors (removes block jitter).
const BAND_FAST_TAU_S: f32 = 0.012;
/// Time constant of the running mean of novelty the threshold follows.
const BAND_THR_TAU_S: f32 = 1.0;
/// Re-arm once novelty falls below this multiple of its running mean.
const BAND_RELEASE: f32 = 0.6;

/// Per-band onset detector on the auto-scaled L/M/H values, with each
/// band's own settings ([`super::params::BandOnsetParams`]).
pub struct BandOnsets {
    block_period_s: f32,
    a_fast: f32,
    a_thr: f32,
    fast: [f32; 3],
    slow: [f32; 3],
    thr_avg: [f32; 3],
    /// Fired and waiting for novelty to fall (Schmitt trigger).
    fired: [bool; 3],
    since_s: [f32; 3],
}

impl BandOnsets {
    /// A detector for blocks of `block_period_s` seconds.
    pub fn new(block_period_s: f32) -> Self {
        let dt = if block_period_s.is_finite() && block_period_s > 0.0 {
            block_period_s
        } else {
            256.0 / 48_000.0
        };
        BandOnsets {
            block_period_s: dt,
            a_fast: one_pole(dt, BAND_FAST_TAU_S),
            a_thr: one_pole(dt, BAND_THR_TAU_S),
            fast: [0.0; 3],
            slow: [0.0; 3],
            thr_avg: [0.0; 3],
            fired: [false; 3],
            since_s: [f32::INFINITY; 3],
        }
    }

    /// Feed one block's auto-scaled L/M/H; returns [`crate::types::onset_bits`].
    pub fn process(&mut self, lmh: &[f32; 3], p: &DspParams) -> u8 {
        const BITS: [u8; 3] = [onset_bits::LOW, onset_bits::MID, onset_bits::HIGH];
        let dt = self.block_period_s;
        let mut out = 0;
        for i in 0..3 {
            let b = &p.band_onset[i];
            let finite = |v: f32, d: f32| if v.is_finite() { v } else { d };
            let k = finite(b.sensitivity, 1.8).max(1.0);
            let gap = finite(b.refractory_s, 0.1).max(0.0);
            let floor = finite(b.abs_floor, 0.1).max(0.0);
            let a_slow = one_pole(dt, finite(b.slow_tau_s, 0.3).max(1e-3));
            let x = finite_or_zero(lmh[i]).clamp(0.0, 4.0);
            self.fast[i] += self.a_fast * (x - self.fast[i]);
            self.slow[i] += a_slow * (x - self.slow[i]);
            let novelty = (self.fast[i] - self.slow[i]).max(0.0);
            self.thr_avg[i] += self.a_thr * (novelty - self.thr_avg[i]);
            self.since_s[i] += dt;
            let high = (k * self.thr_avg[i]).max(floor);
            let low = (BAND_RELEASE * self.thr_avg[i]).max(0.5 * floor);
            if !self.fired[i] {
                if novelty > high && self.since_s[i] > gap {
                    out |= BITS[i];
                    self.fired[i] = true;
                    self.since_s[i] = 0.0;
                }
            } else if novelty < low {
                self.fired[i] = false;
            }
        }
        out
    }

    /// Forget all history (device switch).
    pub fn reset(&mut self) {
        *self = BandOnsets::new(self.block_period_s);
    }
}

/// Output of [`FluxOnset::process`] for one hop.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OnsetOut {
    /// Onset detection function value for this hop (input of the beat tracker).
    pub odf: f32,
    /// Spectral flux (half-wave rectified log-magnitude difference).
    pub flux: f32,
    /// Strength when an onset is detected in this hop.
    pub onset: Option<f32>,
    /// When `onset`: seconds between the onset and the end of the window.
    pub lag_s: f32,
    /// Per frequency group, the SuperFlux the beat tracker's filter takes
    /// (each band's rise above its largest of the last 45 ms).
    pub beat_groups: [f32; BEAT_GROUPS],
    /// The same, each band's rise above the previous frame alone: what the
    /// tracker's confidence measures (stationary noise stays smooth there).
    pub agree_groups: [f32; BEAT_GROUPS],
    /// Power below [`LOW_HZ`], for the beat phase.
    pub low_power: f32,
}

super::lanes::multiversion! {
    /// `out = |x|`, with NaN and infinities as 0.
    fn abs_finite(out: &mut [f32], x: &[f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = finite_or_zero(v).abs();
        }
    }
}

/// Broadband spectral-flux onset detector.
pub struct FluxOnset {
    fb: FilterBank,
    hop_s: f32,
    cur: Vec<f32>,
    cur_beat: Vec<f32>,
    /// The last frames of `cur` and `cur_beat`, max-filtered across bands:
    /// the references an onset must rise above.
    recent: Recent,
    recent_beat: Recent,
    /// The previous frame of `cur_beat` as it was (for the classic flux).
    prev_beat: Vec<f32>,
    have_prev: bool,
    /// Bands per beat group (for the means).
    group_bands: [f32; BEAT_GROUPS],
    /// Low band: rfft bins `1..=low_bins`.
    low_bins: usize,
    /// This hop's `|magnitude|` per rfft bin, non-finite values as 0.
    mag_abs: Vec<f32>,
    hist: [f32; HIST],
    pos: usize,
    scale: f32,
    a_scale: f32,
    n_seen: u32,
    since_s: f32,
}

impl FluxOnset {
    /// A detector for `n_mag` rfft magnitude bins at `sample_rate`, one call
    /// every `hop_period_s`.
    pub fn new(n_mag: usize, sample_rate: f32, hop_period_s: f32) -> Self {
        let sr = if sample_rate.is_finite() && sample_rate > 0.0 {
            sample_rate
        } else {
            48_000.0
        };
        let hop_s = if hop_period_s.is_finite() && hop_period_s > 0.0 {
            hop_period_s
        } else {
            512.0 / 48_000.0
        };
        let fb = FilterBank::new(n_mag, sr);
        let n = fb.len();
        let mut group_bands = [0.0f32; BEAT_GROUPS];
        for &g in &fb.group {
            group_bands[g] += 1.0;
        }
        let n_fft = 2 * n_mag.saturating_sub(1).max(1);
        let low_bins = ((LOW_HZ * n_fft as f32 / sr) as usize)
            .clamp(1, LOW_MAX_BINS)
            .min(n_mag.saturating_sub(1).max(1));
        FluxOnset {
            fb,
            hop_s,
            cur: vec![0.0; n],
            recent: Recent::new(n, hops_in(ONSET_REFERENCE_S, hop_s)),
            recent_beat: Recent::new(n, hops_in(BEAT_REFERENCE_S, hop_s)),
            cur_beat: vec![0.0; n],
            prev_beat: vec![0.0; n],
            have_prev: false,
            group_bands,
            low_bins,
            mag_abs: vec![0.0; n_mag],
            hist: [0.0; HIST],
            pos: 0,
            scale: 0.0,
            a_scale: one_pole(hop_s, 2.0),
            n_seen: 0,
            since_s: f32::INFINITY,
        }
    }

    /// Number of filterbank bands.
    pub fn n_bands(&self) -> usize {
        self.fb.len()
    }

    /// ODF `k` hops ago (0 = this hop).
    #[inline]
    fn odf_ago(&self, k: usize) -> f32 {
        self.hist[(self.pos + HIST - 1 - k) % HIST]
    }

    /// Feed one hop's linear magnitudes.
    pub fn process(&mut self, mag: &[f32], p: &DspParams) -> OnsetOut {
        // Log-filtered spectrum of this frame: each band's weighted magnitude
        // once, compressed for the onsets and for the beat filter.
        // |m| with non-finite values as 0, once per bin (bands overlap) and
        // in SIMD; each band's sum below keeps its order.
        let k = mag.len().min(self.mag_abs.len());
        abs_finite(&mut self.mag_abs[..k], &mag[..k]);
        let mag_abs = &self.mag_abs[..k];
        for ((c, cb), &(start, len, off)) in self
            .cur
            .iter_mut()
            .zip(self.cur_beat.iter_mut())
            .zip(&self.fb.bands)
        {
            let mut acc = 0.0;
            let bins = mag_abs.get(start..start + len).unwrap_or(&[]);
            for (&m, &w) in bins.iter().zip(&self.fb.weights[off..off + len]) {
                acc += m * w;
            }
            let acc = acc.min(1.0e6);
            *c = 1.0 + LOG_LAMBDA * acc;
            *cb = 1.0 + BEAT_LAMBDA * acc;
        }
        // Both compressions in SIMD: libm's `ln` per band was the largest
        // single cost of the detector.
        super::lanes::ln_in_place(&mut self.cur);
        super::lanes::ln_in_place(&mut self.cur_beat);
        let n = self.cur.len();
        let (mut flux, mut odf, mut beat_odf) = (0.0, 0.0, 0.0);
        let mut groups = [0.0f32; BEAT_GROUPS];
        let mut agree = [0.0f32; BEAT_GROUPS];
        if self.have_prev {
            // Slices of one length (no bounds checks in the loop), and each
            // group's sums kept in registers while its bands run (they are
            // in frequency order, so a group's bands are consecutive): the
            // additions happen in the same order as band by band into the
            // arrays, without a store and reload per band.
            let cur = &self.cur[..n];
            let beat = &self.cur_beat[..n];
            let reference = &self.recent.references()[..n];
            let reference_beat = &self.recent_beat.references()[..n];
            let latest_beat = &self.recent_beat.latest_row()[..n];
            let prev_beat = &self.prev_beat[..n];
            let group = &self.fb.group[..n];
            let (mut g_run, mut d_run, mut a_run) = (group.first().copied().unwrap_or(0), 0.0, 0.0);
            for b in 0..n {
                odf += (cur[b] - reference[b]).max(0.0);
                let cb = beat[b];
                let d = (cb - reference_beat[b]).max(0.0);
                let a = (cb - latest_beat[b]).max(0.0);
                if group[b] != g_run {
                    groups[g_run] += d_run;
                    agree[g_run] += a_run;
                    (g_run, d_run, a_run) = (group[b], 0.0, 0.0);
                }
                d_run += d;
                a_run += a;
                beat_odf += d;
                flux += (cb - prev_beat[b]).max(0.0);
            }
            if n > 0 {
                groups[g_run] += d_run;
                agree[g_run] += a_run;
            }
            flux /= n as f32;
            odf /= n as f32;
        }
        for (g, n) in groups.iter_mut().zip(&self.group_bands) {
            *g /= n.max(1.0);
        }
        for (g, n) in agree.iter_mut().zip(&self.group_bands) {
            *g /= n.max(1.0);
        }
        let mut low_power = 0.0;
        for &m in mag.iter().skip(1).take(self.low_bins) {
            let m = finite_or_zero(m).abs().min(1.0e3);
            low_power += m * m;
        }
        self.recent.push(&self.cur);
        self.recent_beat.push(&self.cur_beat);
        self.prev_beat.copy_from_slice(&self.cur_beat);
        self.have_prev = true;

        self.hist[self.pos] = odf;
        self.pos = (self.pos + 1) % HIST;
        self.since_s += self.hop_s;
        let onset = self.pick(p);
        self.n_seen = self.n_seen.saturating_add(1);
        let a = self.a_scale.max(1.0 / self.n_seen as f32);
        let x = odf.min(SCALE_CLIP * self.scale.max(ODF_FLOOR));
        self.scale += a * (x - self.scale);
        OnsetOut {
            odf: beat_odf / n as f32,
            flux,
            onset,
            lag_s: if onset.is_some() {
                self.hop_s + ODF_PEAK_LAG_S
            } else {
                0.0
            },
            beat_groups: groups,
            agree_groups: agree,
            low_power,
        }
    }

    /// Causal peak picking on the previous hop, with this hop as look-ahead.
    fn pick(&mut self, p: &DspParams) -> Option<f32> {
        let pre_max = ((0.03 / self.hop_s).round() as usize).clamp(1, HIST - 2);
        let pre_avg = ((0.10 / self.hop_s).round() as usize).clamp(1, HIST - 2);
        let c = self.odf_ago(1);
        if c < self.odf_ago(0) || c < ODF_FLOOR {
            return None;
        }
        for k in 2..=pre_max + 1 {
            if self.odf_ago(k) > c {
                return None;
            }
        }
        let mut mean = 0.0;
        for k in 1..=pre_avg + 1 {
            mean += self.odf_ago(k);
        }
        mean /= (pre_avg + 1) as f32;
        let delta = DELTA * sensitivity_gain(p.onset_sensitivity);
        let scale = self.scale.max(ODF_FLOOR);
        let thr = mean + delta * scale;
        let gap = if p.onset_min_gap_s.is_finite() {
            p.onset_min_gap_s.max(0.0)
        } else {
            0.05
        };
        // `since_s` counts to the current hop; the candidate is one hop older.
        if c > thr && self.since_s - self.hop_s >= gap {
            self.since_s = self.hop_s;
            Some(1.0 - (-(c - thr) / scale).exp())
        } else {
            None
        }
    }

    /// Forget all history.
    pub fn reset(&mut self) {
        self.recent.clear();
        self.recent_beat.clear();
        self.cur.iter_mut().for_each(|v| *v = 0.0);
        self.prev_beat.iter_mut().for_each(|v| *v = 0.0);
        self.cur_beat.iter_mut().for_each(|v| *v = 0.0);
        self.have_prev = false;
        self.hist = [0.0; HIST];
        self.pos = 0;
        self.scale = 0.0;
        self.n_seen = 0;
        self.since_s = f32::INFINITY;
    }
}

#[cfg(test)]
#[path = "onset_tests.rs"]
pub(crate) mod tests;
