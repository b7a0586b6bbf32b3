//! Loops written for the vectoriser, and one switch to run them as AVX2.
//!
//! The hot per-sample and per-bin loops of the DSP are written so that the
//! compiler turns them into SIMD by itself: element-wise work, and sums kept
//! in [`LANES`] separate accumulators combined in a fixed order at the end
//! (a single running sum is a chain of dependent additions that no compiler
//! may reorder, and on a 1024-sample window that chain, not the arithmetic,
//! sets the time). Because the order of every floating-point operation is
//! written out, the result is the same on every target and with or without
//! AVX2: [`multiversion!`] only lets x86-64 use wider registers when the CPU
//! has them (detected at run time, as the band bank does), and every other
//! target (arm64, armhf) runs the same code with what it has.
//!
//! Real-time safety: plain loops over slices; feature detection is a cached
//! atomic load after its first call, which [`warm_up`] makes at start-up.

use std::sync::atomic::{AtomicBool, Ordering};

/// Accumulators per sum: eight f32 lanes fill one AVX register (two SSE or
/// NEON registers), and eight independent chains hide the adder's latency.
pub const LANES: usize = 8;

/// Set by [`set_portable_only`].
static PORTABLE_ONLY: AtomicBool = AtomicBool::new(false);

/// Make the [`multiversion!`] functions run their portable build even where
/// AVX2 is available: for benchmarks and tests that compare the two builds
/// (which compute the same bits, so flipping it never changes a result).
pub fn set_portable_only(on: bool) {
    PORTABLE_ONLY.store(on, Ordering::Relaxed);
}

/// Whether the AVX2 builds of the [`multiversion!`] functions run.
#[inline]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !PORTABLE_ONLY.load(Ordering::Relaxed)
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Run the CPU feature detection once, outside the real-time loop.
pub fn warm_up() {
    let _ = has_avx2();
}

/// Define a function whose body is compiled twice on x86-64, once for the
/// baseline and once with AVX2 (chosen at run time); elsewhere once. The
/// body must be plain safe code: both builds compute the same values (Rust
/// never fuses a multiply and an add on its own, so enabling FMA changes
/// only which instructions are available, not the rounding).
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::dsp::lanes::has_avx2() {
                    // SAFETY: `avx2` needs nothing but the AVX2 and FMA
                    // instructions, which the CPU has just reported.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Sum of lanes in a fixed pairwise order.
#[inline(always)]
pub fn combine<T: Copy + std::ops::Add<Output = T>>(a: [T; LANES]) -> T {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

multiversion! {
    /// `Σ x²`, `max |x|`, `Σ x` and `Σ (x − d)²` of a block, in one pass
    /// (the sums in [`LANES`] lanes). The last is the block's power around
    /// a DC offset `d` tracked outside it (summed around `d`, not expanded
    /// from `Σ x²`, which would lose a quiet signal on a large offset to
    /// rounding).
    pub fn sum_sq_peak(x: &[f32], d: f32) -> (f32, f32, f32, f32) {
        let mut acc = [0.0f32; LANES];
        let mut peak = [0.0f32; LANES];
        let mut lin = [0.0f32; LANES];
        let mut ac = [0.0f32; LANES];
        let chunks = x.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..LANES {
                acc[i] += c[i] * c[i];
                peak[i] = peak[i].max(c[i].abs());
                lin[i] += c[i];
                ac[i] += (c[i] - d) * (c[i] - d);
            }
        }
        for (i, &v) in rest.iter().enumerate() {
            acc[i] += v * v;
            peak[i] = peak[i].max(v.abs());
            lin[i] += v;
            ac[i] += (v - d) * (v - d);
        }
        (
            combine(acc),
            peak.iter().fold(0.0f32, |m, &v| m.max(v)),
            combine(lin),
            combine(ac),
        )
    }
}

multiversion! {
    /// `out = x · w` element-wise; returns `Σ x` and `Σ (x − d)²` (in
    /// [`LANES`] lanes): the window's mean and its power around a DC
    /// offset `d` tracked outside it.
    pub fn window_sums(out: &mut [f32], x: &[f32], w: &[f32], d: f32) -> (f32, f32) {
        let n = out.len().min(x.len()).min(w.len());
        let (out, x, w) = (&mut out[..n], &x[..n], &w[..n]);
        let mut lin = [0.0f32; LANES];
        let mut ac = [0.0f32; LANES];
        let mut oc = out.chunks_exact_mut(LANES);
        let mut xc = x.chunks_exact(LANES);
        let mut wc = w.chunks_exact(LANES);
        for ((o, x), w) in (&mut oc).zip(&mut xc).zip(&mut wc) {
            for i in 0..LANES {
                o[i] = x[i] * w[i];
                lin[i] += x[i];
                ac[i] += (x[i] - d) * (x[i] - d);
            }
        }
        let rest = oc.into_remainder().iter_mut().zip(xc.remainder()).zip(wc.remainder());
        for (i, ((o, &x), &w)) in rest.enumerate() {
            *o = x * w;
            lin[i] += x;
            ac[i] += (x - d) * (x - d);
        }
        (combine(lin), combine(ac))
    }
}

/// `c[0]·x^(n−1) + … + c[n−1]` by Horner's rule.
#[inline(always)]
fn horner(x: f32, c: &[f32]) -> f32 {
    c[1..].iter().fold(c[0], |acc, &k| acc * x + k)
}

/// `ln(x)` for a finite `x > 0` (a normal float), in plain arithmetic the
/// vectoriser can turn into SIMD (libm's `logf` is a call per value). The
/// Cephes `logf` reduction and polynomial: the exponent split off, the
/// mantissa taken to [√½, √2), ln(1 + f) as f − f²/2 + f³·P(f); within
/// 2 ulp of libm over the normal range, and within 2 ulp of ln 2 (1.7e-7)
/// where |ln x| < 0.5 (tested). Zero, negative, subnormal
/// and non-finite input give a finite value and never a panic, but the
/// callers pass only values ≥ [`f32::MIN_POSITIVE`].
#[inline(always)]
#[allow(clippy::manual_clamp)] // `clamp` keeps NaN; this must not
pub fn ln_pos(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let x = x.max(f32::MIN_POSITIVE).min(f32::MAX);
    let bits = x.to_bits();
    // x = m · 2^e with m in [0.5, 1).
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let low = m < SQRT_HALF;
    let e = (e - low as i32) as f32;
    let f = if low { m + m - 1.0 } else { m - 1.0 };
    let z = f * f;
    let p = horner(
        f,
        &[
            7.037_683_6e-2,
            -1.151_461e-1,
            1.167_699_9e-1,
            -1.242_014_1e-1,
            1.424_932_3e-1,
            -1.666_805_8e-1,
            2.000_071_5e-1,
            -2.499_999_4e-1,
            3.333_333e-1,
        ],
    );
    let y = f * z * p - 2.121_944_4e-4 * e - 0.5 * z;
    f + y + 0.693_359_4 * e
}

/// `exp(x)`, in plain arithmetic the vectoriser can turn into SIMD (the
/// Cephes `expf`: x = n·ln 2 + r with |r| ≤ ½ ln 2, e^r by a polynomial,
/// 2^n put into the exponent); within 2 ulp of libm (tested). Below −87
/// it reads −87 (about 1.6e-38) and above 88 reads 88 (about 1.7e38):
/// never 0, infinity or NaN; NaN reads as −87.
#[inline(always)]
pub fn exp_fin(x: f32) -> f32 {
    // NaN fails both comparisons and ends at the lower clamp.
    let x = if x > -87.0 { x } else { -87.0 };
    let x = if x < 88.0 { x } else { 88.0 };
    // n = round(x / ln 2), without `floor` (a libm call on baseline x86-64):
    // truncate, then step down where truncation went up (x < 0).
    let t = x * std::f32::consts::LOG2_E + 0.5;
    let n = t as i32;
    let n = n - ((n as f32) > t) as i32;
    let nf = n as f32;
    let r = x - nf * 0.693_359_4 + nf * 2.121_944_4e-4;
    let z = r * r;
    let p = horner(
        r,
        &[
            1.987_569_1e-4,
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ],
    );
    let y = p * z + r + 1.0;
    // 2^n: the clamps keep n in [-126, 127], a normal float.
    y * f32::from_bits(((n + 127) as u32) << 23)
}

multiversion! {
    /// `x = ln(x)` for every value ([`ln_pos`]).
    pub fn ln_in_place(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = ln_pos(*v);
        }
    }
}

multiversion! {
    /// `out = exp(x · k)` element-wise ([`exp_fin`]).
    pub fn exp_scaled(out: &mut [f32], x: &[f32], k: f32) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = exp_fin(v * k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 61.0)
            .collect()
    }

    #[test]
    fn sums_match_a_plain_loop_for_every_length() {
        for n in [0, 1, 7, 8, 9, 255, 256, 1023, 1024] {
            let x = signal(n);
            let plain: f64 = x.iter().map(|&v| (v * v) as f64).sum();
            let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let plain_lin: f64 = x.iter().map(|&v| v as f64).sum();
            let d = 0.3f32;
            let plain_ac: f64 = x.iter().map(|&v| ((v - d) * (v - d)) as f64).sum();
            let (s, p, lin, ac) = sum_sq_peak(&x, d);
            assert!((s as f64 - plain).abs() <= 1e-5 * plain.max(1.0), "{n}");
            assert_eq!(p, peak, "{n}");
            assert!(
                (lin as f64 - plain_lin).abs() <= 1e-5 * n.max(1) as f64,
                "{n}"
            );
            assert!(
                (ac as f64 - plain_ac).abs() <= 1e-5 * plain_ac.max(1.0),
                "{n}"
            );
            let w = signal(n + 3);
            let mut out = vec![0.0; n];
            let (lin2, ac2) = window_sums(&mut out, &x, &w, d);
            assert_eq!((lin2, ac2), (lin, ac), "{n}");
            for i in 0..n {
                assert_eq!(out[i], x[i] * w[i]);
            }
        }
    }

    /// Distance in units in the last place (both finite, same sign).
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn ln_is_within_two_ulp_of_libm_over_the_normal_range() {
        let mut x = f32::MIN_POSITIVE;
        let mut worst = 0;
        while x < f32::MAX / 1.0001 {
            let (got, want) = (ln_pos(x), x.ln());
            // Near 1 the result is near 0, where an ulp is tiny: count the
            // error against the ulp of ln(2) there.
            let err = if want.abs() < 0.5 {
                ((got - want).abs() / (0.5f32.ln().abs() * f32::EPSILON)).ceil() as u32
            } else {
                ulps(got, want)
            };
            assert!(err <= 2, "ln({x}) = {got}, libm {want}");
            worst = worst.max(err);
            x *= 1.0001;
        }
        assert_eq!(ln_pos(1.0), 0.0);
        assert!(worst >= 1, "compared with libm, not with itself");
        // Out-of-contract input stays finite.
        for x in [0.0, -1.0, f32::NAN, f32::INFINITY, 1e-45] {
            assert!(ln_pos(x).is_finite(), "{x}");
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm_and_never_overflows() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp_fin(x), x.exp());
            assert!(ulps(got, want) <= 2, "exp({x}) = {got}, libm {want}");
            x += 0.000_37;
        }
        assert_eq!(exp_fin(0.0), 1.0);
        for x in [
            -1e30,
            -100.0,
            100.0,
            1e30,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ] {
            let v = exp_fin(x);
            assert!(v.is_finite() && v > 0.0, "{x}: {v}");
        }
    }

    #[test]
    fn the_slice_forms_match_the_scalar_ones_in_both_builds() {
        let x: Vec<f32> = (1..2000).map(|i| i as f32 * 0.37).collect();
        let want_ln: Vec<f32> = x.iter().map(|&v| ln_pos(v)).collect();
        let want_exp: Vec<f32> = x.iter().map(|&v| exp_fin(-v * 0.05)).collect();
        for portable in [false, true] {
            set_portable_only(portable);
            let mut l = x.clone();
            ln_in_place(&mut l);
            let mut e = vec![0.0; x.len()];
            exp_scaled(&mut e, &x, -0.05);
            set_portable_only(false);
            assert_eq!(l, want_ln, "portable {portable}");
            assert_eq!(e, want_exp, "portable {portable}");
        }
    }

    #[test]
    fn both_builds_give_the_same_bits() {
        // Whatever the dispatcher picks on this CPU (the AVX2 build on any
        // recent x86-64) against the portable build, and both against the
        // lane order written out by hand.
        let x = signal(1000);
        let w = signal(1003);
        let mut out = vec![0.0; 1000];
        let picked = (sum_sq_peak(&x, 0.25), window_sums(&mut out, &x, &w, 0.25));
        set_portable_only(true);
        let portable = (sum_sq_peak(&x, 0.25), window_sums(&mut out, &x, &w, 0.25));
        set_portable_only(false);
        assert_eq!(picked, portable);
        let mut acc = [0.0f32; LANES];
        for (k, v) in x.iter().enumerate() {
            acc[k % LANES] += v * v;
        }
        assert_eq!(picked.0 .0.to_bits(), combine(acc).to_bits());
        assert_eq!(picked.0 .1, 50.0 / 61.0);
    }
}
