//! `[monitor]` (the Opus monitor stream) and `[record]` (recordings and
//! the replay buffer).

use serde::{Deserialize, Serialize};

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
    /// Seconds a download link is good for until its first use (which
    /// pins it to that address for an hour).
    pub link_s: f64,
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
            link_s: 60.0,
        }
    }
}
