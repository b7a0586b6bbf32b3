//! WLED's sound analysis, done on phase4's input: the 16 GEQ channels, the
//! volume, the strongest frequency and the zero-crossing count that a
//! WLED controller would compute from its own microphone.
//!
//! WLED (audio-reactive usermod) samples at 22 050 Hz, runs a 512-point FFT
//! with a Blackman-Harris window every ~21 ms, averages fixed ranges of FFT
//! bins into 16 channels (43 Hz .. 9.3 kHz, about 1/3 to 1/2 octave each,
//! the top two damped), multiplies each by a "pink noise" correction,
//! applies its gain (AGC), smooths (rise fast, fall over ~225 ms) and maps
//! the result to 0..255 through its square-root scaling. This module does
//! the same on phase4's input:
//!
//! - the FFT is the power of two closest to WLED's 23 ms window at the
//!   input's rate (1024 at 44.1/48 kHz), Blackman-Harris windowed;
//! - a channel averages the bins whose centres lie in the same frequency
//!   range as WLED's bins for that channel (WLED's table, in Hz);
//! - magnitudes are normalised (a sine of amplitude A reads A), so the
//!   gain is an automatic one: a peak follower on the loudest weighted
//!   channel (attack 50 ms, release 10 s) brings it to [`TARGET`] in WLED's
//!   pre-scaling units, times `wled.gain`;
//! - below the gate (phase4's `silence.threshold-dbfs`) the channels decay
//!   the way WLED's do when its noise gate is closed, and the volume reads 0.
//!
//! Runs on the `p4-rig` thread, never on a real-time thread. Everything is
//! allocated in [`GeqAnalyzer::new`].

use super::packet::AudioSync;
use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// WLED's sample rate and FFT size: its bin table is in these bins.
const WLED_RATE: f32 = 22_050.0;
const WLED_FFT: f32 = 512.0;

/// WLED's channels as (first, last) FFT bin at 22 050 Hz / 512, inclusive,
/// with its per-channel damping (the top two channels are attenuated).
const CHANNELS: [(f32, f32, f32); 16] = [
    (1.0, 2.0, 1.0),
    (2.0, 3.0, 1.0),
    (3.0, 5.0, 1.0),
    (5.0, 7.0, 1.0),
    (7.0, 10.0, 1.0),
    (10.0, 13.0, 1.0),
    (13.0, 19.0, 1.0),
    (19.0, 26.0, 1.0),
    (26.0, 33.0, 1.0),
    (33.0, 44.0, 1.0),
    (44.0, 56.0, 1.0),
    (56.0, 70.0, 1.0),
    (70.0, 86.0, 1.0),
    (86.0, 104.0, 1.0),
    (104.0, 165.0, 0.88),
    (165.0, 215.0, 0.70),
];

/// WLED's "pink noise" correction per channel (evens out music's tilt).
const PINK: [f32; 16] = [
    1.70, 1.71, 1.73, 1.78, 1.68, 1.56, 1.55, 1.63, 1.79, 1.62, 1.80, 2.06, 2.47, 3.35, 6.83, 9.55,
];

/// Where the auto gain puts the loudest channel, in WLED's units before its
/// square-root scaling (which saturates at about 1023).
pub const TARGET: f32 = 400.0;
/// Where the auto gain puts the volume's peak (WLED's AGC aims at ~220).
const VOLUME_TARGET: f32 = 220.0;

/// Frequency range of WLED channel `c`, in Hz (bin centres).
pub fn channel_range_hz(c: usize) -> (f32, f32) {
    let df = WLED_RATE / WLED_FFT;
    (CHANNELS[c].0 * df, CHANNELS[c].1 * df)
}

/// A one-pole peak follower: fast attack, slow release, never below `floor`.
#[derive(Clone, Copy, Debug)]
struct Follower {
    value: f32,
    floor: f32,
}

impl Follower {
    fn update(&mut self, x: f32, a_attack: f32, a_release: f32) -> f32 {
        let a = if x > self.value { a_attack } else { a_release };
        self.value = (self.value + a * (x - self.value)).max(self.floor);
        self.value
    }
}

/// The analysis state (one per input stream).
pub struct GeqAnalyzer {
    sr: f32,
    n: usize,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    mag_corr: f32,
    history: Vec<f32>,
    pos: usize,
    fft_in: Vec<f32>,
    fft_out: Vec<num_complex::Complex32>,
    scratch: Vec<num_complex::Complex32>,
    mags: Vec<f32>,
    bins: [(usize, usize); 16],
    zc_len: usize,
    zc_scale: f32,
    gate_rms: f32,
    gain: f32,
    geq_peak: Follower,
    vol_peak: Follower,
    calc: [f32; 16],
    avg: [f32; 16],
    smth: f32,
    counter: u8,
}

/// The power of two closest to WLED's 23.2 ms window at `sr`.
pub fn fft_len(sr: u32) -> usize {
    let want = sr as f32 * WLED_FFT / WLED_RATE;
    let up = (want as usize).next_power_of_two().max(64);
    let down = up / 2;
    if (want - down as f32).abs() <= (up as f32 - want).abs() {
        down.max(64)
    } else {
        up
    }
}

impl GeqAnalyzer {
    /// An analyzer for input at `sr`; `gate_dbfs` is the level below which
    /// the input counts as silent, `gain` multiplies the channels.
    pub fn new(sr: u32, gate_dbfs: f32, gain: f32) -> Self {
        let n = fft_len(sr);
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
        // 4-term Blackman-Harris, as WLED uses ("exact peaks").
        let window: Vec<f32> = (0..n)
            .map(|i| {
                let x = 2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64;
                (0.35875 - 0.48829 * x.cos() + 0.14128 * (2.0 * x).cos()
                    - 0.01168 * (3.0 * x).cos()) as f32
            })
            .collect();
        let sum: f32 = window.iter().sum();
        let wled_len = (sr as f32 * WLED_FFT / WLED_RATE).round() as usize;
        let df = sr as f32 / n as f32;
        let top = n / 2;
        let mut bins = [(0usize, 0usize); 16];
        for (c, b) in bins.iter_mut().enumerate() {
            let (lo, hi) = channel_range_hz(c);
            let k_lo = ((lo / df).round() as usize).clamp(1, top);
            let k_hi = ((hi / df).round() as usize).clamp(k_lo, top);
            *b = (k_lo, k_hi);
        }
        GeqAnalyzer {
            sr: sr as f32,
            n,
            fft_in: fft.make_input_vec(),
            fft_out: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            fft,
            window,
            mag_corr: 2.0 / sum.max(1e-9),
            history: vec![0.0; n],
            pos: 0,
            mags: vec![0.0; top + 1],
            bins,
            zc_len: wled_len.clamp(2, n),
            zc_scale: wled_len as f32 / wled_len.clamp(2, n) as f32,
            gate_rms: 10f32.powf(gate_dbfs / 20.0),
            gain,
            geq_peak: Follower {
                value: 0.0,
                floor: 1e-4,
            },
            vol_peak: Follower {
                value: 0.0,
                floor: 1e-3,
            },
            calc: [0.0; 16],
            avg: [0.0; 16],
            smth: 0.0,
            counter: 0,
        }
    }

    /// Sample rate this analyzer was built for.
    pub fn sample_rate(&self) -> u32 {
        self.sr as u32
    }

    /// FFT bins (inclusive) that make up channel `c`.
    pub fn channel_bins(&self, c: usize) -> (usize, usize) {
        self.bins[c]
    }

    /// Take new input samples.
    pub fn push(&mut self, samples: &[f32]) {
        for &s in samples {
            self.history[self.pos] = s;
            self.pos = (self.pos + 1) % self.n;
        }
    }

    /// The newest `i`-th sample in time order (0 = oldest of the window).
    fn sample(&self, i: usize) -> f32 {
        self.history[(self.pos + i) % self.n]
    }

    /// Analyse the newest window, `dt_s` after the previous call, and build
    /// the packet. `peak` says a beat or low-band onset happened since.
    pub fn analyze(&mut self, dt_s: f32, peak: bool) -> AudioSync {
        let n = self.n;
        let (rms, max_abs) = self.window_in();
        let zc = self.zero_crossings();
        self.magnitudes();
        let a_att = crate::dsp::scaler::tau_to_alpha(dt_s, 0.05);
        let a_rel = crate::dsp::scaler::tau_to_alpha(dt_s, 10.0);
        let gate_open = rms >= self.gate_rms;
        let mut weighted = [0.0f32; 16];
        for (c, w) in weighted.iter_mut().enumerate() {
            let (lo, hi) = self.bins[c];
            let mean = self.mags[lo..=hi].iter().sum::<f32>() / (hi - lo + 1) as f32;
            *w = mean * CHANNELS[c].2 * PINK[c];
        }
        let loudest = weighted.iter().fold(0.0f32, |a, b| a.max(*b));
        let (mut geq_gain, mut vol_gain) = (0.0, 0.0);
        if gate_open {
            geq_gain = TARGET / self.geq_peak.update(loudest, a_att, a_rel);
            vol_gain = VOLUME_TARGET / self.vol_peak.update(max_abs, a_att, a_rel);
        }
        let fft_result = self.channels(&weighted, gate_open.then_some(geq_gain));
        let (peak_bin, peak_mag) = self.major_peak();
        let raw = if gate_open {
            (max_abs * vol_gain).min(255.0)
        } else {
            0.0
        };
        self.smth += crate::dsp::scaler::tau_to_alpha(dt_s, 0.05) * (raw - self.smth);
        self.counter = self.counter.wrapping_add(1);
        let level_db = 20.0 * rms.max(1e-9).log10();
        AudioSync {
            pressure: ((level_db + 80.0) * 255.0 / 80.0).clamp(0.0, 255.0),
            sample_raw: raw,
            sample_smth: self.smth,
            sample_peak: peak && gate_open,
            frame_counter: self.counter,
            fft_result,
            zero_crossings: zc,
            fft_magnitude: if gate_open {
                (peak_mag * geq_gain).min(4096.0)
            } else {
                0.001
            },
            fft_major_peak: if gate_open {
                (peak_bin * self.sr / n as f32).clamp(1.0, 11_025.0)
            } else {
                1.0
            },
        }
    }

    /// The window's RMS and peak, and the windowed samples into the FFT's
    /// input.
    fn window_in(&mut self) -> (f32, f32) {
        let n = self.n;
        let mut sum_sq = 0.0f32;
        let mut max_abs = 0.0f32;
        for i in 0..n {
            let s = self.sample(i);
            sum_sq += s * s;
            max_abs = max_abs.max(s.abs());
            self.fft_in[i] = s * self.window[i];
        }
        ((sum_sq / n as f32).sqrt(), max_abs)
    }

    /// Zero crossings in the newest 23.2 ms (WLED's batch); when the window
    /// is shorter, scaled up to that duration.
    fn zero_crossings(&self) -> u16 {
        let n = self.n;
        let mut zc = 0u32;
        for i in n - self.zc_len + 1..n {
            if (self.sample(i - 1) < 0.0) != (self.sample(i) < 0.0) {
                zc += 1;
            }
        }
        (zc as f32 * self.zc_scale).round().min(u16::MAX as f32) as u16
    }

    /// FFT of the windowed input into `mags` (DC left out).
    fn magnitudes(&mut self) {
        let _ =
            self.fft
                .process_with_scratch(&mut self.fft_in, &mut self.fft_out, &mut self.scratch);
        for (m, x) in self.mags.iter_mut().zip(&self.fft_out) {
            *m = x.norm() * self.mag_corr;
        }
        self.mags[0] = 0.0;
    }

    /// The 16 GEQ channels from their weighted magnitudes: scaled by the AGC
    /// gain while the noise gate is open (`gain`), decaying to zero while it
    /// is closed, through WLED's limiter and square-root scaling.
    fn channels(&mut self, weighted: &[f32; 16], gain: Option<f32>) -> [u8; 16] {
        let mut fft_result = [0u8; 16];
        for c in 0..16 {
            let calc = &mut self.calc[c];
            if let Some(g) = gain {
                *calc = (weighted[c] * g * self.gain).min(1023.0);
            } else {
                // WLED with its noise gate closed: decay to zero.
                *calc *= 0.85;
                if *calc < 4.0 {
                    *calc = 0.0;
                }
            }
            // WLED's limiter: rise fast, fall over ~9 cycles.
            let avg = &mut self.avg[c];
            let k = if *calc > *avg { 0.75 } else { 0.17 };
            *avg = (k * *calc + (1.0 - k) * *avg).clamp(0.0, 1023.0);
            // WLED's square-root scaling, with its lift of high channels.
            let r = *avg * 0.38 - 6.0;
            let r = if r > 1.0 { r.sqrt() } else { 0.0 } * (0.85 + c as f32 / 4.5);
            fft_result[c] = (r * 255.0 / 16.0).clamp(0.0, 255.0) as u8;
        }
        fft_result
    }

    /// The loudest bin up to 11 025 Hz, refined by a parabola through its
    /// neighbours: (fractional bin, its magnitude).
    fn major_peak(&self) -> (f32, f32) {
        let top = ((11_025.0 * self.n as f32 / self.sr) as usize).min(self.mags.len() - 2);
        let mut k_peak = 1;
        for k in 1..=top {
            if self.mags[k] > self.mags[k_peak] {
                k_peak = k;
            }
        }
        let (a, b, c) = (
            self.mags[k_peak - 1],
            self.mags[k_peak],
            self.mags[k_peak + 1],
        );
        let den = a - 2.0 * b + c;
        let delta = if den.abs() > 1e-12 {
            (0.5 * (a - c) / den).clamp(-0.5, 0.5)
        } else {
            0.0
        };
        (k_peak as f32 + delta, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_tone(freq: f32, amp: f32, seconds: f32) -> AudioSync {
        let sr = 48_000;
        let mut g = GeqAnalyzer::new(sr, -60.0, 1.0);
        let mut t = 0usize;
        let mut last = AudioSync::default();
        // 20 ms packets, 960 samples each.
        for _ in 0..(seconds / 0.02) as usize {
            let block: Vec<f32> = (0..960)
                .map(|i| {
                    amp * (2.0 * std::f32::consts::PI * freq * (t + i) as f32 / sr as f32).sin()
                })
                .collect();
            t += 960;
            g.push(&block);
            last = g.analyze(0.02, false);
        }
        last
    }

    #[test]
    fn fft_is_the_power_of_two_nearest_wleds_window() {
        assert_eq!(fft_len(22_050), 512);
        assert_eq!(fft_len(44_100), 1024);
        assert_eq!(fft_len(48_000), 1024);
        assert_eq!(fft_len(96_000), 2048);
    }

    #[test]
    fn channel_ranges_follow_wleds_table() {
        let (lo, hi) = channel_range_hz(7);
        assert!((lo - 818.3).abs() < 1.0 && (hi - 1119.7).abs() < 1.0);
        let g = GeqAnalyzer::new(48_000, -60.0, 1.0);
        let mut prev_hi = 0;
        for c in 0..16 {
            let (lo, hi) = g.channel_bins(c);
            assert!(
                lo <= hi && lo >= 1 && lo + 1 >= prev_hi,
                "channel {c}: {lo}..{hi}"
            );
            prev_hi = hi;
        }
    }

    #[test]
    fn a_tone_lights_the_channel_whose_range_holds_it() {
        for c in 0..16 {
            let (lo, hi) = channel_range_hz(c);
            let f = (lo * hi).sqrt();
            let p = run_tone(f, 0.3, 0.6);
            let (best, _) = p
                .fft_result
                .iter()
                .enumerate()
                .max_by_key(|(_, v)| **v)
                .unwrap();
            assert!(
                best.abs_diff(c) <= 1 && p.fft_result[c] >= 150,
                "{f} Hz: channel {c} expected, got {:?}",
                p.fft_result
            );
            for (o, v) in p.fft_result.iter().enumerate() {
                if o.abs_diff(c) > 2 {
                    assert!(*v < 40, "{f} Hz leaks into channel {o}: {:?}", p.fft_result);
                }
            }
        }
    }

    #[test]
    fn major_peak_volume_and_zero_crossings_of_a_sine() {
        let p = run_tone(440.0, 0.5, 0.5);
        assert!(
            (p.fft_major_peak - 440.0).abs() < 5.0,
            "{}",
            p.fft_major_peak
        );
        // 2 crossings per period over 23.2 ms of 440 Hz: about 20.
        assert!(
            (19..=22).contains(&p.zero_crossings),
            "{}",
            p.zero_crossings
        );
        assert!(p.sample_raw > 150.0 && p.sample_smth > 150.0, "{p:?}");
        assert!(p.fft_magnitude > 1.0);
    }

    #[test]
    fn silence_reads_as_wleds_muted_values() {
        let p = run_tone(440.0, 0.0, 0.3);
        assert_eq!(p.fft_result, [0; 16]);
        assert_eq!(
            (p.sample_raw, p.fft_magnitude, p.fft_major_peak),
            (0.0, 0.001, 1.0)
        );
        // After a tone, silence decays the channels to zero.
        let mut g = GeqAnalyzer::new(48_000, -60.0, 1.0);
        let tone: Vec<f32> = (0..960 * 30)
            .map(|i| 0.3 * (i as f32 * 0.13).sin())
            .collect();
        g.push(&tone);
        assert!(g.analyze(0.02, false).fft_result.iter().any(|v| *v > 100));
        g.push(&vec![0.0; 2048]);
        let mut last = AudioSync::default();
        for _ in 0..40 {
            last = g.analyze(0.02, true);
        }
        assert_eq!(last.fft_result, [0; 16]);
        assert!(!last.sample_peak, "no peak is claimed in silence");
    }
}
