//! Onset detection: per-band onsets on the L/M/H envelopes, and a broadband
//! spectral-flux onset detector on the FFT magnitudes.
//!
//! Real-time safety: state is allocated in `new`; `process` never allocates,
//! locks, logs or blocks.
//!
//! (Initial version: the API the workers call. The detectors are filled in
//! by the musical-features work.)

use super::params::DspParams;

/// Per-band onset detector on the auto-scaled L/M/H values.
pub struct BandOnsets {
    block_period_s: f32,
}

impl BandOnsets {
    /// A detector for blocks of `block_period_s` seconds.
    pub fn new(block_period_s: f32) -> Self {
        BandOnsets { block_period_s }
    }

    /// Feed one block's auto-scaled L/M/H; returns [`crate::types::onset_bits`].
    pub fn process(&mut self, _lmh: &[f32; 3], _p: &DspParams) -> u8 {
        let _ = self.block_period_s;
        0
    }

    /// Forget all history (device switch).
    pub fn reset(&mut self) {}
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
}

/// Broadband spectral-flux onset detector.
pub struct FluxOnset {
    prev: Vec<f32>,
}

impl FluxOnset {
    /// A detector for `n_mag` rfft magnitude bins at `sample_rate`, one call
    /// every `hop_period_s`.
    pub fn new(n_mag: usize, _sample_rate: f32, _hop_period_s: f32) -> Self {
        FluxOnset {
            prev: vec![0.0; n_mag],
        }
    }

    /// Feed one hop's linear magnitudes.
    pub fn process(&mut self, mag: &[f32], _p: &DspParams) -> OnsetOut {
        let mut flux = 0.0;
        for (p, &m) in self.prev.iter_mut().zip(mag) {
            let l = (1.0 + 1000.0 * m).ln();
            flux += (l - *p).max(0.0);
            *p = l;
        }
        OnsetOut {
            odf: flux,
            flux,
            onset: None,
            lag_s: 0.0,
        }
    }

    /// Forget all history.
    pub fn reset(&mut self) {
        self.prev.iter_mut().for_each(|v| *v = 0.0);
    }
}
