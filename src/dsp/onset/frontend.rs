//! The detectors' view of the signal: a Hann window of fixed *duration*
//! every hop of fixed duration, whatever the sample rate and the configured
//! FFT.
//!
//! Why: the onset detector and the beat tracker compare log-filtered
//! magnitudes hop to hop. With the configured 1024-frame window at 192 kHz
//! the window is 5.3 ms long: a 440 Hz tone fills 2.3 cycles of it, its
//! main lobe overlaps its own negative-frequency image, and its magnitude
//! swings with the tone's phase from hop to hop — flux, false onsets and
//! beats on a steady tone. And with the configured 512-frame hop at 16 kHz
//! the detectors would see the signal every 32 ms (64 ms at 8 kHz): a
//! 120 BPM beat is then 16 or 8 hops, neighbouring tempi the tracker can
//! tell apart are 6–12 % apart and the beats land up to a hop late. At
//! every rate the detectors therefore see a window of about
//! [`DETECTOR_WINDOW_S`] every half window, counted in frames of their own,
//! independent of the spectrum's hop: several times per spectrum hop at low
//! rates, once every few at high ones. The hop is the whole number of frames
//! nearest to half of [`DETECTOR_WINDOW_S`] (within 0.4 % of it from 8 to
//! 384 kHz; an FFT of any length is planned). Where the
//! spectrum's own FFT is within a tenth of that window and hop (the default
//! 1024/512 at 44.1 and 48 kHz) its magnitudes are reused; otherwise the
//! front end runs its own FFT on the history, at the exact frame each hop
//! falls due.
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
    hop: usize,
    /// Frames received since the last detector hop.
    since: usize,
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
        let spec_hop = spec_hop.max(1);
        // The spectrum's own FFT serves when it is within a tenth of the
        // detectors' window and hop (1024/512 at 44.1 and 48 kHz).
        let near = |have: usize, want: f64| (have as f64 - want).abs() <= 0.1 * want;
        let reuse = near(spec_window, want) && near(spec_hop, want / 2.0);
        let (window, hop) = if reuse {
            (spec_window, spec_hop)
        } else {
            let hop = ((want / 2.0).round() as usize).clamp(8, 1 << 14);
            (2 * hop, hop)
        };
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
            hop,
            since: 0,
            reuse,
            hop_s: hop as f32 / sr as f32,
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

    /// Frames between two detector hops.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Count `frames` new frames of input.
    pub fn push(&mut self, frames: usize) {
        self.since = self.since.saturating_add(frames);
    }

    /// The next detector hop that has fallen due, oldest first: how many
    /// frames of the input pushed since then are newer than its window's
    /// end. `None` when no hop is due.
    pub fn next_due(&mut self) -> Option<usize> {
        if self.since < self.hop {
            return None;
        }
        self.since -= self.hop;
        Some(self.since)
    }

    /// Forget the hop count (device switch).
    pub fn reset(&mut self) {
        self.since = 0;
    }

    /// Magnitudes (`|X|·2/Σw`) of the [`Self::window`] frames of `history`
    /// that end `back` frames before its newest frame (missing older frames
    /// count as silence), and the window's mean square. Only for a front end
    /// that does not reuse the spectrum's.
    pub fn magnitudes(&mut self, history: &[f32], back: usize) -> (&[f32], f32) {
        let n = self.inp.len();
        let end = history.len().saturating_sub(back);
        let tail = &history[end.saturating_sub(n)..end];
        let pad = n - tail.len();
        let sum_sq =
            crate::dsp::lanes::window_sum_sq(&mut self.inp[pad..], tail, &self.hann[pad..]);
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
        (&self.mag, sum_sq / n as f32)
    }
}
