//! The configuration tree: TOML with kebab-case keys that carry their units,
//! built-in defaults (those of the Python feature server phase4 stays
//! compatible with), loading, validation that reports every problem, and a
//! diff that says whether a change can be applied live.
//!
//! Owns nothing that runs. Every other part reads a [`Config`]; only the
//! supervisor and the control layer create new ones.

mod analysis;
mod audio;
mod diff;
mod load;
mod monitor;
mod net;
mod outputs;
mod partial;
pub mod ranges;
mod realtime;
mod rig;
mod ui;
mod validate;

pub use analysis::{
    AutoscaleConfig, BandConfig, BandOnsetConfig, DspConfig, FftConfig, OnsetConfig, SilenceConfig,
    TempoConfig,
};
pub use audio::{
    device_name_problem, AccessMode, AudioConfig, MissingDevice, SampleFormat, MAX_DEVICE_NAME,
};
pub use diff::{diff, reload_plan, Apply, ReloadPlan};
pub use load::{
    load_file, load_str, search_path, syntax_message, token_exposure, ConfigError, Problem,
    MAX_CONFIG_BYTES, MAX_PROBLEMS,
};
pub use monitor::{MonitorConfig, RecordConfig, RecordFormat};
pub use outputs::{OscConfig, OscDestination, WsConfig};
pub use realtime::{CpuPin, RealtimeConfig, MAX_CPU_INDEX};
pub use rig::{
    DiscoveryBackend, DiscoveryConfig, LinkConfig, MidiConfig, OscQueryConfig, WledConfig,
};
pub use ui::{by_name, name_of, Card, FftView, Palette, Style3d, UiConfig, UiLayout};
pub use validate::validate;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Most `[[osc.destinations]]` (per-destination counters are sized by it).
pub const MAX_OSC_DESTINATIONS: usize = 16;

/// Default location of the system configuration (a dpkg conffile).
pub const SYSTEM_CONFIG_PATH: &str = "/etc/phase4/phase4.toml";

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Capture device and stream format.
    pub audio: AudioConfig,
    /// Real-time scheduling and memory locking.
    pub realtime: RealtimeConfig,
    /// Low/mid/high band-passes and their smoothing.
    pub dsp: DspConfig,
    /// The auto-scaler shared by L/M/H and the spectrum.
    pub autoscale: AutoscaleConfig,
    /// The log spectrum.
    pub fft: FftConfig,
    /// Onset detection (per band and broadband).
    pub onset: OnsetConfig,
    /// Beat tracking and tempo.
    pub tempo: TempoConfig,
    /// Silence detection.
    pub silence: SilenceConfig,
    /// OSC output.
    pub osc: OscConfig,
    /// WebSocket control and the browser UI.
    pub ws: WsConfig,
    /// Where runtime state and presets live.
    pub state: StateConfig,
    /// The Opus monitor stream (listening from a browser).
    pub monitor: MonitorConfig,
    /// Recording to WAV and the replay buffer.
    pub record: RecordConfig,
    /// Health reporting.
    pub health: HealthConfig,
    /// Settings of the browser UIs, kept for them and echoed in meta.
    pub ui: UiConfig,
    /// mDNS/DNS-SD announcement.
    pub discovery: DiscoveryConfig,
    /// The OSCQuery server and the OSC input port.
    pub oscquery: OscQueryConfig,
    /// The tempo feed for `phase4-link` (Ableton Link).
    pub link: LinkConfig,
    /// MIDI clock out.
    pub midi: MidiConfig,
    /// WLED Audio Sync.
    pub wled: WledConfig,
}

/// `[state]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateConfig {
    /// Directory for `state.toml` and `presets/` (empty: do not persist).
    pub dir: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: "/var/lib/phase4".into(),
        }
    }
}

/// `[health]`
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthConfig {
    /// Seconds between two health lines.
    pub interval_s: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig { interval_s: 60.0 }
    }
}

impl Config {
    /// Where runtime state lives, if persistence is on.
    pub fn state_dir(&self) -> Option<PathBuf> {
        if self.state.dir.is_empty() {
            None
        } else {
            Some(PathBuf::from(&self.state.dir))
        }
    }
}
