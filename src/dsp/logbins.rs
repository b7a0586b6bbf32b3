//! Log-spaced bins over an rfft: which rfft bins fall into which log bin,
//! and the power → dB reduction.
//!
//! Log bin `j` spans `[f_min·r^j, f_min·r^(j+1))` with `r = (f_max/f_min)^(1/N)`
//! and `f_max = sr/2`. Its power is the mean of the window-corrected powers of
//! the rfft bins inside it (energy conserving: a sine of amplitude A reads
//! A²/2, its RMS²); its dB value `10·log10(power)`. A log bin that no rfft bin
//! falls into (low frequencies, where rfft bins are wider than log bins) is
//! [`EMPTY_BIN_DB`].
//!
//! Real-time safety: storage is sized for the largest bin count at
//! construction; [`LogBinMap::rebuild`] refills it in place.

use crate::types::{EMPTY_BIN_DB, MAX_FFT_BINS};

/// Floor for power before the logarithm.
const POWER_EPS: f32 = 1e-12;

/// The rfft → log bin assignment.
pub struct LogBinMap {
    /// Log bin of each rfft bin, or -1 when outside `[f_min, sr/2]`.
    assign: Vec<i32>,
    /// rfft bins per log bin ([`MAX_FFT_BINS`] entries, on the heap: the
    /// processor that holds the map lives on a worker thread's stack,
    /// which debug builds fill with copies of it).
    counts: Vec<u32>,
    /// First rfft bin of each log bin ([`MAX_FFT_BINS`] entries).
    first: Vec<u32>,
    /// Whether every log bin's rfft bins are adjacent (the frequencies grow
    /// with the index, so always, short of a rounding surprise): then a log
    /// bin's power is a sum over a slice instead of a scatter.
    contiguous: bool,
    n_bins: usize,
    f_min: f32,
    sr: f32,
}

impl LogBinMap {
    /// A map for an rfft with `n_rfft` bins (window/2 + 1) at `sr`.
    pub fn new(n_rfft: usize, sr: f32, n_bins: usize, f_min: f32) -> Self {
        let mut m = LogBinMap {
            assign: vec![-1; n_rfft],
            counts: vec![0; MAX_FFT_BINS],
            first: vec![0; MAX_FFT_BINS],
            contiguous: false,
            n_bins: 0,
            f_min,
            sr,
        };
        m.rebuild(n_bins, f_min);
        m
    }

    /// Recompute for a new bin count or lowest edge. No allocation.
    pub fn rebuild(&mut self, n_bins: usize, f_min: f32) {
        let n_bins = n_bins.clamp(1, MAX_FFT_BINS);
        self.n_bins = n_bins;
        self.f_min = f_min;
        let n_rfft = self.assign.len();
        let f_max = (self.sr / 2.0).max(f_min * 2.0);
        let log_span = (f_max / f_min).ln();
        self.counts[..].iter_mut().for_each(|c| *c = 0);
        for (k, a) in self.assign.iter_mut().enumerate() {
            let f = k as f32 * self.sr / (2.0 * (n_rfft - 1) as f32);
            *a = if f < f_min || f > f_max {
                -1
            } else {
                let j = ((f / f_min).ln() / log_span * n_bins as f32).floor() as i32;
                j.clamp(0, n_bins as i32 - 1)
            };
            if *a >= 0 {
                self.counts[*a as usize] += 1;
            }
        }
        // Each log bin's members lie in [first, first + count) exactly when
        // they are adjacent. Empty bins keep first = 0 (an empty slice).
        self.first[..].iter_mut().for_each(|f| *f = u32::MAX);
        for (k, &a) in self.assign.iter().enumerate() {
            if a >= 0 && self.first[a as usize] == u32::MAX {
                self.first[a as usize] = k as u32;
            }
        }
        self.first[..].iter_mut().for_each(|f| {
            if *f == u32::MAX {
                *f = 0
            }
        });
        let (first, counts) = (&self.first, &self.counts);
        self.contiguous = self
            .assign
            .iter()
            .enumerate()
            .all(|(k, &a)| a < 0 || (k as u32) < first[a as usize] + counts[a as usize]);
    }

    /// Number of log bins.
    pub fn n_bins(&self) -> usize {
        self.n_bins
    }

    /// Centre frequency (geometric) of log bin `j`.
    pub fn centre_hz(&self, j: usize) -> f32 {
        let f_max = (self.sr / 2.0).max(self.f_min * 2.0);
        let r = (f_max / self.f_min).ln() / self.n_bins as f32;
        self.f_min * ((j as f32 + 0.5) * r).exp()
    }

    /// Log bins per octave.
    pub fn bins_per_octave(&self) -> f32 {
        let f_max = (self.sr / 2.0).max(self.f_min * 2.0);
        self.n_bins as f32 / (f_max / self.f_min).log2().max(1e-6)
    }

    /// Reduce rfft `power` into `db_out[..n_bins]` (dB, or [`EMPTY_BIN_DB`]).
    /// `sums` is scratch of at least `n_bins`.
    pub fn reduce(&self, power: &[f32], sums: &mut [f32], db_out: &mut [f32]) {
        let n = self.n_bins;
        if self.contiguous && power.len() >= self.assign.len() {
            // The same additions in the same order as the scatter below,
            // without a store-to-load chain through `sums`.
            for (j, s) in sums[..n].iter_mut().enumerate() {
                let first = self.first[j] as usize;
                let members = &power[first..first + self.counts[j] as usize];
                *s = members.iter().fold(0.0, |acc, &p| acc + p);
            }
        } else {
            sums[..n].iter_mut().for_each(|s| *s = 0.0);
            for (&a, &p) in self.assign.iter().zip(power) {
                if a >= 0 {
                    sums[a as usize] += p;
                }
            }
        }
        // 10·log10 as (10 / ln 10)·ln, the logs in SIMD (libm's `log10`
        // per bin was a tenth of `analyze`).
        const DB_PER_LN: f32 = 10.0 * std::f32::consts::LOG10_E;
        let db = &mut db_out[..n];
        for ((d, &s), &c) in db.iter_mut().zip(&sums[..n]).zip(&self.counts[..n]) {
            *d = (s / (c as f32).max(1.0)).max(POWER_EPS);
        }
        super::lanes::ln_in_place(db);
        for (d, &c) in db.iter_mut().zip(&self.counts[..n]) {
            *d = if c == 0 { EMPTY_BIN_DB } else { DB_PER_LN * *d };
        }
    }

    /// The log bin an rfft bin falls into.
    pub fn bin_of_rfft(&self, k: usize) -> Option<usize> {
        self.assign
            .get(k)
            .and_then(|&a| (a >= 0).then_some(a as usize))
    }

    /// The log bin containing frequency `f` (None outside the range).
    pub fn bin_of_hz(&self, f: f32) -> Option<usize> {
        let f_max = (self.sr / 2.0).max(self.f_min * 2.0);
        if f < self.f_min || f > f_max {
            return None;
        }
        let j = ((f / self.f_min).ln() / (f_max / self.f_min).ln() * self.n_bins as f32).floor();
        Some((j as usize).min(self.n_bins - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rfft_bin_in_range_is_counted_once() {
        let m = LogBinMap::new(513, 48_000.0, 128, 30.0);
        let total: u32 = m.counts[..128].iter().sum();
        // rfft bins from 46.875 Hz (k = 1) to 24 kHz (k = 512).
        assert_eq!(total, 512);
        assert!(
            m.counts[0] == 0,
            "the lowest log bins are narrower than one rfft bin"
        );
    }

    #[test]
    fn slice_sums_equal_the_scatter() {
        let mut m = LogBinMap::new(513, 48_000.0, 128, 30.0);
        assert!(m.contiguous);
        let power: Vec<f32> = (0..513)
            .map(|k| ((k * 7919) % 1000) as f32 * 1e-3)
            .collect();
        let (mut s1, mut d1) = ([0.0; MAX_FFT_BINS], [0.0; MAX_FFT_BINS]);
        let (mut s2, mut d2) = ([0.0; MAX_FFT_BINS], [0.0; MAX_FFT_BINS]);
        m.reduce(&power, &mut s1, &mut d1);
        m.contiguous = false;
        m.reduce(&power, &mut s2, &mut d2);
        assert_eq!(s1[..128], s2[..128]);
        assert_eq!(d1[..128], d2[..128]);
    }

    #[test]
    fn rebuild_changes_the_bin_count_in_place() {
        let mut m = LogBinMap::new(513, 48_000.0, 128, 30.0);
        let ptr = m.assign.as_ptr();
        m.rebuild(64, 40.0);
        assert_eq!(m.n_bins(), 64);
        assert_eq!(ptr, m.assign.as_ptr());
        assert!(m.assign.iter().all(|&a| a < 64));
    }
}
