//! Tables that may be written in part: `[dsp]` with its `[dsp.<band>]`
//! tables, and `[onset]` with its `[onset.<band>]` tables. Every key not
//! written takes the default of *that* band (the three bands have different
//! defaults), not a generic one. Unknown keys are still refused.

use super::{BandConfig, BandOnsetConfig, DspConfig, OnsetConfig};
use serde::Deserialize;

/// A `[dsp.<band>]` table as written.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct PartialBand {
    lo_hz: Option<f64>,
    hi_hz: Option<f64>,
    tau_s: Option<f64>,
    tau_attack_s: Option<f64>,
}

impl PartialBand {
    /// The keys given, the rest from `default` (that band's default).
    fn over(self, default: BandConfig) -> BandConfig {
        BandConfig {
            lo_hz: self.lo_hz.unwrap_or(default.lo_hz),
            hi_hz: self.hi_hz.unwrap_or(default.hi_hz),
            tau_s: self.tau_s.unwrap_or(default.tau_s),
            tau_attack_s: self.tau_attack_s.unwrap_or(default.tau_attack_s),
        }
    }
}

/// `[dsp]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct PartialDsp {
    filter_order: Option<u32>,
    #[serde(default)]
    low: PartialBand,
    #[serde(default)]
    mid: PartialBand,
    #[serde(default)]
    high: PartialBand,
}

impl From<PartialDsp> for DspConfig {
    fn from(p: PartialDsp) -> Self {
        let d = DspConfig::default();
        DspConfig {
            filter_order: p.filter_order.unwrap_or(d.filter_order),
            low: p.low.over(d.low),
            mid: p.mid.over(d.mid),
            high: p.high.over(d.high),
        }
    }
}

/// An `[onset.<band>]` table as written.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct PartialBandOnset {
    sensitivity: Option<f64>,
    refractory_s: Option<f64>,
    slow_tau_s: Option<f64>,
    abs_floor: Option<f64>,
}

impl PartialBandOnset {
    fn over(self, d: BandOnsetConfig) -> BandOnsetConfig {
        BandOnsetConfig {
            sensitivity: self.sensitivity.unwrap_or(d.sensitivity),
            refractory_s: self.refractory_s.unwrap_or(d.refractory_s),
            slow_tau_s: self.slow_tau_s.unwrap_or(d.slow_tau_s),
            abs_floor: self.abs_floor.unwrap_or(d.abs_floor),
        }
    }
}

/// `[onset]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct PartialOnset {
    enabled: Option<bool>,
    sensitivity: Option<f64>,
    min_gap_s: Option<f64>,
    #[serde(default)]
    low: PartialBandOnset,
    #[serde(default)]
    mid: PartialBandOnset,
    #[serde(default)]
    high: PartialBandOnset,
}

impl From<PartialOnset> for OnsetConfig {
    fn from(p: PartialOnset) -> Self {
        let d = OnsetConfig::default();
        OnsetConfig {
            enabled: p.enabled.unwrap_or(d.enabled),
            sensitivity: p.sensitivity.unwrap_or(d.sensitivity),
            min_gap_s: p.min_gap_s.unwrap_or(d.min_gap_s),
            low: p.low.over(d.low),
            mid: p.mid.over(d.mid),
            high: p.high.over(d.high),
        }
    }
}
