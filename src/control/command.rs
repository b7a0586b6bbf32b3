//! The commands control accepts, and what it answers.
//!
//! The WebSocket protocol module turns wire messages into these; every range
//! check happens here, before anything is changed.

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
    Presets(Vec<super::presets::PresetInfo>),
    /// The settings changed: every client gets the new meta.
    MetaChanged,
}

/// Device listing and switching, implemented by the supervisor (which owns
/// the capture thread).
pub trait DeviceOps: Send {
    /// Every capture device; with `probe`, open each briefly and look for signal.
    fn list(&mut self, probe: bool) -> Vec<DeviceItem>;
    /// Switch capture to `name`. Returns once the new device delivers, or
    /// with the reason after rolling back to the previous device.
    fn switch(&mut self, name: &str) -> Result<(), String>;
}
