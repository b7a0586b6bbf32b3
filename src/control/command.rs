//! The commands control accepts, what it answers, and the one place where
//! every command is checked ([`validate`]).
//!
//! The WebSocket protocol module turns wire messages into these; every range
//! check happens here, before anything is changed. Names that reach the file
//! system or alsa-lib are checked again where they become typed values
//! ([`super::presets::PresetName`], [`super::device::ListedDevice`]).

mod clamping;
mod validation;

pub use clamping::clamp;
pub use validation::validate;

use super::device::ListedDevice;

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
    /// Smoother time constants (only the given bands change; neither
    /// given changes nothing, as in the Python server).
    SetSmoothing {
        /// Release τ: low, mid, high.
        tau: [Option<f64>; 3],
        /// Attack τ (`tau_attack`): low, mid, high.
        tau_attack: [Option<f64>; 3],
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
        /// Final gain on L/M/H and the processed spectrum.
        master_gain: Option<f64>,
        /// false while dragging.
        commit: bool,
    },
    /// Spectral tilt before the per-bin auto-scaler.
    SetFftTilt {
        /// dB per octave around 1 kHz.
        tilt_db_per_oct: f64,
        /// false while dragging.
        commit: bool,
    },
    /// Butterworth order of the three band-passes.
    SetFilterOrder {
        /// 1..8.
        order: i64,
        /// false while dragging.
        commit: bool,
    },
    /// One band's onset detector (the Python server's `set_onset`).
    SetBandOnset {
        /// 0 low, 1 mid, 2 high.
        band: usize,
        /// Threshold multiple.
        sensitivity: Option<f64>,
        /// Shortest gap.
        refractory_s: Option<f64>,
        /// Slow envelope τ.
        slow_tau_s: Option<f64>,
        /// Threshold floor.
        abs_floor: Option<f64>,
        /// false while dragging.
        commit: bool,
    },
    /// Settings kept for the browser UIs (only the given ones change).
    SetUi {
        /// Peak-hold fall rate.
        peak_decay_per_s: Option<f64>,
        /// Onset markers drawn.
        show_onsets: Option<bool>,
        /// Card layout.
        layout: Option<crate::config::UiLayout>,
        /// 2D or 3D spectrum.
        fft_view: Option<crate::config::FftView>,
        /// 3D style.
        fft3d_style: Option<crate::config::Style3d>,
        /// Palette.
        palette: Option<crate::config::Palette>,
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
    /// Values the command carried were clamped into range (told to the
    /// client that sent it, with its meta).
    Clamped(Vec<Clamped>),
    /// The device listing changed (after `set_device`): every client gets it.
    DevicesChanged(Vec<DeviceItem>),
    /// The presets folder was read again (SIGHUP): every client gets the list.
    PresetsChanged(super::presets::PresetList),
}

/// Device listing and switching, implemented by the supervisor (which owns
/// the capture thread).
pub trait DeviceOps: Send {
    /// Every capture device; with `probe`, open each briefly and look for signal.
    fn list(&mut self, probe: bool) -> Vec<DeviceItem>;
    /// The capture PCM names phase4 itself enumerates (without opening
    /// them): with the configured device, the only ones a client may pick.
    fn listed_names(&mut self) -> Vec<String>;
    /// Ask for capture to switch to `device`. The outcome arrives on the
    /// returned channel once the new device delivers, or with the reason
    /// after rolling back to the previous device (control does not wait for
    /// it: a switch to a device that never delivers takes seconds).
    fn switch(&mut self, device: &ListedDevice) -> Result<SwitchOutcome, String>;
    /// What a probe does (`list(true)`), to run on a thread other than
    /// control's; `None`: control probes itself.
    fn prober(&self) -> Option<Prober> {
        None
    }
    /// A value that changes when what a listing says about the device in
    /// use would (it opened, closed, or another one did): a listing made
    /// before is not reused.
    fn in_use_key(&self) -> u64 {
        0
    }
}

/// Where the outcome of a switch arrives ([`DeviceOps::switch`]).
pub type SwitchOutcome = std::sync::mpsc::Receiver<Result<(), String>>;

/// A probe listing made off the control thread ([`DeviceOps::prober`]).
pub type Prober = Box<dyn FnMut() -> Vec<DeviceItem> + Send>;

/// A value outside its range that was replaced by the nearest allowed one.
#[derive(Clone, Debug, PartialEq)]
pub struct Clamped {
    /// The field, as named on the wire (`tau.low`, `strength`, ...).
    pub field: String,
    /// What the client sent.
    pub requested: f64,
    /// What was applied.
    pub applied: f64,
}
