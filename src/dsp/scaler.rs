//! The auto-scaler that turns smoothed band RMS into a steady [0, 1] signal,
//! and the one-pole smoother in front of it.
//!
//! For each band, per block (Python server semantics):
//!
//! 1. **Bandwidth-aware gate**: `clean² = max(0, rms² − noise_floor² · n_eff)`
//!    where `n_eff = max(1, K_lin / N_log)` is the average number of linear
//!    FFT bins per log bin inside the band: one log bin's worth of floor noise.
//! 2. **Peak follower** on `clean`: one pole, attack τ while rising, release τ
//!    while falling; starts at the noise floor and jumps to the first value.
//! 3. **Soft knee**: `scaled = tanh(clean / max(peak, noise_floor))`.
//! 4. **Strength blend** with an honest dB reading of the band:
//!    `out = s · scaled + (1 − s) · baseline`, where `baseline` maps
//!    `20·log10(rms / √K_lin)` (per-FFT-bin equivalent amplitude, so it reads
//!    like the spectrum) from `[db_floor, db_ceiling]` to `[0, 1]`, and is 0
//!    below the noise floor.
//!
//! Real-time safety: plain arithmetic on fixed arrays.

/// Time constant → one-pole coefficient for a step of `dt` seconds.
#[inline]
pub fn tau_to_alpha(dt: f32, tau: f32) -> f32 {
    1.0 - (-dt / tau.max(1e-3)).exp()
}

/// `tanh(x)` for `x ≥ 0` as `(e − 1)/(e + 1)` with `e = exp(2x)`: within
/// 1e-6 of libm's `tanhf`, at a third of its cost (which dominated the
/// spectrum post-processor: one per bin per hop).
#[inline]
pub fn tanh_pos(x: f32) -> f32 {
    if x >= 9.0 {
        return 1.0;
    }
    let e = (2.0 * x).exp();
    (e - 1.0) / (e + 1.0)
}

/// Smallest value used as a denominator.
pub const EPS: f32 = 1e-12;

/// A one-pole smoother per band, with its own time constant for rising
/// (attack) and falling (release) input: the Python server's `tau_attack`
/// and `tau`. Equal constants make it symmetric.
#[derive(Clone, Copy, Debug, Default)]
pub struct Smoother {
    release: [f32; 3],
    attack: [f32; 3],
    /// Current smoothed values.
    pub values: [f32; 3],
}

impl Smoother {
    /// Set the release and attack time constants for steps of `dt` seconds.
    pub fn set_taus(&mut self, dt: f32, release: [f32; 3], attack: [f32; 3]) {
        self.release = release.map(|t| tau_to_alpha(dt, t));
        self.attack = attack.map(|t| tau_to_alpha(dt, t));
    }

    /// Feed one block's RMS values.
    #[inline]
    pub fn update(&mut self, x: [f32; 3]) -> [f32; 3] {
        for (i, (v, x)) in self.values.iter_mut().zip(x).enumerate() {
            let a = if x > *v {
                self.attack[i]
            } else {
                self.release[i]
            };
            *v += a * (x - *v);
        }
        self.values
    }
}

/// Settings of the auto-scaler (shared with the spectrum post-processor).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScalerSettings {
    /// Peak follower attack coefficient per step.
    pub a_attack: f32,
    /// Peak follower release coefficient per step.
    pub a_release: f32,
    /// Noise floor (linear RMS).
    pub noise_floor: f32,
    /// Strength in [0, 1].
    pub strength: f32,
    /// dB mapped to 0 in the raw baseline.
    pub db_floor: f32,
    /// dB mapped to 1.
    pub db_ceiling: f32,
}

impl ScalerSettings {
    /// Settings for steps of `dt` seconds.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dt: f32,
        tau_attack_s: f32,
        tau_release_s: f32,
        noise_floor: f32,
        strength: f32,
        db_floor: f32,
        db_ceiling: f32,
    ) -> Self {
        ScalerSettings {
            a_attack: tau_to_alpha(dt, tau_attack_s),
            a_release: tau_to_alpha(dt, tau_release_s),
            noise_floor: noise_floor.max(0.0),
            strength: strength.clamp(0.0, 1.0),
            db_floor,
            db_ceiling,
        }
    }

    /// The settings `p` asks for, for steps of `dt` seconds.
    pub fn from_params(dt: f32, p: &super::params::DspParams) -> Self {
        Self::new(
            dt,
            p.tau_attack_s,
            p.tau_release_s,
            p.noise_floor,
            p.strength,
            p.db_floor,
            p.db_ceiling,
        )
    }

    /// Map an amplitude to the raw [0, 1] baseline: dB between floor and
    /// ceiling, 0 below the noise floor.
    #[inline]
    pub fn baseline(&self, amplitude: f32) -> f32 {
        let db = 20.0 * amplitude.max(EPS).log10();
        let nf = self.noise_floor.max(EPS);
        if amplitude < nf {
            return 0.0;
        }
        let span = (self.db_ceiling - self.db_floor).max(1.0);
        ((db - self.db_floor) / span).clamp(0.0, 1.0)
    }

    /// One step of the peak follower on `x`.
    #[inline]
    pub fn follow(&self, peak: &mut f32, x: f32) {
        let a = if x > *peak {
            self.a_attack
        } else {
            self.a_release
        };
        *peak += a * (x - *peak);
    }

    /// The soft knee: `tanh(max(0, x) / max(peak, noise_floor))`.
    #[inline]
    pub fn knee(&self, x: f32, peak: f32) -> f32 {
        tanh_pos(x.max(0.0) / peak.max(self.noise_floor).max(EPS))
    }
}

/// The L/M/H auto-scaler.
#[derive(Clone, Copy, Debug)]
pub struct AutoScaler {
    /// Current settings.
    pub settings: ScalerSettings,
    /// Per-band gate budget `noise_floor² · n_eff`.
    gate_sq: [f32; 3],
    /// Per-band `1/√K_lin` for the raw baseline.
    inv_sqrt_klin: [f32; 3],
    peak: [f32; 3],
    warmed: bool,
}

impl AutoScaler {
    /// A scaler with `settings`; `n_eff` and `k_lin` per band come from the
    /// FFT geometry (see [`band_bin_counts`]).
    pub fn new(settings: ScalerSettings, n_eff: [f32; 3], k_lin: [f32; 3]) -> Self {
        let mut s = AutoScaler {
            settings,
            gate_sq: [0.0; 3],
            inv_sqrt_klin: [1.0; 3],
            peak: [settings.noise_floor; 3],
            warmed: false,
        };
        s.set_geometry(n_eff, k_lin);
        s
    }

    /// New settings (keeps the peak, lifted to at least the noise floor).
    pub fn set_settings(&mut self, settings: ScalerSettings, n_eff: [f32; 3], k_lin: [f32; 3]) {
        self.settings = settings;
        self.set_geometry(n_eff, k_lin);
        for p in &mut self.peak {
            *p = p.max(settings.noise_floor);
        }
    }

    fn set_geometry(&mut self, n_eff: [f32; 3], k_lin: [f32; 3]) {
        let nf = self.settings.noise_floor;
        for i in 0..3 {
            self.gate_sq[i] = nf * nf * n_eff[i].max(1.0);
            self.inv_sqrt_klin[i] = 1.0 / k_lin[i].max(1.0).sqrt();
        }
    }

    /// Forget the peaks.
    pub fn reset(&mut self) {
        self.peak = [self.settings.noise_floor; 3];
        self.warmed = false;
    }

    /// Scale one block's smoothed RMS values.
    #[inline]
    pub fn update(&mut self, rms: [f32; 3]) -> [f32; 3] {
        let s = &self.settings;
        let mut out = [0.0; 3];
        for i in 0..3 {
            let clean = (rms[i] * rms[i] - self.gate_sq[i]).max(0.0).sqrt();
            if self.warmed {
                s.follow(&mut self.peak[i], clean);
            } else {
                self.peak[i] = self.peak[i].max(clean);
            }
            let scaled = s.knee(clean, self.peak[i]);
            out[i] = if s.strength >= 1.0 {
                scaled
            } else {
                let base = s.baseline(rms[i] * self.inv_sqrt_klin[i]);
                s.strength * scaled + (1.0 - s.strength) * base
            };
        }
        self.warmed = true;
        out
    }

    /// The peak follower values.
    pub fn peaks(&self) -> [f32; 3] {
        self.peak
    }
}

/// For each band: `(n_eff, K_lin)` — the average number of rfft bins per log
/// bin inside the band (at least 1) and the number of rfft bins in the band —
/// for an FFT of `window` at `sr` with `n_log` log bins from `f_min`.
pub fn band_bin_counts(
    bands: [(f32, f32); 3],
    window: usize,
    sr: f32,
    n_log: usize,
    f_min: f32,
) -> ([f32; 3], [f32; 3]) {
    let df = sr / window as f32;
    let f_max = (sr / 2.0).max(f_min * 2.0);
    let ratio = (f_max / f_min).ln() / n_log.max(1) as f32;
    let mut n_eff = [1.0; 3];
    let mut k_lin = [1.0; 3];
    for (i, (lo, hi)) in bands.iter().enumerate() {
        let k = (0..=window / 2)
            .filter(|&b| {
                let f = b as f32 * df;
                f >= *lo && f <= *hi
            })
            .count() as f32;
        let n = (0..n_log)
            .filter(|&j| {
                let centre = f_min * ((j as f32 + 0.5) * ratio).exp();
                centre >= *lo && centre <= *hi
            })
            .count() as f32;
        k_lin[i] = k.max(1.0);
        n_eff[i] = (k / n.max(1.0)).max(1.0);
    }
    (n_eff, k_lin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DT: f32 = 256.0 / 48_000.0;

    fn settings(strength: f32) -> ScalerSettings {
        ScalerSettings::new(DT, 0.05, 60.0, 0.001, strength, -80.0, 0.0)
    }

    fn scaler(strength: f32) -> AutoScaler {
        AutoScaler::new(settings(strength), [1.0; 3], [1.0; 3])
    }

    #[test]
    fn fast_tanh_matches_libm() {
        let mut x = 0.0f32;
        while x < 20.0 {
            assert!((tanh_pos(x) - x.tanh()).abs() < 1e-6, "{x}");
            x += 0.013;
        }
    }

    #[test]
    fn steady_signal_settles_at_tanh_one() {
        let mut s = scaler(1.0);
        let mut out = [0.0; 3];
        for _ in 0..2000 {
            out = s.update([0.2, 0.05, 0.01]);
        }
        for v in out {
            assert!((v - 1f32.tanh()).abs() < 1e-3, "{v}");
        }
    }

    #[test]
    fn attack_reaches_63_percent_after_one_tau() {
        let mut s = scaler(1.0);
        s.update([0.01; 3]);
        let steps = (0.05 / DT).round() as usize;
        for _ in 0..steps {
            s.update([0.5; 3]);
        }
        let p = s.peaks()[0];
        let expected = 0.01 + (0.5 - 0.01) * (1.0 - (-1.0f32).exp());
        assert!((p - expected).abs() / expected < 0.03, "{p} vs {expected}");
    }

    #[test]
    fn release_is_slow_so_a_quieter_passage_reads_lower() {
        let mut s = scaler(1.0);
        for _ in 0..500 {
            s.update([0.5; 3]);
        }
        // Ten seconds of a 4x quieter signal: the peak has released only
        // ~15 % (τ = 60 s), so the output is well below the loud one.
        let mut out = [0.0; 3];
        for _ in 0..(10.0 / DT) as usize {
            out = s.update([0.125; 3]);
        }
        let p = s.peaks()[0];
        let expected = 0.125 + (0.5 - 0.125) * (-10.0f32 / 60.0).exp();
        assert!((p - expected).abs() / expected < 0.02, "{p} vs {expected}");
        assert!(out[0] < 0.4, "{}", out[0]);
    }

    #[test]
    fn gate_silences_noise_at_the_floor_and_scales_with_bandwidth() {
        // n_eff = 4: the gate is noise_floor · 2 in RMS.
        let mut s = AutoScaler::new(settings(1.0), [4.0; 3], [64.0; 3]);
        for _ in 0..100 {
            let out = s.update([0.0019; 3]);
            assert_eq!(out, [0.0; 3]);
        }
        let out = s.update([0.01; 3]);
        assert!(out[0] > 0.0);
    }

    #[test]
    fn strength_zero_is_the_db_baseline() {
        let mut s = AutoScaler::new(settings(0.0), [1.0; 3], [4.0; 3]);
        // rms 0.2 / sqrt(4) = 0.1 → −20 dB → (−20 + 80) / 80 = 0.75
        let out = s.update([0.2, 0.0005, 0.2]);
        assert!((out[0] - 0.75).abs() < 1e-4, "{}", out[0]);
        assert_eq!(out[1], 0.0, "below the noise floor reads 0");
    }

    #[test]
    fn half_strength_blends_linearly() {
        let mut a = AutoScaler::new(settings(1.0), [1.0; 3], [4.0; 3]);
        let mut b = AutoScaler::new(settings(0.0), [1.0; 3], [4.0; 3]);
        let mut c = AutoScaler::new(settings(0.5), [1.0; 3], [4.0; 3]);
        for _ in 0..50 {
            let (x, y, z) = (a.update([0.2; 3]), b.update([0.2; 3]), c.update([0.2; 3]));
            assert!((z[0] - 0.5 * (x[0] + y[0])).abs() < 1e-5);
        }
    }

    #[test]
    fn bin_counts_of_the_default_geometry() {
        let (n_eff, k_lin) = band_bin_counts(
            [(30.0, 250.0), (250.0, 4000.0), (4000.0, 16000.0)],
            1024,
            48_000.0,
            128,
            30.0,
        );
        // 46.875 Hz per rfft bin: 30–250 Hz holds bins 1..5.
        assert_eq!(k_lin[0], 5.0);
        assert_eq!(k_lin[1], 80.0);
        assert!(n_eff[0] >= 1.0 && n_eff[2] > n_eff[1]);
    }
}
