//! Butterworth band-pass filters as cascades of second-order sections.
//!
//! Design: the analog Butterworth low-pass prototype of order N (poles on the
//! unit circle), the low-pass → band-pass transform `s → (s² + ω0²)/(s·B)`
//! with pre-warped edges, then the bilinear transform. Each section gets one
//! pole pair, a zero at z = 1 and one at z = −1, and unit gain at the
//! (warped) centre frequency, so the cascade has 0 dB at the centre and
//! −3.01 dB at both edges — the same filter as scipy's
//! `iirfilter(N, [lo, hi], btype="bandpass", ftype="butter", output="sos")`.
//!
//! Real-time safety: [`BandPass::design`] fills a fixed array of sections
//! in place, so a band can be retuned on the worker thread without
//! allocating. `process` is a plain loop over f64 state.

use num_complex::Complex64;
use std::f64::consts::PI;

/// Most sections a band-pass can have (filter order ≤ 8).
pub const MAX_SECTIONS: usize = 8;

/// One second-order section, transposed direct form II.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Biquad {
    /// Numerator b0, b1, b2.
    pub b: [f64; 3],
    /// Denominator a1, a2 (a0 = 1).
    pub a: [f64; 2],
    s1: f64,
    s2: f64,
}

impl Biquad {
    /// Filter one sample.
    #[inline(always)]
    pub fn tick(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.s1;
        self.s1 = self.b[1] * x - self.a[0] * y + self.s2;
        self.s2 = self.b[2] * x - self.a[1] * y;
        y
    }

    /// Complex response at normalised angular frequency `w` (rad/sample).
    pub fn response(&self, w: f64) -> Complex64 {
        let z1 = Complex64::from_polar(1.0, -w);
        let z2 = z1 * z1;
        (self.b[0] + self.b[1] * z1 + self.b[2] * z2) / (1.0 + self.a[0] * z1 + self.a[1] * z2)
    }
}

/// A Butterworth band-pass of order N: N second-order sections.
#[derive(Clone, Copy, Debug)]
pub struct BandPass {
    sections: [Biquad; MAX_SECTIONS],
    n: usize,
    /// Edges actually used (clamped to what can be designed).
    pub lo_hz: f64,
    /// Upper edge actually used.
    pub hi_hz: f64,
}

impl BandPass {
    /// Design a band-pass of `order` between `lo_hz` and `hi_hz` at `sr`.
    ///
    /// Edges are clamped so any request can be designed: `hi ≤ 0.45·sr`,
    /// `1 Hz ≤ lo ≤ 0.9·hi` (the Python server clamps the same way).
    pub fn new(order: u32, lo_hz: f64, hi_hz: f64, sr: f64) -> Self {
        let mut bp = BandPass {
            sections: [Biquad::default(); MAX_SECTIONS],
            n: 0,
            lo_hz,
            hi_hz,
        };
        bp.design(order, lo_hz, hi_hz, sr);
        bp
    }

    /// Redesign in place and clear the filter state. No allocation.
    pub fn design(&mut self, order: u32, lo_hz: f64, hi_hz: f64, sr: f64) {
        let order = (order as usize).clamp(1, MAX_SECTIONS);
        let hi = hi_hz.min(0.45 * sr).max(2.0);
        let lo = lo_hz.max(1.0).min(0.9 * hi);
        self.lo_hz = lo;
        self.hi_hz = hi;
        let fs2 = 2.0 * sr;
        // Pre-warp the edges so the digital filter has them exactly.
        let w1 = fs2 * (PI * lo / sr).tan();
        let w2 = fs2 * (PI * hi / sr).tan();
        let bw = w2 - w1;
        let w0 = (w1 * w2).sqrt();
        let centre = 2.0 * (w0 / fs2).atan(); // digital centre, rad/sample
        let bilinear = |s: Complex64| (fs2 + s) / (fs2 - s);

        let mut n = 0;
        for k in 0..order {
            // Prototype pole k (left half plane, unit circle).
            let theta = PI * (2 * k + order + 1) as f64 / (2 * order) as f64;
            let p = Complex64::from_polar(1.0, theta);
            if p.im < -1e-12 {
                continue; // its conjugate (im > 0) yields the same sections
            }
            let pb = p * bw;
            let disc = (pb * pb - 4.0 * w0 * w0).sqrt();
            let s1 = (pb + disc) / 2.0;
            let s2 = (pb - disc) / 2.0;
            if p.im > 1e-12 {
                // Complex prototype pole: each of its band-pass poles pairs
                // with its own conjugate (which comes from the conjugate
                // prototype pole).
                for s in [s1, s2] {
                    let z = bilinear(s);
                    self.sections[n] = section_from_poles(z, z.conj());
                    n += 1;
                }
            } else {
                // Real prototype pole (odd order): its two band-pass poles
                // form one section (conjugates, or both real).
                self.sections[n] = section_from_poles(bilinear(s1), bilinear(s2));
                n += 1;
            }
        }
        self.n = n;
        for s in &mut self.sections[..n] {
            let g = s.response(centre).norm();
            if g > 0.0 {
                for b in &mut s.b {
                    *b /= g;
                }
            }
        }
    }

    /// Filter `x` into `y` (same length).
    #[inline]
    pub fn process(&mut self, x: &[f32], y: &mut [f32]) {
        let n = self.n;
        for (xi, yi) in x.iter().zip(y.iter_mut()) {
            let mut v = *xi as f64;
            for s in &mut self.sections[..n] {
                v = s.tick(v);
            }
            *yi = v as f32;
        }
    }

    /// Clear the state (no coefficient change).
    pub fn reset(&mut self) {
        for s in &mut self.sections {
            s.s1 = 0.0;
            s.s2 = 0.0;
        }
    }

    /// Magnitude response at `f_hz` for sample rate `sr`.
    pub fn gain_at(&self, f_hz: f64, sr: f64) -> f64 {
        let w = 2.0 * PI * f_hz / sr;
        self.sections[..self.n]
            .iter()
            .map(|s| s.response(w))
            .fold(Complex64::new(1.0, 0.0), |acc, h| acc * h)
            .norm()
    }

    /// The sections in use.
    pub fn sections(&self) -> &[Biquad] {
        &self.sections[..self.n]
    }
}

/// Three band-passes run together, four f64 lanes wide (the fourth lane
/// idles), so the compiler turns each step into vector instructions on x86
/// (SSE2/AVX) and ARM (NEON) alike.
///
/// Every section is `b0·(1 − z⁻²) / (1 + a1·z⁻¹ + a2·z⁻²)` (zeros at ±1),
/// so the cascade is run in direct form I with the sections' gains taken
/// out and applied once to the input (`g`, the product of the `b0`s): a
/// section is then `y = (v − v₋₂) − a1·y₋₁ − a2·y₋₂`, three operations
/// (a subtract and two fused multiply-adds) instead of the five of the
/// transposed direct form II, and the loop-carried dependency is one
/// multiply-add, because `a2·y₋₂ + v₋₂` is known a sample early (so the
/// path from one section's output to the next one's is an add and a
/// multiply-add). A section's
/// input is the previous section's output, so the cascade keeps the last
/// two values of each of its N + 1 signals (the scaled input and each
/// section's output). In f64 the intermediate signals' scale costs no
/// precision: the bank's energies equal the band-passes' own to 1e-12.
#[derive(Clone, Copy, Debug, Default)]
pub struct BandBank {
    n: usize,
    /// Product of the sections' b0, per band.
    g: [f64; 4],
    a1: [[f64; 4]; MAX_SECTIONS],
    a2: [[f64; 4]; MAX_SECTIONS],
    /// Signal j's value one and two samples ago: j = 0 the scaled input,
    /// j = k + 1 the output of section k.
    d1: [[f64; 4]; MAX_SECTIONS + 1],
    d2: [[f64; 4]; MAX_SECTIONS + 1],
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    avx2: bool,
}

impl BandBank {
    /// Take the coefficients of three designed band-passes (same order).
    /// Keeps the filter state when only coefficients change.
    pub fn load(&mut self, filters: &[BandPass; 3]) {
        #[cfg(target_arch = "x86_64")]
        {
            self.avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
        }
        let n = filters.iter().map(|f| f.n).min().unwrap_or(0);
        if n != self.n {
            self.reset();
        }
        self.n = n;
        self.g = [0.0; 4];
        for (l, f) in filters.iter().enumerate() {
            self.g[l] = f.sections[..n].iter().map(|s| s.b[0]).product();
            for k in 0..n {
                let s = &f.sections[k];
                debug_assert!(s.b[1] == 0.0 && s.b[2] == -s.b[0], "zeros at ±1");
                self.a1[k][l] = s.a[0];
                self.a2[k][l] = s.a[1];
            }
        }
    }

    /// Clear the state.
    pub fn reset(&mut self) {
        self.d1 = [[0.0; 4]; MAX_SECTIONS + 1];
        self.d2 = [[0.0; 4]; MAX_SECTIONS + 1];
    }

    /// Filter `x` through the three band-passes; each output's sum of squares.
    #[inline]
    pub fn energy(&mut self, x: &[f32]) -> [f64; 3] {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is only set when the CPU reports AVX2 and FMA
            // (see `load`), which is all `energy_avx2` requires.
            return unsafe { self.energy_avx2(x) };
        }
        self.energy_portable(x)
    }

    /// AVX2 + FMA: the four lanes of a section in one register.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn energy_avx2(&mut self, x: &[f32]) -> [f64; 3] {
        // SAFETY: the caller guarantees AVX2 and FMA; `run_avx2` needs nothing else.
        unsafe {
            match self.n {
                1 => self.run_avx2::<1>(x),
                2 => self.run_avx2::<2>(x),
                3 => self.run_avx2::<3>(x),
                4 => self.run_avx2::<4>(x),
                5 => self.run_avx2::<5>(x),
                6 => self.run_avx2::<6>(x),
                7 => self.run_avx2::<7>(x),
                _ => self.run_avx2::<8>(x),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2<const N: usize>(&mut self, x: &[f32]) -> [f64; 3] {
        use std::arch::x86_64::*;
        // SAFETY: AVX2/FMA are enabled for this function; every load and
        // store below goes through `[f64; 4]` arrays (4 doubles, unaligned
        // access allowed), which is exactly what the intrinsics read/write.
        // `N ≤ MAX_SECTIONS`, so `k + 1 ≤ MAX_SECTIONS` indexes `d1`/`d2`.
        unsafe {
            let zero = _mm256_setzero_pd();
            let g = _mm256_loadu_pd(self.g.as_ptr());
            let (mut a1, mut a2) = ([zero; N], [zero; N]);
            // N + 1 signals; arrays of N + 1 need const generics
            // arithmetic, so MAX_SECTIONS + 1 with only 0..=N used.
            let (mut d1, mut d2) = ([zero; MAX_SECTIONS + 1], [zero; MAX_SECTIONS + 1]);
            for k in 0..N {
                a1[k] = _mm256_loadu_pd(self.a1[k].as_ptr());
                a2[k] = _mm256_loadu_pd(self.a2[k].as_ptr());
            }
            for j in 0..=N {
                d1[j] = _mm256_loadu_pd(self.d1[j].as_ptr());
                d2[j] = _mm256_loadu_pd(self.d2[j].as_ptr());
            }
            let mut acc = zero;
            for &xi in x {
                let mut v = _mm256_mul_pd(_mm256_set1_pd(xi as f64), g);
                for k in 0..N {
                    // What does not depend on this sample first: the
                    // path from section to section is `add` then `fnmadd`.
                    let w = _mm256_fnmsub_pd(a2[k], d2[k + 1], d2[k]);
                    let y = _mm256_fnmadd_pd(a1[k], d1[k + 1], _mm256_add_pd(v, w));
                    d2[k] = d1[k];
                    d1[k] = v;
                    v = y;
                }
                d2[N] = d1[N];
                d1[N] = v;
                acc = _mm256_fmadd_pd(v, v, acc);
            }
            for j in 0..=N {
                _mm256_storeu_pd(self.d1[j].as_mut_ptr(), d1[j]);
                _mm256_storeu_pd(self.d2[j].as_mut_ptr(), d2[j]);
            }
            let mut out = [0.0f64; 4];
            _mm256_storeu_pd(out.as_mut_ptr(), acc);
            [out[0], out[1], out[2]]
        }
    }

    #[inline(always)]
    fn energy_portable(&mut self, x: &[f32]) -> [f64; 3] {
        // A constant section count lets the compiler keep every state in
        // registers and unroll the cascade.
        match self.n {
            1 => self.run::<1>(x),
            2 => self.run::<2>(x),
            3 => self.run::<3>(x),
            4 => self.run::<4>(x),
            5 => self.run::<5>(x),
            6 => self.run::<6>(x),
            7 => self.run::<7>(x),
            _ => self.run::<8>(x),
        }
    }

    #[inline(always)]
    fn run<const N: usize>(&mut self, x: &[f32]) -> [f64; 3] {
        let mut acc = [0.0f64; 4];
        let g = self.g;
        let a1: [[f64; 4]; N] = std::array::from_fn(|k| self.a1[k]);
        let a2: [[f64; 4]; N] = std::array::from_fn(|k| self.a2[k]);
        let mut d1 = self.d1;
        let mut d2 = self.d2;
        for &xi in x {
            let mut v = [0.0; 4];
            for l in 0..4 {
                v[l] = xi as f64 * g[l];
            }
            for k in 0..N {
                let mut y = [0.0; 4];
                for l in 0..4 {
                    let w = -(a2[k][l] * d2[k + 1][l]) - d2[k][l];
                    y[l] = (v[l] + w) - a1[k][l] * d1[k + 1][l];
                }
                d2[k] = d1[k];
                d1[k] = v;
                v = y;
            }
            d2[N] = d1[N];
            d1[N] = v;
            for l in 0..4 {
                acc[l] += v[l] * v[l];
            }
        }
        self.d1 = d1;
        self.d2 = d2;
        [acc[0], acc[1], acc[2]]
    }
}

/// A section with poles `p1`, `p2` (conjugates or both real), zeros at ±1.
fn section_from_poles(p1: Complex64, p2: Complex64) -> Biquad {
    let sum = p1 + p2;
    let prod = p1 * p2;
    Biquad {
        b: [1.0, 0.0, -1.0],
        a: [-sum.re, prod.re],
        s1: 0.0,
        s2: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: f64 = 48_000.0;

    fn db(g: f64) -> f64 {
        20.0 * g.log10()
    }

    fn check_band(order: u32, lo: f64, hi: f64) {
        let bp = BandPass::new(order, lo, hi, SR);
        let centre = (lo * hi).sqrt();
        // Centre of the warped band is within a few Hz of the geometric centre
        // at these frequencies; the gain there is 0 dB.
        assert!(
            db(bp.gain_at(centre, SR)).abs() < 0.1,
            "centre {centre}: {}",
            db(bp.gain_at(centre, SR))
        );
        assert!(
            (db(bp.gain_at(lo, SR)) + 3.0103).abs() < 0.05,
            "lo edge: {}",
            db(bp.gain_at(lo, SR))
        );
        assert!(
            (db(bp.gain_at(hi, SR)) + 3.0103).abs() < 0.05,
            "hi edge: {}",
            db(bp.gain_at(hi, SR))
        );
        // Two octaves below the lower edge an order-N band-pass falls by
        // about 12·N dB (6 dB per octave per order).
        let below = db(bp.gain_at(lo / 4.0, SR));
        assert!(
            below < -9.0 * order as f64,
            "order {order}: {below} dB two octaves down"
        );
        let above = db(bp.gain_at((hi * 2.0).min(0.49 * SR), SR));
        assert!(
            hi * 2.0 >= 0.5 * SR || above < -5.0 * order as f64,
            "order {order}: {above} dB an octave up"
        );
    }

    #[test]
    fn default_bands_have_unit_centre_gain_and_minus_3db_edges() {
        check_band(4, 30.0, 250.0);
        check_band(4, 250.0, 4000.0);
        check_band(4, 4000.0, 16000.0);
    }

    #[test]
    fn odd_and_low_orders_also_meet_the_edges() {
        check_band(1, 250.0, 4000.0);
        check_band(3, 250.0, 4000.0);
        check_band(2, 30.0, 250.0);
        check_band(5, 30.0, 16000.0);
    }

    #[test]
    fn filtered_sine_matches_the_analytic_gain() {
        let mut bp = BandPass::new(4, 250.0, 4000.0, SR);
        let f = 250.0;
        let x: Vec<f32> = (0..48_000)
            .map(|i| (2.0 * PI * f * i as f64 / SR).sin() as f32)
            .collect();
        let mut y = vec![0.0f32; x.len()];
        bp.process(&x, &mut y);
        let tail = &y[24_000..];
        let rms =
            (tail.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
        let expected = bp.gain_at(f, SR) / 2f64.sqrt();
        assert!(
            (rms / expected - 1.0).abs() < 0.01,
            "rms {rms} expected {expected}"
        );
    }

    #[test]
    fn band_bank_matches_filtering_band_by_band() {
        let a = [
            BandPass::new(4, 30.0, 250.0, SR),
            BandPass::new(4, 250.0, 4000.0, SR),
            BandPass::new(4, 4000.0, 16000.0, SR),
        ];
        let mut b = a;
        let x: Vec<f32> = (0..4096)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.5)
            .collect();
        let mut bank = BandBank::default();
        bank.load(&a);
        let e = bank.energy(&x[..2048]);
        let e2 = bank.energy(&x[2048..]);
        let e = [e[0] + e2[0], e[1] + e2[1], e[2] + e2[2]];
        // The reference: each band's sections one after another in f64
        // (transposed direct form II, gains in every section).
        for (k, f) in b.iter_mut().enumerate() {
            let n = f.n;
            let sum: f64 = x
                .iter()
                .map(|&xi| {
                    let mut v = xi as f64;
                    for s in &mut f.sections[..n] {
                        v = s.tick(v);
                    }
                    v * v
                })
                .sum();
            assert!(
                (sum - e[k]).abs() <= 1e-12 * sum.max(1e-9),
                "{k}: {sum} vs {}",
                e[k]
            );
        }
    }

    #[test]
    fn band_bank_matches_at_every_order_on_both_code_paths() {
        let x: Vec<f32> = (0..9600)
            .map(|i| ((i * 104_729 % 2000) as f32 / 1000.0 - 1.0) * 0.3)
            .collect();
        for order in 1..=MAX_SECTIONS as u32 {
            let a = [
                BandPass::new(order, 20.0, 250.0, SR),
                BandPass::new(order, 250.0, 4000.0, SR),
                BandPass::new(order, 4000.0, 20000.0, SR),
            ];
            let reference: Vec<f64> = a
                .iter()
                .map(|f| {
                    let mut f = *f;
                    let n = f.n;
                    x.iter()
                        .map(|&xi| {
                            let mut v = xi as f64;
                            for s in &mut f.sections[..n] {
                                v = s.tick(v);
                            }
                            v * v
                        })
                        .sum()
                })
                .collect();
            for vector in [true, false] {
                let mut bank = BandBank::default();
                bank.load(&a);
                // The portable loop (what ARM runs) as well as AVX2.
                bank.avx2 &= vector;
                let mut e = [0.0; 3];
                for chunk in x.chunks(256) {
                    let c = bank.energy(chunk);
                    for k in 0..3 {
                        e[k] += c[k];
                    }
                }
                for k in 0..3 {
                    let r = reference[k];
                    assert!(
                        (r - e[k]).abs() <= 1e-9 * r,
                        "order {order} band {k} vector {vector}: {r} vs {}",
                        e[k]
                    );
                }
            }
        }
    }

    #[test]
    fn edges_above_nyquist_are_clamped_not_fatal() {
        let bp = BandPass::new(4, 4000.0, 16000.0, 22_050.0);
        assert!(bp.hi_hz <= 0.45 * 22_050.0 + 1e-9);
        assert!(bp.gain_at(6000.0, 22_050.0).is_finite());
    }
}
