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
    /// `Σ x²` and `max |x|` of a block (the sum in [`LANES`] lanes).
    pub fn sum_sq_peak(x: &[f32]) -> (f32, f32) {
        let mut acc = [0.0f32; LANES];
        let mut peak = [0.0f32; LANES];
        let chunks = x.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..LANES {
                acc[i] += c[i] * c[i];
                peak[i] = peak[i].max(c[i].abs());
            }
        }
        for (i, &v) in rest.iter().enumerate() {
            acc[i] += v * v;
            peak[i] = peak[i].max(v.abs());
        }
        (combine(acc), peak.iter().fold(0.0f32, |m, &v| m.max(v)))
    }
}

multiversion! {
    /// `out = x · w` element-wise; returns `Σ x²` (in [`LANES`] lanes).
    pub fn window_sum_sq(out: &mut [f32], x: &[f32], w: &[f32]) -> f32 {
        let n = out.len().min(x.len()).min(w.len());
        let (out, x, w) = (&mut out[..n], &x[..n], &w[..n]);
        let mut acc = [0.0f32; LANES];
        let mut oc = out.chunks_exact_mut(LANES);
        let mut xc = x.chunks_exact(LANES);
        let mut wc = w.chunks_exact(LANES);
        for ((o, x), w) in (&mut oc).zip(&mut xc).zip(&mut wc) {
            for i in 0..LANES {
                o[i] = x[i] * w[i];
                acc[i] += x[i] * x[i];
            }
        }
        let rest = oc.into_remainder().iter_mut().zip(xc.remainder()).zip(wc.remainder());
        for (i, ((o, &x), &w)) in rest.enumerate() {
            *o = x * w;
            acc[i] += x * x;
        }
        combine(acc)
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
            let (s, p) = sum_sq_peak(&x);
            assert!((s as f64 - plain).abs() <= 1e-5 * plain.max(1.0), "{n}");
            assert_eq!(p, peak, "{n}");
            let w = signal(n + 3);
            let mut out = vec![0.0; n];
            let s2 = window_sum_sq(&mut out, &x, &w);
            assert_eq!(s2, s, "{n}");
            for i in 0..n {
                assert_eq!(out[i], x[i] * w[i]);
            }
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
        let picked = (sum_sq_peak(&x), window_sum_sq(&mut out, &x, &w));
        set_portable_only(true);
        let portable = (sum_sq_peak(&x), window_sum_sq(&mut out, &x, &w));
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
