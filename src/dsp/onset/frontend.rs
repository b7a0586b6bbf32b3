//! The detectors' view of the signal: a Hann window of fixed *duration*
//! every hop of fixed duration, whatever the sample rate and the configured
//! FFT size.
//!
//! Why: the onset detector and the beat tracker compare log-filtered
//! magnitudes hop to hop. With the configured 1024-frame window at 192 kHz
//! the window is 5.3 ms long: a 440 Hz tone fills 2.3 cycles of it, its
//! main lobe overlaps its own negative-frequency image, and its magnitude
//! swings with the tone's phase from hop to hop — flux, false onsets and
//! beats on a steady tone. At every rate the detectors therefore see about
//! [`DETECTOR_WINDOW_S`] (the power of two nearest to it in frames) every
//! half window (rounded to a whole number of spectrum hops). At 44.1 and
//! 48 kHz with the default 1024/512 FFT that is the spectrum's own FFT,
//! whose magnitudes are reused; otherwise the front end runs its own FFT.
//!
//! Real-time safety: the plan and buffers are built in `new`;
//! `magnitudes` never allocates.

use num_complex::Complex32;
use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// Window duration the detectors are tuned for (1024 frames at 48 kHz).
pub const DETECTOR_WINDOW_S: f64 = 1024.0 / 48_000.0;

/// A fixed-duration analysis for the detectors.
pub struct DetectorFrontEnd {
    window: usize,
    every: u32,
    count: u32,
    reuse: bool,
    hop_s: f32,
    fft: Arc<dyn RealToComplex<f32>>,
    hann: Vec<f32>,
    mag_corr: f32,
    inp: Vec<f32>,
    out: Vec<Complex32>,
    scratch: Vec<Complex32>,
    mag: Vec<f32>,
}

impl DetectorFrontEnd {
    /// For a spectrum of `spec_window` frames every `spec_hop` frames at
    /// `sr` Hz.
    pub fn new(sr: u32, spec_window: usize, spec_hop: usize) -> Self {
        let sr = sr.max(1);
        let want = DETECTOR_WINDOW_S * sr as f64;
        let window = (1usize << (want.max(16.0).log2().round() as u32)).clamp(16, 1 << 15);
        let spec_hop = spec_hop.max(1);
        let every = (((window / 2) as f64 / spec_hop as f64).round() as u32).max(1);
        let reuse = window == spec_window && every == 1;
        let n = if reuse { 2 } else { window };
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
        // Symmetric Hann, as the spectrum uses, so reused and own
        // magnitudes are the same quantity.
        let hann: Vec<f32> = (0..n)
            .map(|i| {
                0.5 - 0.5
                    * (2.0 * std::f64::consts::PI * i as f64 / (n - 1).max(1) as f64).cos() as f32
            })
            .collect();
        let coh: f32 = hann.iter().sum();
        DetectorFrontEnd {
            window,
            every,
            count: 0,
            reuse,
            hop_s: (every as usize * spec_hop) as f32 / sr as f32,
            inp: fft.make_input_vec(),
            out: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            mag: vec![0.0; n / 2 + 1],
            fft,
            hann,
            mag_corr: 2.0 / coh.max(1.0e-12),
        }
    }

    /// Frames of history the detectors' window needs.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Seconds between two detector hops.
    pub fn hop_s(&self) -> f32 {
        self.hop_s
    }

    /// Magnitude bins the detectors get.
    pub fn n_mag(&self) -> usize {
        self.window / 2 + 1
    }

    /// Whether the spectrum's own magnitudes are the detectors' input.
    pub fn reuses_spectrum(&self) -> bool {
        self.reuse
    }

    /// Call once per spectrum hop: whether the detectors run in this one.
    pub fn tick(&mut self) -> bool {
        self.count += 1;
        if self.count >= self.every {
            self.count = 0;
            true
        } else {
            false
        }
    }

    /// Forget the hop count (device switch).
    pub fn reset(&mut self) {
        self.count = 0;
    }

    /// Magnitudes (`|X|·2/Σw`) of the newest [`Self::window`] frames of
    /// `history`, which ends with the newest frame. Only for a front end
    /// that does not reuse the spectrum's.
    pub fn magnitudes(&mut self, history: &[f32]) -> &[f32] {
        let n = self.inp.len();
        let tail = &history[history.len().saturating_sub(n)..];
        let pad = n - tail.len();
        for (o, (&h, &w)) in self.inp[pad..]
            .iter_mut()
            .zip(tail.iter().zip(&self.hann[pad..]))
        {
            *o = h * w;
        }
        self.inp[..pad].iter_mut().for_each(|v| *v = 0.0);
        // The FFT of a buffer of the planned length cannot fail; on the
        // impossible error the previous magnitudes are kept.
        if self
            .fft
            .process_with_scratch(&mut self.inp, &mut self.out, &mut self.scratch)
            .is_ok()
        {
            for (m, c) in self.mag.iter_mut().zip(&self.out) {
                *m = c.norm() * self.mag_corr;
            }
        }
        &self.mag
    }
}
