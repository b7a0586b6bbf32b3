//! The commands control accepts, what it answers, and the one place where
//! every command is checked ([`validate`]).
//!
//! The WebSocket protocol module turns wire messages into these; every range
//! check happens here, before anything is changed. Names that reach the file
//! system or alsa-lib are checked again where they become typed values
//! ([`super::presets::PresetName`], [`super::device::ListedDevice`]).

use super::device::{ListedDevice, MAX_DEVICE_NAME};
use super::presets::PresetName;

/// A request to change or read a setting. Field meanings and ranges follow
/// the Python server's protocol (see docs/protocol.md).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Spectrum on or off.
    SetFft {
        /// On.
        enabled: bool,
    },
    /// Move one band-pass.
    SetBand {
        /// 0 low, 1 mid, 2 high.
        band: usize,
        /// Lower edge.
        lo_hz: f64,
        /// Upper edge.
        hi_hz: f64,
        /// false while dragging.
        commit: bool,
    },
    /// Smoother time constants (only the given bands change).
    SetSmoothing {
        /// Low, mid, high.
        tau: [Option<f64>; 3],
        /// false while dragging.
        commit: bool,
    },
    /// Auto-scaler (only the given fields change).
    SetAutoscale {
        /// Attack.
        tau_attack_s: Option<f64>,
        /// Release.
        tau_release_s: Option<f64>,
        /// Noise floor.
        noise_floor: Option<f64>,
        /// Strength.
        strength: Option<f64>,
        /// false while dragging.
        commit: bool,
    },
    /// Raw dB or post-processed spectrum on the wire.
    SetFftSendRawDb {
        /// Raw dB.
        send_raw_db: bool,
    },
    /// Peak smear.
    SetFftPeakSmear {
        /// Octaves.
        peak_smear_oct: f64,
        /// false while dragging.
        commit: bool,
    },
    /// List capture devices.
    ListDevices {
        /// Open each and check for signal.
        probe: bool,
    },
    /// Switch the capture device, by index in the last listing or by name.
    SetDevice {
        /// Index in the last `devices` listing.
        index: Option<i64>,
        /// PCM name (phase4 addition; wins over index).
        name: Option<String>,
    },
    /// Log bins.
    SetNFftBins {
        /// Count.
        n: i64,
    },
    /// Snapshot rate.
    SetWsSnapshotHz {
        /// Hz.
        hz: f64,
        /// false while dragging.
        commit: bool,
    },
    /// List presets.
    ListPresets,
    /// Save the current sound settings as a preset.
    SavePreset {
        /// Name.
        name: String,
    },
    /// Apply a preset.
    LoadPreset {
        /// Name.
        name: String,
    },
    /// Delete a preset (phase4 addition: presets are capped in number).
    DeletePreset {
        /// Name.
        name: String,
    },
    /// Onset detection (phase4 addition).
    SetOnset {
        /// On.
        enabled: Option<bool>,
        /// Sensitivity.
        sensitivity: Option<f64>,
        /// Minimum gap.
        min_gap_s: Option<f64>,
        /// false while dragging.
        commit: bool,
    },
    /// Tempo tracking (phase4 addition).
    SetTempo {
        /// On.
        enabled: Option<bool>,
        /// Range.
        min_bpm: Option<f64>,
        /// Range.
        max_bpm: Option<f64>,
        /// Lock threshold.
        lock_confidence: Option<f64>,
        /// false while dragging.
        commit: bool,
    },
    /// A client connected: send it the device and preset lists.
    Hello,
}

impl Command {
    /// Whether the command changes anything (and so needs the control
    /// token when one is configured).
    pub fn mutates(&self) -> bool {
        !matches!(
            self,
            Command::ListPresets | Command::Hello | Command::ListDevices { probe: false }
        )
    }
}

/// One capture device, as `devices` lists it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceItem {
    /// Index in this listing.
    pub index: usize,
    /// PCM name (what is stored).
    pub name: String,
    /// Description from alsa-lib.
    pub description: String,
    /// A sound card (`hw:`, `plughw:`, `CARD=`), not an ALSA plugin device.
    pub card: bool,
    /// Could be opened just now.
    pub available: bool,
    /// Most channels it offers.
    pub max_input_channels: u32,
    /// Preferred (or nearest to the configured) rate.
    pub default_samplerate: f64,
    /// Formats it offers among those phase4 reads.
    pub formats: Vec<String>,
    /// With probe: whether it delivered a signal above the noise.
    pub probed_signal: Option<bool>,
    /// With probe: peak level seen, dBFS.
    pub probed_peak_dbfs: Option<f64>,
    /// With probe: when (Unix seconds).
    pub probed_at: Option<f64>,
    /// Why it could not be opened.
    pub error: Option<String>,
}

/// What control answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// The command was refused; nothing changed.
    Error(String),
    /// A device listing.
    Devices(Vec<DeviceItem>),
    /// The preset list.
    Presets(super::presets::PresetList),
    /// The settings changed: every client gets the new meta.
    MetaChanged,
}

/// Device listing and switching, implemented by the supervisor (which owns
/// the capture thread).
pub trait DeviceOps: Send {
    /// Every capture device; with `probe`, open each briefly and look for signal.
    fn list(&mut self, probe: bool) -> Vec<DeviceItem>;
    /// The capture PCM names phase4 itself enumerates (without opening
    /// them): with the configured device, the only ones a client may pick.
    fn listed_names(&mut self) -> Vec<String>;
    /// Switch capture to `device`. Returns once the new device delivers, or
    /// with the reason after rolling back to the previous device.
    fn switch(&mut self, device: &ListedDevice) -> Result<(), String>;
}

fn range(name: &str, v: f64, lo: f64, hi: f64) -> Option<String> {
    (!v.is_finite() || v < lo || v > hi).then(|| format!("{name} must be in [{lo}, {hi}], got {v}"))
}

fn opt_range(name: &str, v: Option<f64>, lo: f64, hi: f64) -> Option<String> {
    v.and_then(|v| range(name, v, lo, hi))
}

/// A partial update must change something: `{"type":"set_autoscale"}` is a
/// mistake worth telling the client about, not a silent success.
fn some_field(type_: &str, given: &[bool], fields: &str) -> Option<String> {
    (!given.iter().any(|g| *g)).then(|| format!("{type_} needs at least one of {fields}"))
}

/// Why `cmd` is refused at sample rate `sr`, or `None` when it is fine.
/// The whole resulting configuration is validated again before it is used.
pub fn validate(cmd: &Command, sr: f64) -> Option<String> {
    match cmd {
        Command::SetBand {
            band, lo_hz, hi_hz, ..
        } => {
            let name = crate::types::BAND_NAMES.get(*band).copied().unwrap_or("?");
            if !lo_hz.is_finite() || *lo_hz < 20.0 {
                Some(format!("{name}: lo_hz must be >= 20, got {lo_hz}"))
            } else if !hi_hz.is_finite() || *hi_hz <= lo_hz + 50.0 {
                Some(format!(
                    "{name}: hi_hz must be > lo_hz + 50 ({}), got {hi_hz}",
                    lo_hz + 50.0
                ))
            } else if *hi_hz > 0.45 * sr {
                Some(format!(
                    "{name}: hi_hz must be <= 0.45 x sample rate ({}), got {hi_hz}",
                    0.45 * sr
                ))
            } else {
                None
            }
        }
        Command::SetSmoothing { tau, .. } => {
            if tau.iter().all(|t| t.is_none()) {
                return Some("tau must name at least one of low, mid, high".into());
            }
            tau.iter()
                .zip(crate::types::BAND_NAMES)
                .find_map(|(t, n)| opt_range(&format!("tau.{n}"), *t, 0.005, 2.0))
        }
        Command::SetAutoscale {
            tau_attack_s,
            tau_release_s,
            noise_floor,
            strength,
            ..
        } => some_field(
            "set_autoscale",
            &[
                tau_attack_s.is_some(),
                tau_release_s.is_some(),
                noise_floor.is_some(),
                strength.is_some(),
            ],
            "tau_attack_s, tau_release_s, noise_floor, strength",
        )
        .or_else(|| opt_range("tau_attack_s", *tau_attack_s, 0.001, 1.0))
        .or_else(|| opt_range("tau_release_s", *tau_release_s, 5.0, 300.0))
        .or_else(|| opt_range("noise_floor", *noise_floor, 0.0, 0.1))
        .or_else(|| opt_range("strength", *strength, 0.0, 1.0)),
        Command::SetFftPeakSmear { peak_smear_oct, .. } => {
            range("peak_smear_oct", *peak_smear_oct, 0.0, 3.0)
        }
        Command::SetNFftBins { n } => (!(8..=crate::types::MAX_FFT_BINS as i64).contains(n))
            .then(|| format!("n must be in [8, {}], got {n}", crate::types::MAX_FFT_BINS)),
        Command::SetWsSnapshotHz { hz, .. } => range("hz", *hz, 15.0, 240.0),
        Command::SavePreset { name }
        | Command::LoadPreset { name }
        | Command::DeletePreset { name } => PresetName::parse(name).err(),
        Command::SetDevice { index, name } => match (index, name) {
            (None, None) => Some("set_device needs index or name".into()),
            (_, Some(n)) if n.is_empty() || n.len() > MAX_DEVICE_NAME => Some(format!(
                "device name must be 1-{MAX_DEVICE_NAME} bytes; pick one from list_devices"
            )),
            _ => None,
        },
        Command::SetOnset {
            enabled,
            sensitivity,
            min_gap_s,
            ..
        } => some_field(
            "set_onset",
            &[
                enabled.is_some(),
                sensitivity.is_some(),
                min_gap_s.is_some(),
            ],
            "enabled, sensitivity, min_gap_s",
        )
        .or_else(|| opt_range("sensitivity", *sensitivity, 0.0, 1.0))
        .or_else(|| opt_range("min_gap_s", *min_gap_s, 0.01, 1.0)),
        Command::SetTempo {
            enabled,
            min_bpm,
            max_bpm,
            lock_confidence,
            ..
        } => some_field(
            "set_tempo",
            &[
                enabled.is_some(),
                min_bpm.is_some(),
                max_bpm.is_some(),
                lock_confidence.is_some(),
            ],
            "enabled, min_bpm, max_bpm, lock_confidence",
        )
        .or_else(|| opt_range("min_bpm", *min_bpm, 30.0, 300.0))
        .or_else(|| opt_range("max_bpm", *max_bpm, 30.0, 300.0))
        .or_else(|| opt_range("lock_confidence", *lock_confidence, 0.0, 1.0)),
        Command::SetFft { .. }
        | Command::SetFftSendRawDb { .. }
        | Command::ListDevices { .. }
        | Command::ListPresets
        | Command::Hello => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_updates_that_change_nothing_are_refused() {
        let none = Command::SetAutoscale {
            tau_attack_s: None,
            tau_release_s: None,
            noise_floor: None,
            strength: None,
            commit: true,
        };
        assert!(validate(&none, 48_000.0).is_some());
        let onset = Command::SetOnset {
            enabled: None,
            sensitivity: None,
            min_gap_s: None,
            commit: true,
        };
        assert!(validate(&onset, 48_000.0).is_some());
        let tempo = Command::SetTempo {
            enabled: None,
            min_bpm: None,
            max_bpm: None,
            lock_confidence: None,
            commit: true,
        };
        assert!(validate(&tempo, 48_000.0).is_some());
        let one = Command::SetAutoscale {
            tau_attack_s: None,
            tau_release_s: None,
            noise_floor: None,
            strength: Some(0.5),
            commit: true,
        };
        assert_eq!(validate(&one, 48_000.0), None);
    }
}
