//! The configuration tree: TOML with kebab-case keys that carry their units,
//! built-in defaults (those of the Python feature server phase4 stays
//! compatible with), loading, validation that reports every problem, and a
//! diff that says whether a change can be applied live.
//!
//! Owns nothing that runs. Every other part reads a [`Config`]; only the
//! supervisor and the control layer create new ones.

mod load;
mod partial;
pub mod ranges;
mod realtime;
mod rig;
mod ui;
mod validate;

pub use load::{
    load_file, load_str, search_path, ConfigError, Problem, MAX_CONFIG_BYTES, MAX_PROBLEMS,
};
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

/// Sample formats phase4 can capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SampleFormat {
    /// Pick the best the device offers (FLOAT_LE, S32_LE, S24_LE, S24_3LE,
    /// S16_LE).
    #[serde(rename = "auto")]
    Auto,
    /// Signed 16 bit little endian.
    #[serde(rename = "S16_LE")]
    S16Le,
    /// Signed 24 bit in 3 bytes little endian.
    #[serde(rename = "S24_3LE")]
    S24_3Le,
    /// Signed 24 bit in the low 3 bytes of 4, little endian (I2S codecs).
    #[serde(rename = "S24_LE")]
    S24Le,
    /// Signed 32 bit little endian.
    #[serde(rename = "S32_LE")]
    S32Le,
    /// 32 bit float little endian.
    #[serde(rename = "FLOAT_LE")]
    FloatLe,
}

/// How samples are read from the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessMode {
    /// mmap when the device allows it, else read.
    Auto,
    /// mmap only (fail if refused).
    Mmap,
    /// snd_pcm_readi only.
    Rw,
}

/// What to do when the capture device cannot be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingDevice {
    /// Keep retrying with backoff (a USB interface plugged in later).
    Retry,
    /// Exit with an error.
    Fail,
}

/// `[audio]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AudioConfig {
    /// ALSA PCM name (`default`, `hw:CARD=Device,DEV=0`, `plug:...`).
    pub device: String,
    /// A WAV file to play at real time instead of capturing (empty: ALSA).
    pub input: String,
    /// Loop the WAV input.
    pub loop_input: bool,
    /// Requested sample rate; the device's nearest is used.
    pub sample_rate_hz: u32,
    /// Frames per block (= ALSA period).
    pub block_frames: u32,
    /// Periods in the ALSA buffer.
    pub periods: u32,
    /// Channels to open (0: as many as the device prefers, at most 2).
    pub channels: u32,
    /// `-1`: mix all channels to mono; `n`: use channel n only.
    pub channel: i32,
    /// Sample format.
    pub format: SampleFormat,
    /// mmap or read access.
    pub access: AccessMode,
    /// What to do when the device is missing.
    pub on_missing_device: MissingDevice,
    /// First retry delay when the device is missing or gone.
    pub retry_initial_s: f64,
    /// Longest retry delay.
    pub retry_max_s: f64,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            device: "default".into(),
            input: String::new(),
            loop_input: false,
            sample_rate_hz: 48_000,
            block_frames: 256,
            periods: 4,
            channels: 0,
            channel: -1,
            format: SampleFormat::Auto,
            access: AccessMode::Auto,
            on_missing_device: MissingDevice::Retry,
            retry_initial_s: 0.25,
            retry_max_s: 5.0,
        }
    }
}

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
#[serde(from = "partial::PartialDsp", rename_all = "kebab-case")]
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
#[serde(from = "partial::PartialOnset", rename_all = "kebab-case")]
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

/// One OSC destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct OscDestination {
    /// Host name or address (unicast, broadcast or multicast).
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// Multicast TTL (only used for multicast groups).
    pub ttl: u32,
}

impl Default for OscDestination {
    fn default() -> Self {
        OscDestination {
            host: "127.0.0.1".into(),
            port: 9000,
            ttl: 1,
        }
    }
}

/// `[osc]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct OscConfig {
    /// Send OSC at all.
    pub enabled: bool,
    /// Address prefix.
    pub prefix: String,
    /// Where to send.
    pub destinations: Vec<OscDestination>,
    /// Also send `/audio/fft` (needs `fft.enabled`).
    pub send_fft: bool,
    /// Wrap each block's messages in a bundle time-tagged with the capture time.
    pub bundle: bool,
    /// Addresses to send (without prefix, e.g. "lmh", "onset/low"); empty: all.
    pub addresses: Vec<String>,
    /// How often `/audio/meta` is repeated.
    pub meta_interval_s: f64,
    /// How often host names are resolved again.
    pub resolve_interval_s: f64,
}

impl Default for OscConfig {
    fn default() -> Self {
        OscConfig {
            enabled: true,
            prefix: "/audio".into(),
            destinations: vec![OscDestination::default()],
            send_fft: false,
            bundle: false,
            addresses: Vec::new(),
            meta_interval_s: 1.0,
            resolve_interval_s: 30.0,
        }
    }
}

/// `[ws]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WsConfig {
    /// Run the WebSocket server and the UI.
    pub enabled: bool,
    /// Address to bind both to.
    pub bind: String,
    /// WebSocket port.
    pub port: u16,
    /// HTTP port of the browser UI.
    pub http_port: u16,
    /// Directory the UI is served from (empty, or missing: the copy built
    /// into the binary).
    pub web_dir: String,
    /// L/M/H snapshot rate.
    pub snapshot_hz: f64,
    /// Control token a client not on this machine must present to change
    /// settings (empty: a generated one, kept in the state directory and
    /// shown by `phase4 token`).
    pub token: String,
    /// Clients on the loopback interface may change settings without the
    /// token.
    pub trust_loopback: bool,
    /// Host names this box is reached by besides its addresses, `localhost`,
    /// its host name and `<hostname>.local` (DNS rebinding defence).
    pub allowed_hosts: Vec<String>,
    /// Origins allowed besides the UI's own (e.g. "http://mypi.local:8766").
    pub allowed_origins: Vec<String>,
    /// Most clients at once.
    pub max_clients: u32,
    /// Most clients from one address (loopback excepted).
    pub max_clients_per_ip: u32,
    /// Largest inbound message.
    pub max_message_bytes: u32,
    /// Most inbound messages per second per client.
    pub max_messages_per_s: f64,
    /// A client that does not read for this long is disconnected.
    pub stall_timeout_s: f64,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            enabled: true,
            bind: "127.0.0.1".into(),
            port: 8765,
            http_port: 8766,
            web_dir: "/usr/share/phase4/web".into(),
            snapshot_hz: 60.0,
            token: String::new(),
            trust_loopback: true,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_clients: 32,
            max_clients_per_ip: 8,
            max_message_bytes: 65_536,
            max_messages_per_s: 200.0,
            stall_timeout_s: 5.0,
        }
    }
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

/// `[monitor]`: the Opus monitor stream.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MonitorConfig {
    /// Let clients with the control token (or on this machine) listen.
    pub enabled: bool,
    /// Opus frame length: 10 or 20 ms.
    pub frame_ms: u32,
    /// libopus encoder complexity, 0 (cheapest) to 10 (best).
    pub complexity: u32,
    /// Most listeners at once (each costs up to the Ultra bitrate).
    pub max_listeners: u32,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            enabled: true,
            frame_ms: 20,
            complexity: 5,
            max_listeners: 8,
        }
    }
}

/// How recordings store samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordFormat {
    /// As captured: 16 bit from a 16-bit device, 24 bit from a 24-bit one,
    /// 32-bit float from 32-bit and float devices and from a mix of
    /// channels (every sample the pipeline saw, bit for bit).
    Auto,
    /// 16-bit PCM.
    S16,
    /// 24-bit PCM.
    S24,
    /// 32-bit IEEE float.
    F32,
}

/// `[record]`: recordings and the replay buffer, kept in
/// `<state.dir>/recordings`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RecordConfig {
    /// Allow recording and replay saves at all.
    pub enabled: bool,
    /// Sample format of the WAV files.
    pub format: RecordFormat,
    /// Seconds the replay buffer always keeps (0: no replay buffer).
    pub replay_s: f64,
    /// Most space all recordings together may take, MiB.
    pub max_total_mb: u64,
    /// Recording stops (and a save is refused) when less than this is free
    /// on the file system, MiB.
    pub min_free_mb: u64,
    /// A recording longer than this goes on in a new file, seconds.
    pub max_file_s: f64,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            enabled: true,
            format: RecordFormat::Auto,
            replay_s: 60.0,
            max_total_mb: 2048,
            min_free_mb: 256,
            max_file_s: 3600.0,
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

/// How a configuration change can be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    /// Nothing changed.
    Nothing,
    /// The workers take it through the parameter handoff.
    Live,
    /// The capture stream must be reopened (device, rate, block, format).
    RestartCapture,
    /// The process must restart (ports, thread priorities, FFT window).
    RestartProcess,
}

/// Decide how `new` can replace `old`.
pub fn diff(old: &Config, new: &Config) -> Apply {
    if old == new {
        return Apply::Nothing;
    }
    // The snapshot rate is applied live by the WebSocket thread.
    let ws_rest_differs = {
        let (mut a, mut b) = (old.ws.clone(), new.ws.clone());
        a.snapshot_hz = 0.0;
        b.snapshot_hz = 0.0;
        a != b
    };
    if old.realtime != new.realtime
        || ws_rest_differs
        || old.osc != new.osc
        || old.state != new.state
        || old.monitor != new.monitor
        || old.record != new.record
        || old.health != new.health
        || old.discovery != new.discovery
        || old.oscquery != new.oscquery
        || old.link != new.link
        || old.midi != new.midi
        || old.wled != new.wled
        || old.fft.window_frames != new.fft.window_frames
        || old.fft.hop_frames != new.fft.hop_frames
    {
        return Apply::RestartProcess;
    }
    if old.audio != new.audio {
        return Apply::RestartCapture;
    }
    Apply::Live
}

/// What a reload (SIGHUP) of the configuration file can do.
#[derive(Clone, Debug, PartialEq)]
pub struct ReloadPlan {
    /// `old` with every change that applies while running taken from `new`:
    /// the DSP settings (bands, filter order, auto-scaler, spectrum except
    /// its window and hop, onsets, tempo, silence), the snapshot rate and
    /// the health interval.
    pub applied: Config,
    /// Keys whose change needs a restart (they keep their running values).
    pub needs_restart: Vec<&'static str>,
}

/// Split the change from `old` to `new` into what applies live and what
/// waits for a restart.
pub fn reload_plan(old: &Config, new: &Config) -> ReloadPlan {
    let mut applied = old.clone();
    applied.dsp = new.dsp.clone();
    applied.autoscale = new.autoscale;
    applied.fft = FftConfig {
        window_frames: old.fft.window_frames,
        hop_frames: old.fft.hop_frames,
        ..new.fft
    };
    applied.onset = new.onset;
    applied.tempo = new.tempo;
    applied.silence = new.silence;
    applied.ws.snapshot_hz = new.ws.snapshot_hz;
    applied.health = new.health;
    applied.ui = new.ui;
    let mut needs_restart = Vec::new();
    let mut ws_rest = (old.ws.clone(), new.ws.clone());
    ws_rest.0.snapshot_hz = 0.0;
    ws_rest.1.snapshot_hz = 0.0;
    for (key, differs) in [
        ("audio", old.audio != new.audio),
        ("realtime", old.realtime != new.realtime),
        (
            "fft.window-frames",
            old.fft.window_frames != new.fft.window_frames,
        ),
        ("fft.hop-frames", old.fft.hop_frames != new.fft.hop_frames),
        ("osc", old.osc != new.osc),
        ("ws", ws_rest.0 != ws_rest.1),
        ("state", old.state != new.state),
        ("monitor", old.monitor != new.monitor),
        ("record", old.record != new.record),
        ("discovery", old.discovery != new.discovery),
        ("oscquery", old.oscquery != new.oscquery),
        ("link", old.link != new.link),
        ("midi", old.midi != new.midi),
        ("wled", old.wled != new.wled),
    ] {
        if differs {
            needs_restart.push(key);
        }
    }
    ReloadPlan {
        applied,
        needs_restart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_applies_dsp_changes_and_lists_the_rest() {
        let old = Config::default();
        let mut new = old.clone();
        new.dsp.low.hi_hz = 200.0;
        new.fft.hop_frames = 256;
        new.fft.n_bins = 64;
        new.ws.port = 9999;
        new.ws.snapshot_hz = 30.0;
        let plan = reload_plan(&old, &new);
        assert_eq!(plan.applied.dsp.low.hi_hz, 200.0);
        assert_eq!(plan.applied.fft.n_bins, 64);
        assert_eq!(plan.applied.fft.hop_frames, old.fft.hop_frames);
        assert_eq!(plan.applied.ws.snapshot_hz, 30.0);
        assert_eq!(plan.applied.ws.port, old.ws.port);
        assert_eq!(plan.needs_restart, vec!["fft.hop-frames", "ws"]);
    }

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

    #[test]
    fn diff_says_what_can_be_applied_live() {
        let old = Config::default();
        let mut new = old.clone();
        assert_eq!(diff(&old, &new), Apply::Nothing);
        new.autoscale.strength = 0.5;
        new.ws.snapshot_hz = 30.0;
        assert_eq!(diff(&old, &new), Apply::Live);
        new.audio.device = "hw:1".into();
        assert_eq!(diff(&old, &new), Apply::RestartCapture);
        new.ws.port = 9999;
        assert_eq!(diff(&old, &new), Apply::RestartProcess);
    }
}
