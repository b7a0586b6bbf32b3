//! The tempo estimate: a leaky autocorrelation of the ODF scored on a
//! log-tempo grid, with a forward filter over the grid.
//!
//! Real-time safety: sized in `new`; `push` and `update` never allocate.

use super::super::onset::one_pole;
use super::super::params::DspParams;

/// Lowest and highest tempo the grid covers (the configuration's limits).
const GRID_MIN_BPM: f32 = 30.0;
const GRID_MAX_BPM: f32 = 300.0;
/// Ratio between neighbouring grid tempi (0.5 %).
const GRID_STEP: f32 = 1.005;
/// Longest autocorrelation lag.
const MAX_LAG_S: f32 = 4.5;
/// Memory of the autocorrelation.
const ACF_TAU_S: f32 = 2.5;
/// Memory of the running mean removed from the ODF.
const MEAN_TAU_S: f32 = 0.5;
/// Multiples of the period that vote for a tempo.
const HARMONICS: usize = 4;
/// Centre and width (octaves) of the tempo prior.
const PRIOR_BPM: f32 = 120.0;
const PRIOR_OCT: f32 = 0.9;
/// Transition: Gaussian over grid steps, and the per-update jump probability.
const TRANS_SIGMA: f32 = 1.5;
const TRANS_HALF: usize = 5;
const JUMP_P: f32 = 0.02;

pub(super) struct Tempogram {
    hop_s: f32,
    ring: Vec<f32>,
    pos: usize,
    mean: f32,
    prev: [f32; 2],
    a_mean: f32,
    acf: Vec<f32>,
    a_acf: f32,
    bpm_grid: Vec<f32>,
    period_grid: Vec<f32>,
    prior: Vec<f32>,
    trans: [f32; 2 * TRANS_HALF + 1],
    post: Vec<f32>,
    scratch: Vec<f32>,
    obs: Vec<f32>,
    active: (usize, usize),
    best_bpm: f32,
    salience: f32,
    pushed: usize,
}

impl Tempogram {
    pub(super) fn new(hop_s: f32) -> Self {
        let max_lag = ((MAX_LAG_S / hop_s).ceil() as usize).max(8);
        let mut bpm_grid = Vec::new();
        let mut b = GRID_MIN_BPM;
        while b <= GRID_MAX_BPM * 1.0001 {
            bpm_grid.push(b);
            b *= GRID_STEP;
        }
        let period_grid = bpm_grid.iter().map(|b| 60.0 / (b * hop_s)).collect();
        let prior = bpm_grid
            .iter()
            .map(|b| {
                let x = (b / PRIOR_BPM).log2() / PRIOR_OCT;
                (-0.5 * x * x).exp()
            })
            .collect();
        let mut trans = [0.0; 2 * TRANS_HALF + 1];
        for (i, t) in trans.iter_mut().enumerate() {
            let d = i as f32 - TRANS_HALF as f32;
            *t = (-0.5 * (d / TRANS_SIGMA).powi(2)).exp();
        }
        let n = bpm_grid.len();
        Tempogram {
            hop_s,
            ring: vec![0.0; max_lag + 1],
            pos: 0,
            mean: 0.0,
            prev: [0.0; 2],
            a_mean: one_pole(hop_s, MEAN_TAU_S),
            acf: vec![0.0; max_lag + 1],
            a_acf: one_pole(hop_s, ACF_TAU_S),
            bpm_grid,
            period_grid,
            prior,
            trans,
            post: vec![0.0; n],
            scratch: vec![0.0; n],
            obs: vec![0.0; n],
            active: (usize::MAX, 0),
            best_bpm: 0.0,
            salience: 0.0,
            pushed: 0,
        }
    }

    /// Add one ODF value and update the autocorrelation.
    pub(super) fn push(&mut self, odf: f32) {
        self.mean += self.a_mean * (odf - self.mean);
        // A 3-tap low-pass widens the ODF's one-hop peaks so that the
        // correlation at fractional lags is not biased towards tempi whose
        // periods are whole hops.
        let raw = odf - self.mean;
        let z = 0.25 * (raw + self.prev[1]) + 0.5 * self.prev[0];
        self.prev = [raw, self.prev[0]];
        let n = self.ring.len();
        self.ring[self.pos] = z;
        let a = self.a_acf;
        // acf[L] += a·(z_t·z_{t−L} − acf[L]); the ring runs backwards from pos.
        let (head, tail) = self.ring.split_at(self.pos + 1);
        let mut lag = 0;
        for &old in head.iter().rev().chain(tail.iter().rev()) {
            let v = &mut self.acf[lag];
            *v += a * (z * old - *v);
            lag += 1;
        }
        debug_assert_eq!(lag, n);
        self.pos = (self.pos + 1) % n;
        self.pushed = self.pushed.saturating_add(1);
    }

    /// Correlation at a fractional lag (hops), linear interpolation.
    #[inline]
    fn corr(&self, lag: f32) -> f32 {
        let i = lag as usize;
        let f = lag - i as f32;
        let a = self.acf[i];
        let b = self.acf[(i + 1).min(self.acf.len() - 1)];
        (a + f * (b - a)) / self.acf[0]
    }

    fn active_range(&self, p: &DspParams) -> (usize, usize) {
        let (mut lo, mut hi) = (p.min_bpm, p.max_bpm);
        if !(lo.is_finite() && hi.is_finite()) || lo <= 0.0 || hi <= lo {
            lo = 75.0;
            hi = 180.0;
        }
        let n = self.bpm_grid.len();
        let idx = |b: f32| ((b / GRID_MIN_BPM).ln() / GRID_STEP.ln()).max(0.0);
        let i0 = (idx(lo).ceil() as usize).min(n - 1);
        let i1 = (idx(hi).floor() as usize).clamp(i0, n - 1);
        (i0, i1)
    }

    /// Score the grid and advance the forward filter.
    pub(super) fn update(&mut self, p: &DspParams) {
        let (i0, i1) = self.active_range(p);
        let n_act = (i1 - i0 + 1) as f32;
        if (i0, i1) != self.active {
            self.active = (i0, i1);
            self.post.iter_mut().for_each(|v| *v = 0.0);
            self.post[i0..=i1].iter_mut().for_each(|v| *v = 1.0 / n_act);
        }
        // Less than a second of signal, or none: nothing to say.
        let enough = self.pushed as f32 * self.hop_s >= 1.0;
        if !(self.acf[0] > 1.0e-9 && self.acf[0].is_finite() && enough) {
            self.salience = 0.0;
            return;
        }
        let max_lag = (self.acf.len() - 2) as f32;
        let mut best_raw = 0.0f32;
        for i in i0..=i1 {
            let period = self.period_grid[i];
            let (mut s, mut k) = (0.0, 0);
            while k < HARMONICS && (k + 1) as f32 * period <= max_lag {
                s += self.corr((k + 1) as f32 * period);
                k += 1;
            }
            let score = if k > 0 { s / k as f32 } else { 0.0 };
            let score = if score.is_finite() { score } else { 0.0 };
            best_raw = best_raw.max(score);
            let pos = score.max(0.0);
            self.obs[i] = pos * pos * self.prior[i] + 1.0e-6;
        }
        // Forward filter: predict with the transition, then weigh.
        let mut sum = 0.0;
        for i in i0..=i1 {
            let mut acc = 0.0;
            for (d, &t) in self.trans.iter().enumerate() {
                let j = i as isize + d as isize - TRANS_HALF as isize;
                if j >= i0 as isize && j <= i1 as isize {
                    acc += self.post[j as usize] * t;
                }
            }
            self.scratch[i] = acc;
            sum += acc;
        }
        let mut total = 0.0;
        for i in i0..=i1 {
            let pred = (1.0 - JUMP_P) * self.scratch[i] / sum.max(1.0e-30) + JUMP_P / n_act;
            let v = pred * self.obs[i];
            self.post[i] = v;
            total += v;
        }
        if !(total > 0.0 && total.is_finite()) {
            self.post[i0..=i1].iter_mut().for_each(|v| *v = 1.0 / n_act);
            self.salience = 0.0;
            return;
        }
        let mut best = i0;
        for i in i0..=i1 {
            self.post[i] /= total;
            if self.post[i] > self.post[best] {
                best = i;
            }
        }
        // Parabolic refinement on the log posterior.
        let mut frac = 0.0;
        if best > i0 && best < i1 {
            let l = self.post[best - 1].max(1e-30).ln();
            let c = self.post[best].max(1e-30).ln();
            let r = self.post[best + 1].max(1e-30).ln();
            let den = l - 2.0 * c + r;
            if den < 0.0 {
                frac = (0.5 * (l - r) / den).clamp(-0.5, 0.5);
            }
        }
        self.best_bpm = GRID_MIN_BPM * GRID_STEP.powf(best as f32 + frac);
        // Salience: periodicity of the winner relative to a clearly periodic
        // signal (a click train scores ~0.9), and posterior concentration.
        let score_best = {
            let i = best;
            let period = self.period_grid[i];
            let (mut s, mut k) = (0.0, 0);
            while k < HARMONICS && (k + 1) as f32 * period <= max_lag {
                s += self.corr((k + 1) as f32 * period);
                k += 1;
            }
            if k > 0 {
                s / k as f32
            } else {
                0.0
            }
        };
        let _ = best_raw;
        let mut mass = 0.0;
        let lo = best.saturating_sub(6).max(i0);
        let hi = (best + 6).min(i1);
        for v in &self.post[lo..=hi] {
            mass += v;
        }
        let periodicity = ((score_best - 0.05) / 0.3).clamp(0.0, 1.0);
        let s = (periodicity * mass.clamp(0.0, 1.0)).sqrt();
        self.salience = if s.is_finite() { s } else { 0.0 };
    }

    /// Current tempo estimate (0 before there is one).
    pub(super) fn bpm(&self) -> f32 {
        self.best_bpm
    }

    /// Beat period in hops of the estimate (120 BPM before there is one).
    pub(super) fn period_hops(&self) -> f32 {
        let b = if self.best_bpm > 0.0 {
            self.best_bpm
        } else {
            PRIOR_BPM
        };
        60.0 / (b * self.hop_s)
    }

    /// How sure the tempogram is, in [0, 1].
    pub(super) fn salience(&self) -> f32 {
        self.salience
    }

    pub(super) fn reset(&mut self) {
        self.ring.iter_mut().for_each(|v| *v = 0.0);
        self.acf.iter_mut().for_each(|v| *v = 0.0);
        self.pos = 0;
        self.mean = 0.0;
        self.prev = [0.0; 2];
        self.active = (usize::MAX, 0);
        self.best_bpm = 0.0;
        self.salience = 0.0;
        self.pushed = 0;
    }
}
