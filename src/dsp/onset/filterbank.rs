//! The onset detector's log-frequency filterbank: 12 triangular bands per
//! octave over the rfft bins, each tagged with the beat group its centre
//! falls in (see the parent module's docs).

use super::{BANDS_PER_OCTAVE, BEAT_GROUP_EDGES_HZ, F_HI_HZ, F_LO_HZ};

/// A log-frequency triangular filterbank over rfft bins, stored sparsely.
pub(super) struct FilterBank {
    /// Per band: first bin, number of bins, offset into `weights`.
    pub(super) bands: Vec<(usize, usize, usize)>,
    pub(super) weights: Vec<f32>,
    /// Per band: the beat group its centre falls in. Never decreasing
    /// (the bands are in frequency order), so a group's bands are
    /// consecutive: [`super::FluxOnset::process`] sums each group in one run.
    pub(super) group: Vec<usize>,
}

impl FilterBank {
    pub(super) fn new(n_mag: usize, sample_rate: f32) -> Self {
        let n_fft = 2 * n_mag.saturating_sub(1).max(1);
        let bin_hz = sample_rate / n_fft as f32;
        let f_hi = F_HI_HZ.min(0.45 * sample_rate);
        // Unique centre bins on a log grid, as madmom does it.
        let mut centres: Vec<usize> = Vec::new();
        let mut f = F_LO_HZ;
        while f <= f_hi {
            let b = (f / bin_hz).round() as usize;
            if b >= 1 && b + 1 < n_mag && centres.last() != Some(&b) {
                centres.push(b);
            }
            f *= 2f32.powf(1.0 / BANDS_PER_OCTAVE);
        }
        let mut bands = Vec::new();
        let mut weights = Vec::new();
        let mut group = Vec::new();
        for w in centres.windows(3) {
            let hz = w[1] as f32 * bin_hz;
            group.push(BEAT_GROUP_EDGES_HZ.iter().filter(|&&e| hz >= e).count());
            let (lo, c, hi) = (w[0], w[1], w[2]);
            let start = weights.len();
            let mut sum = 0.0;
            for b in lo..=hi {
                let v = if b <= c {
                    1.0 - (c - b) as f32 / (c - lo).max(1) as f32
                } else {
                    1.0 - (b - c) as f32 / (hi - c).max(1) as f32
                };
                // A band that is one bin wide keeps its centre weight only.
                let v = if b == c { 1.0 } else { v.max(0.0) };
                weights.push(v);
                sum += v;
            }
            for v in &mut weights[start..] {
                *v /= sum;
            }
            bands.push((lo, hi - lo + 1, start));
        }
        if bands.is_empty() {
            // Degenerate sizes (tests with tiny FFTs): one band over all bins.
            let n = n_mag.max(1);
            weights = vec![1.0 / n as f32; n];
            bands.push((0, n, 0));
            group.push(0);
        }
        FilterBank {
            bands,
            weights,
            group,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.bands.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::onset::BEAT_GROUPS;

    /// Every size and rate phase4 can run at: one group per band, in
    /// range, never decreasing (the onset detector sums each group's bands
    /// in one run and relies on them being consecutive).
    #[test]
    fn every_group_is_one_run_of_consecutive_bands() {
        for n_mag in [1, 2, 3, 5, 33, 129, 257, 513, 1025, 2049, 8193] {
            for rate in [
                8_000.0, 22_050.0, 44_100.0, 48_000.0, 96_000.0, 192_000.0, 384_000.0,
            ] {
                let fb = FilterBank::new(n_mag, rate);
                assert_eq!(fb.group.len(), fb.bands.len(), "n_mag {n_mag}, {rate} Hz");
                assert!(!fb.bands.is_empty(), "n_mag {n_mag}, {rate} Hz");
                assert!(
                    fb.group.iter().all(|&g| g < BEAT_GROUPS),
                    "n_mag {n_mag}, {rate} Hz"
                );
                assert!(
                    fb.group.windows(2).all(|w| w[0] <= w[1]),
                    "n_mag {n_mag}, {rate} Hz: {:?}",
                    fb.group
                );
            }
        }
    }
}
