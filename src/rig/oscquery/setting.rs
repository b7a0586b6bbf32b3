//! The settings OSCQuery clients and the OSC input port may change: one
//! OSC method per setting, named after its TOML key under
//! `<prefix>/settings/` (e.g. `/audio/settings/dsp/low/lo-hz f`). Each
//! write becomes the WebSocket protocol's [`Command`], so it goes through
//! the same validation (and the whole configuration is validated again
//! before anything changes).

use crate::config::Config;
use crate::control::Command;
use rosc::OscType;

/// A writable setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Lower edge of band 0..3.
    LoHz(usize),
    /// Upper edge of band 0..3.
    HiHz(usize),
    /// Smoother time constant of band 0..3.
    Tau(usize),
    /// Auto-scaler attack.
    TauAttack,
    /// Auto-scaler release.
    TauRelease,
    /// Auto-scaler noise floor.
    NoiseFloor,
    /// Auto-scaler strength.
    Strength,
    /// Log spectrum on.
    FftEnabled,
    /// Log bins.
    NBins,
    /// Raw dB spectrum.
    SendRawDb,
    /// Peak smear.
    PeakSmear,
    /// Onsets on.
    OnsetEnabled,
    /// Onset sensitivity.
    Sensitivity,
    /// Onset minimum gap.
    MinGap,
    /// Tempo on.
    TempoEnabled,
    /// Tempo range low.
    MinBpm,
    /// Tempo range high.
    MaxBpm,
    /// Lock threshold.
    LockConfidence,
}

/// Every setting, in namespace order.
pub const ALL: [Setting; 24] = [
    Setting::LoHz(0),
    Setting::HiHz(0),
    Setting::Tau(0),
    Setting::LoHz(1),
    Setting::HiHz(1),
    Setting::Tau(1),
    Setting::LoHz(2),
    Setting::HiHz(2),
    Setting::Tau(2),
    Setting::TauAttack,
    Setting::TauRelease,
    Setting::NoiseFloor,
    Setting::Strength,
    Setting::FftEnabled,
    Setting::NBins,
    Setting::SendRawDb,
    Setting::PeakSmear,
    Setting::OnsetEnabled,
    Setting::Sensitivity,
    Setting::MinGap,
    Setting::TempoEnabled,
    Setting::MinBpm,
    Setting::MaxBpm,
    Setting::LockConfidence,
];

/// Every setting.
pub fn all() -> impl Iterator<Item = Setting> {
    ALL.into_iter()
}

/// How a value is typed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A float ("f").
    Float,
    /// An int ("i").
    Int,
    /// A toggle ("T"; T/F, or 0/1 as int or float).
    Bool,
}

impl Setting {
    /// Path below `<prefix>/settings`.
    pub fn path(self) -> String {
        let band = |b: usize| crate::types::BAND_NAMES[b.min(2)];
        match self {
            Setting::LoHz(b) => format!("dsp/{}/lo-hz", band(b)),
            Setting::HiHz(b) => format!("dsp/{}/hi-hz", band(b)),
            Setting::Tau(b) => format!("dsp/{}/tau-s", band(b)),
            Setting::TauAttack => "autoscale/tau-attack-s".into(),
            Setting::TauRelease => "autoscale/tau-release-s".into(),
            Setting::NoiseFloor => "autoscale/noise-floor".into(),
            Setting::Strength => "autoscale/strength".into(),
            Setting::FftEnabled => "fft/enabled".into(),
            Setting::NBins => "fft/n-bins".into(),
            Setting::SendRawDb => "fft/send-raw-db".into(),
            Setting::PeakSmear => "fft/peak-smear-oct".into(),
            Setting::OnsetEnabled => "onset/enabled".into(),
            Setting::Sensitivity => "onset/sensitivity".into(),
            Setting::MinGap => "onset/min-gap-s".into(),
            Setting::TempoEnabled => "tempo/enabled".into(),
            Setting::MinBpm => "tempo/min-bpm".into(),
            Setting::MaxBpm => "tempo/max-bpm".into(),
            Setting::LockConfidence => "tempo/lock-confidence".into(),
        }
    }

    /// The wire type.
    pub fn kind(self) -> Kind {
        match self {
            Setting::FftEnabled
            | Setting::SendRawDb
            | Setting::OnsetEnabled
            | Setting::TempoEnabled => Kind::Bool,
            Setting::NBins => Kind::Int,
            _ => Kind::Float,
        }
    }

    /// (min, max) as the WebSocket protocol checks them; `sr` bounds the
    /// band edges.
    pub fn range(self, sr: f64) -> (f64, f64) {
        use crate::config::ranges as R;
        match self {
            Setting::LoHz(_) | Setting::HiHz(_) => (R::BAND_LO_MIN_HZ, R::BAND_HI_MAX_OF_SR * sr),
            Setting::Tau(_) => R::TAU_S,
            Setting::TauAttack => R::AUTOSCALE_ATTACK_S,
            Setting::TauRelease => R::AUTOSCALE_RELEASE_S,
            Setting::NoiseFloor => R::NOISE_FLOOR,
            Setting::Strength => R::STRENGTH,
            Setting::Sensitivity => R::ONSET_SENSITIVITY,
            Setting::LockConfidence => R::LOCK_CONFIDENCE,
            Setting::NBins => (8.0, crate::types::MAX_FFT_BINS as f64),
            Setting::PeakSmear => R::PEAK_SMEAR_OCT,
            Setting::MinGap => R::ONSET_MIN_GAP_S,
            Setting::MinBpm | Setting::MaxBpm => R::BPM,
            Setting::FftEnabled
            | Setting::SendRawDb
            | Setting::OnsetEnabled
            | Setting::TempoEnabled => (0.0, 1.0),
        }
    }

    /// What it does, for DESCRIPTION.
    pub fn description(self) -> &'static str {
        match self {
            Setting::LoHz(_) => "lower band edge (-3 dB), Hz; must stay 50 Hz below the upper edge",
            Setting::HiHz(_) => "upper band edge (-3 dB), Hz; at most 0.45 x sample rate",
            Setting::Tau(_) => "band smoother time constant, s",
            Setting::TauAttack => "auto-scaler peak follower attack, s",
            Setting::TauRelease => "auto-scaler peak follower release, s",
            Setting::NoiseFloor => "auto-scaler noise floor, linear RMS",
            Setting::Strength => "auto-scaler strength (1 = fully auto-scaled, 0 = raw)",
            Setting::FftEnabled => "stream the log spectrum",
            Setting::NBins => "number of log-spaced spectrum bins",
            Setting::SendRawDb => "spectrum as raw dB instead of [0, 1]",
            Setting::PeakSmear => "spectrum peak follower smear, octaves",
            Setting::OnsetEnabled => "detect onsets",
            Setting::Sensitivity => "broadband onset sensitivity (higher: more onsets)",
            Setting::MinGap => "shortest gap between two onsets, s",
            Setting::TempoEnabled => "track beats and tempo",
            Setting::MinBpm => "lowest tempo reported, BPM",
            Setting::MaxBpm => "highest tempo reported (at least 1.9 x min-bpm), BPM",
            Setting::LockConfidence => "confidence needed before a tempo is claimed",
        }
    }

    /// The value in force.
    pub fn get(self, c: &Config) -> OscType {
        let b = |i: usize| c.dsp.bands()[i.min(2)];
        let f = |v: f64| OscType::Float(v as f32);
        match self {
            Setting::LoHz(i) => f(b(i).lo_hz),
            Setting::HiHz(i) => f(b(i).hi_hz),
            Setting::Tau(i) => f(b(i).tau_s),
            Setting::TauAttack => f(c.autoscale.tau_attack_s),
            Setting::TauRelease => f(c.autoscale.tau_release_s),
            Setting::NoiseFloor => f(c.autoscale.noise_floor),
            Setting::Strength => f(c.autoscale.strength),
            Setting::FftEnabled => OscType::Bool(c.fft.enabled),
            Setting::NBins => OscType::Int(c.fft.n_bins as i32),
            Setting::SendRawDb => OscType::Bool(c.fft.send_raw_db),
            Setting::PeakSmear => f(c.fft.peak_smear_oct),
            Setting::OnsetEnabled => OscType::Bool(c.onset.enabled),
            Setting::Sensitivity => f(c.onset.sensitivity),
            Setting::MinGap => f(c.onset.min_gap_s),
            Setting::TempoEnabled => OscType::Bool(c.tempo.enabled),
            Setting::MinBpm => f(c.tempo.min_bpm),
            Setting::MaxBpm => f(c.tempo.max_bpm),
            Setting::LockConfidence => f(c.tempo.lock_confidence),
        }
    }

    /// The command that writes `args` (one OSC argument) over the settings
    /// in force `c`; `Err` says why the message is refused as written.
    pub fn command(self, args: &[OscType], c: &Config) -> Result<Command, String> {
        let [arg] = args else {
            return Err(format!("expects one argument, got {}", args.len()));
        };
        let num = match arg {
            OscType::Float(v) => *v as f64,
            OscType::Double(v) => *v,
            OscType::Int(v) => *v as f64,
            OscType::Long(v) => *v as f64,
            OscType::Bool(b) => *b as u8 as f64,
            _ => return Err("expects a number or T/F".into()),
        };
        let on = num != 0.0;
        let b = |i: usize| c.dsp.bands()[i.min(2)];
        let mut tau = [None; 3];
        Ok(match self {
            Setting::LoHz(i) => Command::SetBand {
                band: i,
                lo_hz: num,
                hi_hz: b(i).hi_hz,
                commit: true,
            },
            Setting::HiHz(i) => Command::SetBand {
                band: i,
                lo_hz: b(i).lo_hz,
                hi_hz: num,
                commit: true,
            },
            Setting::Tau(i) => {
                tau[i.min(2)] = Some(num);
                Command::SetSmoothing {
                    tau,
                    tau_attack: [None; 3],
                    commit: true,
                }
            }
            Setting::TauAttack | Setting::TauRelease | Setting::NoiseFloor | Setting::Strength => {
                let pick = |s: Setting| (self == s).then_some(num);
                Command::SetAutoscale {
                    tau_attack_s: pick(Setting::TauAttack),
                    tau_release_s: pick(Setting::TauRelease),
                    noise_floor: pick(Setting::NoiseFloor),
                    strength: pick(Setting::Strength),
                    master_gain: None,
                    commit: true,
                }
            }
            Setting::FftEnabled => Command::SetFft { enabled: on },
            Setting::NBins => {
                if num.fract() != 0.0 || !num.is_finite() {
                    return Err(format!("n-bins must be a whole number, got {num}"));
                }
                Command::SetNFftBins { n: num as i64 }
            }
            Setting::SendRawDb => Command::SetFftSendRawDb { send_raw_db: on },
            Setting::PeakSmear => Command::SetFftPeakSmear {
                peak_smear_oct: num,
                commit: true,
            },
            Setting::OnsetEnabled | Setting::Sensitivity | Setting::MinGap => Command::SetOnset {
                enabled: (self == Setting::OnsetEnabled).then_some(on),
                sensitivity: (self == Setting::Sensitivity).then_some(num),
                min_gap_s: (self == Setting::MinGap).then_some(num),
                commit: true,
            },
            Setting::TempoEnabled | Setting::MinBpm | Setting::MaxBpm | Setting::LockConfidence => {
                Command::SetTempo {
                    enabled: (self == Setting::TempoEnabled).then_some(on),
                    min_bpm: (self == Setting::MinBpm).then_some(num),
                    max_bpm: (self == Setting::MaxBpm).then_some(num),
                    lock_confidence: (self == Setting::LockConfidence).then_some(num),
                    commit: true,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_reads_back_what_its_command_writes() {
        let c = Config::default();
        for s in all() {
            let v = s.get(&c);
            let cmd = s.command(std::slice::from_ref(&v), &c).unwrap();
            // The command carries the same value back.
            let want = match v {
                OscType::Float(f) => f as f64,
                OscType::Int(i) => i as f64,
                OscType::Bool(b) => b as u8 as f64,
                _ => unreachable!(),
            };
            let dbg = format!("{cmd:?}");
            assert!(
                dbg.contains(&format!("{want}")) || dbg.contains(&format!("{}", want != 0.0)),
                "{s:?}: {dbg}"
            );
        }
        assert_eq!(all().count(), 24);
    }

    #[test]
    fn a_band_edge_write_keeps_the_other_edge() {
        let c = Config::default();
        let cmd = Setting::LoHz(1)
            .command(&[OscType::Float(300.0)], &c)
            .unwrap();
        assert_eq!(
            cmd,
            Command::SetBand {
                band: 1,
                lo_hz: 300.0,
                hi_hz: 4000.0,
                commit: true
            }
        );
        assert!(Setting::LoHz(1)
            .command(&[OscType::String("x".into())], &c)
            .is_err());
        assert!(Setting::NBins.command(&[OscType::Float(12.5)], &c).is_err());
        assert!(Setting::Strength.command(&[], &c).is_err());
    }
}
