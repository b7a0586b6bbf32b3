//! What the DSP computes and how: `[dsp]` (the three bands), `[autoscale]`,
//! `[fft]`, `[onset]`, `[tempo]` and `[silence]`.

use serde::{Deserialize, Serialize};

/// One band-pass. Always complete: a `[dsp.<band>]` table that gives only
/// some keys takes the others from that band's default (see [`DspConfig`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BandConfig {
    /// Lower edge (−3 dB).
    pub lo_hz: f64,
    /// Upper edge (−3 dB).
    pub hi_hz: f64,
    /// Smoother time constant while the band's level falls (release).
    pub tau_s: f64,
    /// Smoother time constant while it rises (attack; `tau_attack` in the
    /// Python server's protocol). Equal to `tau-s` by default: symmetric.
    pub tau_attack_s: f64,
}

/// `[dsp]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "super::partial::PartialDsp", rename_all = "kebab-case")]
pub struct DspConfig {
    /// Butterworth prototype order of each band-pass (2·order poles).
    pub filter_order: u32,
    /// Low band.
    pub low: BandConfig,
    /// Mid band.
    pub mid: BandConfig,
    /// High band.
    pub high: BandConfig,
}

impl Default for DspConfig {
    fn default() -> Self {
        DspConfig {
            filter_order: 4,
            low: BandConfig {
                lo_hz: 30.0,
                hi_hz: 250.0,
                tau_s: 0.15,
                tau_attack_s: 0.15,
            },
            mid: BandConfig {
                lo_hz: 250.0,
                hi_hz: 4000.0,
                tau_s: 0.06,
                tau_attack_s: 0.06,
            },
            high: BandConfig {
                lo_hz: 4000.0,
                hi_hz: 16000.0,
                tau_s: 0.02,
                tau_attack_s: 0.02,
            },
        }
    }
}

impl DspConfig {
    /// The three bands in index order.
    pub fn bands(&self) -> [BandConfig; 3] {
        [self.low, self.mid, self.high]
    }

    /// Mutable access by index.
    pub fn band_mut(&mut self, i: usize) -> &mut BandConfig {
        match i {
            0 => &mut self.low,
            1 => &mut self.mid,
            _ => &mut self.high,
        }
    }
}

/// `[autoscale]`
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AutoscaleConfig {
    /// Peak follower attack.
    pub tau_attack_s: f64,
    /// Peak follower release (the "rolling window").
    pub tau_release_s: f64,
    /// Noise floor, linear RMS.
    pub noise_floor: f64,
    /// 1 = fully auto-scaled, 0 = raw.
    pub strength: f64,
    /// Final multiplier on L/M/H and the post-processed spectrum (not on
    /// raw dB), after onset detection.
    pub master_gain: f64,
}

impl Default for AutoscaleConfig {
    fn default() -> Self {
        AutoscaleConfig {
            tau_attack_s: 0.05,
            tau_release_s: 60.0,
            noise_floor: 0.001,
            strength: 1.0,
            master_gain: 1.0,
        }
    }
}

/// `[fft]`
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct FftConfig {
    /// Compute and stream the log spectrum.
    pub enabled: bool,
    /// FFT window length (power of two).
    pub window_frames: u32,
    /// Frames between two FFTs.
    pub hop_frames: u32,
    /// Log-spaced bins.
    pub n_bins: u32,
    /// Lowest bin edge.
    pub f_min_hz: f64,
    /// dB shown as 0 in raw mode's [0, 1] baseline.
    pub db_floor: f64,
    /// dB shown as 1.
    pub db_ceiling: f64,
    /// Send raw dB instead of the post-processed [0, 1] stream.
    pub send_raw_db: bool,
    /// Gaussian smear of the per-bin peak follower, in octaves.
    pub peak_smear_oct: f64,
    /// Spectral tilt in dB per octave around 1 kHz, applied to the spectrum
    /// before the per-bin auto-scaler (not to raw dB).
    pub tilt_db_per_oct: f64,
}

impl Default for FftConfig {
    fn default() -> Self {
        FftConfig {
            enabled: false,
            window_frames: 1024,
            hop_frames: 512,
            n_bins: 128,
            f_min_hz: 30.0,
            db_floor: -80.0,
            db_ceiling: 0.0,
            send_raw_db: false,
            peak_smear_oct: 0.3,
            tilt_db_per_oct: 0.0,
        }
    }
}

/// `[onset]`
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "super::partial::PartialOnset", rename_all = "kebab-case")]
pub struct OnsetConfig {
    /// Detect onsets at all.
    pub enabled: bool,
    /// Broadband detector sensitivity in [0, 1] (higher: more onsets).
    pub sensitivity: f64,
    /// Shortest gap between two broadband onsets.
    pub min_gap_s: f64,
    /// Low-band onset detector.
    pub low: BandOnsetConfig,
    /// Mid-band onset detector.
    pub mid: BandOnsetConfig,
    /// High-band onset detector.
    pub high: BandOnsetConfig,
}

/// `[onset.<band>]`: one band's onset detector (the Python server's per-band
/// settings, same names and meanings).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BandOnsetConfig {
    /// Trigger threshold as a multiple of the running mean of the band's
    /// novelty (> 1; higher: fewer onsets).
    pub sensitivity: f64,
    /// Shortest time between two onsets of the band.
    pub refractory_s: f64,
    /// Time constant of the slow envelope the novelty is measured against
    /// (smaller: only sharper rises count).
    pub slow_tau_s: f64,
    /// Lowest trigger threshold, in units of the band's [0, 1] value.
    pub abs_floor: f64,
}

impl Default for OnsetConfig {
    fn default() -> Self {
        let band = |refractory_s, slow_tau_s| BandOnsetConfig {
            sensitivity: 1.8,
            refractory_s,
            slow_tau_s,
            abs_floor: 0.1,
        };
        OnsetConfig {
            enabled: true,
            sensitivity: 0.5,
            min_gap_s: 0.05,
            low: band(0.25, 0.30),
            mid: band(0.18, 0.20),
            high: band(0.12, 0.15),
        }
    }
}

impl OnsetConfig {
    /// The three band detectors in index order.
    pub fn bands(&self) -> [BandOnsetConfig; 3] {
        [self.low, self.mid, self.high]
    }

    /// Mutable access by index.
    pub fn band_mut(&mut self, i: usize) -> &mut BandOnsetConfig {
        match i {
            0 => &mut self.low,
            1 => &mut self.mid,
            _ => &mut self.high,
        }
    }
}

/// `[tempo]`
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TempoConfig {
    /// Track beats and tempo.
    pub enabled: bool,
    /// Lowest tempo reported (octave-folded into the range).
    pub min_bpm: f64,
    /// Highest tempo reported.
    pub max_bpm: f64,
    /// Confidence needed before a tempo is claimed.
    pub lock_confidence: f64,
}

impl Default for TempoConfig {
    fn default() -> Self {
        TempoConfig {
            enabled: true,
            // madmom's online range. The old 75–180 folded fast metal
            // (190 BPM) to half and slow ballads (70) to double (issue 12).
            min_bpm: 55.0,
            max_bpm: 215.0,
            lock_confidence: 0.5,
        }
    }
}

/// `[silence]`
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SilenceConfig {
    /// Level below which the input counts as silent.
    pub threshold_dbfs: f64,
    /// How long it must stay below before the state is silent.
    pub hold_s: f64,
}

impl Default for SilenceConfig {
    fn default() -> Self {
        SilenceConfig {
            threshold_dbfs: -60.0,
            hold_s: 2.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    /// Issue 11: a partly written band table keeps that band's defaults
    /// for the keys it does not give (not the generic 250–4000 Hz, 0.06 s).
    #[test]
    fn a_partial_band_table_keeps_that_bands_defaults() {
        let c = load_str("[dsp.high]\nlo-hz = 2944\n").unwrap();
        let d = DspConfig::default();
        assert_eq!(c.dsp.high.lo_hz, 2944.0);
        assert_eq!(c.dsp.high.hi_hz, d.high.hi_hz);
        assert_eq!(c.dsp.high.tau_s, d.high.tau_s);
        assert_eq!((c.dsp.low, c.dsp.mid), (d.low, d.mid));
        let c = load_str("[dsp.low]\ntau-s = 0.3\n[dsp]\nfilter-order = 2\n").unwrap();
        assert_eq!(c.dsp.low.lo_hz, d.low.lo_hz);
        assert_eq!(c.dsp.low.hi_hz, d.low.hi_hz);
        assert_eq!(c.dsp.low.tau_s, 0.3);
        assert_eq!(c.dsp.filter_order, 2);
        // Unknown keys are still reported.
        assert!(load_str("[dsp.low]\ntau = 0.3\n").is_err());
    }
}
