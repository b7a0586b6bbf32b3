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

    /// Count `frames` new frames of input.
    pub fn push(&mut self, frames: usize) {
        self.since = self.since.saturating_add(frames);
    }

    /// Frames of input until the next detector hop falls due (at least 1).
    pub fn frames_until_due(&self) -> usize {
        self.hop.saturating_sub(self.since).max(1)
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

    /// Magnitudes (`|X|·2/Σw`) of the [`Self::window`] frames of `history`
    /// that end `back` frames before its newest frame (missing older frames
    /// count as silence), the window's mean square around the DC offset
    /// `dc` and its mean. Only for a front end that does not reuse the
    /// spectrum's.
    pub fn magnitudes(&mut self, history: &[f32], back: usize, dc: f32) -> (&[f32], f32, f32) {
        let n = self.inp.len();
        let end = history.len().saturating_sub(back);
        let tail = &history[end.saturating_sub(n)..end];
        let pad = n - tail.len();
        let (sum, around_dc) =
            crate::dsp::lanes::window_sums(&mut self.inp[pad..], tail, &self.hann[pad..], dc);
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
        (&self.mag, around_dc / n as f32, sum / n as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hop_and_window_last_the_same_at_every_rate() {
        for sr in [
            8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000, 176_400,
            192_000, 352_800, 384_000,
        ] {
            let fe = DetectorFrontEnd::new(sr, 1024, 512);
            let hop_s = fe.hop_s() as f64;
            let window_s = fe.window() as f64 / sr as f64;
            let reused = fe.reuses_spectrum();
            assert_eq!(reused, sr == 44_100 || sr == 48_000, "at {sr} Hz");
            // Reused at 44.1 kHz: 11.6 ms, within a tenth of 10.7.
            let tol = if reused { 0.1 } else { 0.005 };
            assert!(
                (hop_s / (DETECTOR_WINDOW_S / 2.0) - 1.0).abs() <= tol,
                "at {sr} Hz the hop is {hop_s} s"
            );
            assert!(
                (window_s / DETECTOR_WINDOW_S - 1.0).abs() <= tol,
                "at {sr} Hz the window is {window_s} s"
            );
            assert_eq!(fe.n_mag(), fe.window() / 2 + 1);
        }
        // Another spectrum hop at 48 kHz: the detectors keep their own.
        let fe = DetectorFrontEnd::new(48_000, 1024, 256);
        assert!(!fe.reuses_spectrum());
        assert_eq!(fe.window(), 1024);
    }

    #[test]
    fn hops_fall_due_at_their_own_frames() {
        // 22.05 kHz: 235-frame hops over 256-frame blocks.
        let mut fe = DetectorFrontEnd::new(22_050, 1024, 512);
        let hop = (fe.hop_s() * 22_050.0).round() as usize;
        assert_eq!(hop, 235);
        let (mut due_at, mut frames) = (Vec::new(), 0usize);
        for _ in 0..40 {
            fe.push(256);
            frames += 256;
            while let Some(back) = fe.next_due() {
                assert!(back < 256, "a hop's window ends inside this block");
                due_at.push(frames - back);
            }
        }
        assert_eq!(due_at.len(), 40 * 256 / 235);
        for (k, at) in due_at.iter().enumerate() {
            assert_eq!(*at, (k + 1) * 235);
        }
        // Over a huge push nothing overflows and the hops are still counted.
        let mut fe = DetectorFrontEnd::new(22_050, 1024, 512);
        fe.push(usize::MAX);
        fe.push(1);
        assert_eq!(fe.next_due(), Some(usize::MAX - 235));
    }

    #[test]
    fn magnitudes_read_the_window_that_ends_back_frames_ago() {
        let mut fe = DetectorFrontEnd::new(16_000, 1024, 512);
        let n = fe.window();
        // A 1 kHz sine, then silence for the newest 100 frames.
        let mut h: Vec<f32> = (0..n + 300)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin())
            .collect();
        h[n + 200..].iter_mut().for_each(|v| *v = 0.0);
        let (mag, ms, _) = fe.magnitudes(&h, 100, 0.0);
        let bin = (1000.0 * n as f32 / 16_000.0).round() as usize;
        assert!((mag[bin] - 1.0).abs() < 0.1, "the sine reads {}", mag[bin]);
        assert!((ms - 0.5).abs() < 0.02, "mean square {ms}");
        let (_, ms, _) = fe.magnitudes(&h, 0, 0.0);
        assert!(ms < 0.5, "the newest window holds silence: {ms}");
        // Further back than the history: the missing frames are silence.
        let (mag, ms, _) = fe.magnitudes(&h[..50], 10, 0.0);
        assert!(mag.iter().all(|m| m.is_finite()) && ms.is_finite());
        let (_, ms, _) = fe.magnitudes(&h, usize::MAX, 0.0);
        assert_eq!(ms, 0.0);
    }
}
