//! Spectral shape of one rfft power spectrum.
//!
//! Definitions, over rfft bins 1..N (DC excluded), with power `p_k` at `f_k`:
//! - centroid: `Σ f_k p_k / Σ p_k` (Hz)
//! - flatness: `exp(mean(ln p_k)) / mean(p_k)` (Wiener entropy), in [0, 1]:
//!   ≈ 1 for white noise, ≈ 0 for a pure tone
//! - rolloff: the lowest `f_k` with `Σ_{i≤k} p_i ≥ 0.85 · Σ p_i` (Hz)
//!
//! A spectrum with no power reads centroid 0, flatness 0, rolloff 0.
//!
//! The sums run in [`LANES`] f64 lanes (see [`super::lanes`]): they differ
//! from one running sum by rounding only (about 1e-16 relative), which the
//! f32 results almost never show.
//!
//! Real-time safety: two passes over the slice, no allocation.

/// Share of the power below the rolloff frequency.
pub const ROLLOFF_SHARE: f32 = 0.85;

use super::lanes::{combine, LANES};

/// Centroid, flatness and rolloff of a spectrum.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Shape {
    /// Centroid in Hz.
    pub centroid_hz: f32,
    /// Flatness in [0, 1].
    pub flatness: f32,
    /// 85 % rolloff in Hz.
    pub rolloff_hz: f32,
}

/// Shape of `power` (rfft bins, `bin_hz` apart).
pub fn shape(power: &[f32], bin_hz: f32) -> Shape {
    if power.len() < 2 {
        return Shape::default();
    }
    let bins = &power[1..];
    let [total, weighted, log_sum] = sums(bins);
    let weighted = weighted * bin_hz as f64;
    if total <= 1e-20 {
        return Shape::default();
    }
    let n = bins.len() as f64;
    let flatness = ((log_sum / n).exp() / (total / n)).clamp(0.0, 1.0);
    Shape {
        centroid_hz: (weighted / total) as f32,
        flatness: flatness as f32,
        rolloff_hz: rolloff_bin(bins, ROLLOFF_SHARE as f64 * total) as f32 * bin_hz,
    }
}

super::lanes::multiversion! {
    /// `[Σ p, Σ k·p, Σ ln p]` over `bins` (bin `k` = index + 1, `p` floored
    /// at 0), each in [`LANES`] f64 lanes so the loop vectorises.
    fn sums(bins: &[f32]) -> [f64; 3] {
        let mut total = [0.0f64; LANES];
        let mut weighted = [0.0f64; LANES];
        let mut log_sum = [0.0f64; LANES];
        // Bin numbers as f64 lanes (exact), stepped by LANES per chunk.
        let mut k: [f64; LANES] = std::array::from_fn(|i| (i + 1) as f64);
        let chunks = bins.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..LANES {
                let p = c[i].max(0.0);
                total[i] += p as f64;
                weighted[i] += p as f64 * k[i];
                log_sum[i] += fast_ln(p + 1e-20) as f64;
                k[i] += LANES as f64;
            }
        }
        for (i, &p) in rest.iter().enumerate() {
            let p = p.max(0.0);
            total[i] += p as f64;
            weighted[i] += p as f64 * k[i];
            log_sum[i] += fast_ln(p + 1e-20) as f64;
        }
        [combine(total), combine(weighted), combine(log_sum)]
    }
}

/// The bin number (index + 1) where the running sum of `bins` first
/// reaches `target`; 0 when it never does. Whole chunks are skipped on
/// their sum; the chunk that crosses is walked bin by bin.
fn rolloff_bin(bins: &[f32], target: f64) -> usize {
    let mut acc = 0.0f64;
    for (c, chunk) in bins.chunks(LANES).enumerate() {
        let s: f64 = chunk.iter().map(|&p| p.max(0.0) as f64).sum();
        if acc + s < target {
            acc += s;
            continue;
        }
        let mut part = 0.0f64;
        for (i, &p) in chunk.iter().enumerate() {
            part += p.max(0.0) as f64;
            if acc + part >= target {
                return c * LANES + i + 1;
            }
        }
        acc += part;
    }
    0
}

/// Natural log accurate to about 2e-5 absolute, for positive normal `x`:
/// the exponent from the float's bits plus a quintic for the mantissa. The
/// flatness needs the mean of ~500 logs per hop, where libm's `ln` was the
/// single largest cost of the spectral shape.
#[inline(always)]
pub fn fast_ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    // Mantissa m in [1, 2).
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    // log2(m) on [1, 2): least-squares quintic through 0 (max error 3e-5).
    let t = m - 1.0;
    let log2_m = t
        * (1.441_825_8
            + t * (-0.708_682_1 + t * (0.415_422 + t * (-0.194_422_7 + t * 0.045_885_5))));
    (e as f32 + log2_m) * std::f32::consts::LN_2
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_ln_is_close_to_ln() {
        let mut x = 1e-20f32;
        while x < 1e6 {
            let err = (super::fast_ln(x) - x.ln()).abs();
            assert!(err < 1e-4, "{x}: {err}");
            x *= 1.37;
        }
    }

    use super::*;

    #[test]
    fn a_single_line_has_its_frequency_as_centroid_and_no_flatness() {
        let mut p = vec![0.0f32; 513];
        p[100] = 1.0;
        let s = shape(&p, 46.875);
        assert!((s.centroid_hz - 4687.5).abs() < 1e-2);
        assert!(s.flatness < 1e-6);
        assert!((s.rolloff_hz - 4687.5).abs() < 1e-2);
    }

    #[test]
    fn a_flat_spectrum_is_flat_with_centroid_in_the_middle() {
        let p = vec![1.0f32; 513];
        let s = shape(&p, 46.875);
        assert!((s.flatness - 1.0).abs() < 1e-6);
        assert!((s.centroid_hz - 256.5 * 46.875).abs() < 1.0);
        // 85 % of 512 equal bins: bin 436 (435.2 rounded up).
        assert!((s.rolloff_hz - 436.0 * 46.875).abs() < 1e-2);
    }

    #[test]
    fn both_builds_give_the_same_shape() {
        let p: Vec<f32> = (0..513)
            .map(|k| ((k * 7919) % 1009) as f32 * 1e-4)
            .collect();
        let picked = (sums(&p[1..]), shape(&p, 46.875));
        crate::dsp::lanes::set_portable_only(true);
        let portable = (sums(&p[1..]), shape(&p, 46.875));
        crate::dsp::lanes::set_portable_only(false);
        assert_eq!(picked, portable);
    }

    #[test]
    fn rolloff_is_where_the_running_sum_crosses() {
        let p: Vec<f32> = (0..100).map(|k| (k % 7) as f32).collect();
        for share in [0.0, 0.1, 0.5, 0.85, 0.999, 1.0] {
            let target = share * p.iter().map(|&v| v as f64).sum::<f64>();
            let mut acc = 0.0;
            let plain = p
                .iter()
                .position(|&v| {
                    acc += v as f64;
                    acc >= target
                })
                .map_or(0, |i| i + 1);
            assert_eq!(rolloff_bin(&p, target), plain, "{share}");
        }
        assert_eq!(rolloff_bin(&p, 1e9), 0);
    }

    #[test]
    fn silence_reads_zero() {
        assert_eq!(shape(&[0.0; 513], 46.875), Shape::default());
    }
}
