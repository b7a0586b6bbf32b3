//! The WebSocket wire protocol: every message type as serde types, in one
//! place. docs/protocol.md documents the same messages for client authors.
//!
//! Baseline: the Python feature server's protocol, field for field. phase4's
//! additions are new fields on existing messages and new message types;
//! nothing is renamed. Inbound messages are read as the Python server reads
//! them (see [`super::parse`]).

pub use super::localtime::local_time;
use crate::control::{Command, DeviceItem};
use serde::Serialize;

/// Binary FFT frame type byte.
pub const FFT_FRAME_TYPE: u8 = 1;

pub use super::parse::parse;

/// What a parsed inbound message asks for.
pub enum Action {
    /// A control command.
    Command(Command),
    /// A token to check.
    Auth(String),
}

// ---------------------------------------------------------------- outbound

/// `{lo_hz, hi_hz}`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[allow(missing_docs)]
pub struct BandEdges {
    pub lo_hz: f64,
    pub hi_hz: f64,
}

/// Low/mid/high of something.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[allow(missing_docs)]
pub struct Lmh<T> {
    pub low: T,
    pub mid: T,
    pub high: T,
}

/// `meta.autoscale`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[allow(missing_docs)]
pub struct AutoscaleMeta {
    pub tau_attack_s: f64,
    pub tau_release_s: f64,
    pub noise_floor: f64,
    pub strength: f64,
    pub master_gain: f64,
}

/// `meta.device`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeviceMeta {
    /// Index in the last listing (null when not listed, e.g. a WAV input).
    pub index: Option<usize>,
    /// PCM name, or the WAV path.
    pub name: String,
}

/// One band's detector in `meta.onset`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[allow(missing_docs)]
pub struct BandOnsetMeta {
    pub sensitivity: f64,
    pub refractory_s: f64,
    pub slow_tau_s: f64,
    pub abs_floor: f64,
}

/// `meta.onset`: the Python server's per-band detectors (`low`, `mid`,
/// `high`), and phase4's broadband detector's settings beside them.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[allow(missing_docs)]
pub struct OnsetMeta {
    pub low: BandOnsetMeta,
    pub mid: BandOnsetMeta,
    pub high: BandOnsetMeta,
    pub enabled: bool,
    pub sensitivity: f64,
    pub min_gap_s: f64,
}

/// `meta.ui_layout`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[allow(missing_docs)]
pub struct UiLayoutMeta {
    pub split_x: f64,
    pub split_y: f64,
    pub quadrants: [&'static str; 4],
}

/// `meta.tempo` (phase4).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[allow(missing_docs)]
pub struct TempoMeta {
    pub enabled: bool,
    pub min_bpm: f64,
    pub max_bpm: f64,
    pub lock_confidence: f64,
}

/// `meta.silence` (phase4).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[allow(missing_docs)]
pub struct SilenceMeta {
    pub threshold_dbfs: f64,
    pub hold_s: f64,
}

/// One OSC destination in `meta.osc` (phase4).
#[derive(Clone, Debug, Serialize, PartialEq)]
#[allow(missing_docs)]
pub struct OscDest {
    pub host: String,
    pub port: u16,
}

/// `meta.osc` (phase4).
#[derive(Clone, Debug, Serialize, PartialEq)]
#[allow(missing_docs)]
pub struct OscMeta {
    pub enabled: bool,
    pub prefix: String,
    pub send_fft: bool,
    pub destinations: Vec<OscDest>,
}

/// The current settings: the source of truth for clients.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[allow(missing_docs)]
pub struct Meta {
    pub sr: u32,
    pub blocksize: u32,
    pub n_fft_bins: u32,
    pub bands: Lmh<BandEdges>,
    pub fft_enabled: bool,
    pub fft_db_floor: f64,
    pub fft_db_ceiling: f64,
    pub fft_f_min: f64,
    pub fft_send_raw_db: bool,
    pub fft_peak_smear_oct: f64,
    pub fft_tilt_db_per_oct: f64,
    pub fft_window_size: u32,
    pub tau: Lmh<f64>,
    pub tau_attack: Lmh<f64>,
    pub filter_order: u32,
    pub autoscale: AutoscaleMeta,
    pub onset: OnsetMeta,
    pub ws_snapshot_hz: u32,
    pub ui_peak_decay_per_s: f64,
    pub ui_show_onsets: bool,
    pub ui_fft_view: &'static str,
    pub ui_fft3d_style: &'static str,
    pub ui_palette: &'static str,
    pub ui_layout: UiLayoutMeta,
    pub device: DeviceMeta,
    // phase4 additions.
    pub fft_window: u32,
    pub fft_hop: u32,
    pub tempo: TempoMeta,
    pub silence: SilenceMeta,
    pub osc: OscMeta,
    pub auth_required: bool,
    pub version: &'static str,
}

/// `snapshot.level` (phase4).
#[derive(Clone, Copy, Debug, Serialize)]
#[allow(missing_docs)]
pub struct Level {
    pub rms_dbfs: f32,
    pub peak_dbfs: f32,
}

/// `snapshot.tempo` (phase4).
#[derive(Clone, Copy, Debug, Serialize)]
#[allow(missing_docs)]
pub struct Tempo {
    pub bpm: f32,
    pub confidence: f32,
    pub phase: f32,
    pub locked: bool,
}

/// `snapshot.spectral` (phase4).
#[derive(Clone, Copy, Debug, Serialize)]
#[allow(missing_docs)]
pub struct Spectral {
    pub centroid_hz: f32,
    pub flatness: f32,
    pub rolloff_hz: f32,
    pub flux: f32,
}

/// L/M/H at the snapshot rate.
#[derive(Clone, Copy, Debug, Serialize)]
#[allow(missing_docs)]
pub struct Snapshot {
    pub seq: u64,
    pub low: f32,
    pub mid: f32,
    pub high: f32,
    pub low_raw: f32,
    pub mid_raw: f32,
    pub high_raw: f32,
    pub low_onset: u8,
    pub mid_onset: u8,
    pub high_onset: u8,
    pub bpm: f32,
    /// Milliseconds since the server started (the Python server's unit).
    pub t: f64,
    // phase4 additions.
    /// Stream time of the newest block, seconds since capture started.
    pub t_stream: f64,
    pub level: Level,
    pub tempo: Tempo,
    pub silent: bool,
    pub band_onsets: Lmh<u32>,
    pub onset_count: u32,
    pub beat_index: u32,
    pub spectral: Spectral,
}

/// One device in `devices.items`.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct DeviceJson {
    pub index: usize,
    pub name: String,
    pub hostapi: &'static str,
    pub default_samplerate: f64,
    pub max_input_channels: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probed_signal: Option<bool>,
    /// Local time of the probe, `"HH:MM:SS"` (as the Python server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probed_at: Option<String>,
    // phase4 additions.
    pub description: String,
    /// A sound card rather than an ALSA plugin device (plugins are opened
    /// only by a probe; until then `available` is assumed).
    pub card: bool,
    pub available: bool,
    pub formats: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probed_peak_dbfs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&DeviceItem> for DeviceJson {
    fn from(d: &DeviceItem) -> Self {
        DeviceJson {
            index: d.index,
            name: d.name.clone(),
            hostapi: "ALSA",
            default_samplerate: d.default_samplerate,
            max_input_channels: d.max_input_channels,
            probed_signal: d.probed_signal,
            probed_at: d.probed_at.map(|t| local_time(t, "%H:%M:%S")),
            description: d.description.clone(),
            card: d.card,
            available: d.available,
            formats: d.formats.clone(),
            probed_peak_dbfs: d.probed_peak_dbfs,
            error: d.error.clone(),
        }
    }
}

/// One preset in `presets.items`.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct PresetJson {
    pub name: String,
    /// Local time of the save, `"YYYY-MM-DD HH:MM"` (as the Python server).
    pub saved_at: String,
}

/// One clamped value in a reply's `clamped` list (phase4).
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct ClampedJson {
    pub field: String,
    pub requested: f64,
    pub applied: f64,
}

/// `meta_json` (a meta message) with phase4's `clamped` key added: what the
/// command that caused it carried out of range, and what was applied.
pub fn with_clamped(meta_json: &str, list: &[crate::control::Clamped]) -> String {
    let items: Vec<ClampedJson> = list
        .iter()
        .map(|c| ClampedJson {
            field: truncate(&c.field, 64).to_string(),
            requested: c.requested,
            applied: c.applied,
        })
        .collect();
    let clamped = serde_json::to_string(&items).unwrap_or_else(|_| "[]".into());
    match meta_json.strip_suffix('}') {
        Some(head) if head.len() > 1 => format!("{head},\"clamped\":{clamped}}}"),
        _ => format!("{{\"type\":\"meta\",\"clamped\":{clamped}}}"),
    }
}

/// `server_status.perf.<thread>`.
#[derive(Clone, Copy, Debug, Serialize, Default)]
pub struct Perf {
    /// Average CPU time per unit of work (block, hop, snapshot), ms.
    pub avg_ms: f64,
    /// 95th percentile of `avg_ms` over the last status periods (phase4
    /// times threads per period, not single blocks; see docs/protocol.md).
    pub p95_ms: f64,
    /// CPU of that thread, percent of one core.
    pub load_pct: f64,
    /// Only on `fft` and `fft_e2e`: the spectrum is computed (and sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `server_status.perf`.
#[derive(Clone, Copy, Debug, Serialize, Default)]
#[allow(missing_docs)]
pub struct PerfAll {
    pub cb: Perf,
    pub dsp: Perf,
    pub fft: Perf,
    pub ws: Perf,
    pub lmh_e2e: Perf,
    pub fft_e2e: Perf,
    pub block_period_ms: f64,
    pub hop_period_ms: f64,
    pub ws_period_ms: f64,
}

/// `server_status.latency_ms` (phase4): capture → OSC send.
#[derive(Clone, Copy, Debug, Serialize, Default)]
#[allow(missing_docs)]
pub struct LatencyMs {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub n: u64,
}

/// `server_status.ring_drops` (phase4).
#[derive(Clone, Copy, Debug, Serialize, Default)]
#[allow(missing_docs)]
pub struct RingDrops {
    pub bands: u64,
    pub spectrum: u64,
}

/// `server_status.realtime` (phase4).
#[derive(Clone, Copy, Debug, Serialize, Default)]
#[allow(missing_docs)]
pub struct Realtime {
    pub capture: &'static str,
    pub workers: &'static str,
    pub mlock: &'static str,
    /// The CPU capture, workers and OSC sender share (`realtime.cpu`);
    /// `null` when the scheduler places them.
    pub cpu: Option<u32>,
}

/// `server_status.device` (phase4).
#[derive(Clone, Debug, Serialize, Default)]
#[allow(missing_docs)]
pub struct DeviceStatus {
    pub name: String,
    pub up: bool,
    pub rate: u32,
    pub format: String,
    pub access: String,
    pub channels: u32,
    pub period: u32,
    /// phase4: whether the device has a clock (false: the null plugin at the
    /// end of its chain; lossless, never real-time).
    pub clocked: bool,
    /// phase4: suspends recovered since start.
    pub suspends: u64,
    /// phase4: times the device went away and was reopened since start.
    pub reopens: u64,
}

/// Diagnostics at 2 Hz.
#[derive(Clone, Debug, Serialize, Default)]
#[allow(missing_docs)]
pub struct ServerStatus {
    pub cb_overruns: u64,
    pub dsp_drops: u64,
    pub fft_drops: u64,
    pub perf: PerfAll,
    // phase4 additions.
    pub xruns: u64,
    pub ring_drops: RingDrops,
    pub frame_drops: u64,
    pub ws_drops: u64,
    pub latency_ms: LatencyMs,
    pub realtime: Realtime,
    pub clients: u32,
    pub device: DeviceStatus,
    pub cpu_pct: std::collections::BTreeMap<&'static str, f64>,
    pub process_cpu_pct: f64,
    pub osc_sent: u64,
    pub osc_failed: u64,
    pub uptime_s: f64,
    /// phase4: the monitor stream and the recorder (absent without them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<super::audio::MonitorStatus>,
    /// The rig outputs that are on (mDNS, OSCQuery, Link, MIDI, WLED);
    /// absent when none is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rig: Option<crate::rig::status::RigStatus>,
}

/// Every outbound JSON message.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Outbound<'a> {
    Meta(&'a Meta),
    Snapshot(&'a Snapshot),
    Devices {
        items: Vec<DeviceJson>,
        /// phase4: the list was cut to fit one message.
        truncated: bool,
    },
    Presets {
        items: Vec<PresetJson>,
        /// phase4: not every preset is listed (too many, or cut to fit).
        truncated: bool,
    },
    ServerStatus(&'a ServerStatus),
    Error {
        reason: String,
    },
    /// phase4: a band or broadband onset.
    Onset {
        band: &'static str,
        t: f64,
        strength: f32,
        count: u32,
    },
    /// phase4: a beat.
    Beat {
        index: u32,
        bpm: f32,
        confidence: f32,
        t: f64,
    },
    /// phase4: answer to `auth`, and sent on connect.
    Auth {
        authorized: bool,
        required: bool,
    },
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Longest error reason sent (serde's messages can quote the input).
pub const MAX_REASON: usize = 300;

impl Outbound<'_> {
    /// An error reply, its reason cut to [`MAX_REASON`] bytes.
    pub fn error(reason: String) -> Self {
        let reason = if reason.len() > MAX_REASON {
            format!("{}…", truncate(&reason, MAX_REASON))
        } else {
            reason
        };
        Outbound::Error { reason }
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| "{\"type\":\"error\",\"reason\":\"encoding\"}".into())
    }
}

/// The binary FFT frame: `[1:u8][0:u8][n:u16 LE][f32 × n LE]`.
pub fn fft_frame(bins: &[f32], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(4 + 4 * bins.len());
    out.push(FFT_FRAME_TYPE);
    out.push(0);
    out.extend_from_slice(&(bins.len() as u16).to_le_bytes());
    for b in bins {
        out.extend_from_slice(&b.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reasons_are_bounded() {
        let m = format!(r#"{{"type":"{}"}}"#, "x".repeat(100_000));
        let Err(e) = super::super::parse::parse(&m) else {
            panic!("accepted")
        };
        let json = Outbound::error(e).to_json();
        assert!(json.len() < 400, "{}", json.len());
        assert_eq!(truncate("aé", 2), "a");
    }

    #[test]
    fn clamped_values_are_added_to_a_meta_as_json() {
        let list = [crate::control::Clamped {
            field: "strength".into(),
            requested: 1.5,
            applied: 1.0,
        }];
        let v: serde_json::Value =
            serde_json::from_str(&with_clamped(r#"{"type":"meta","sr":48000}"#, &list)).unwrap();
        assert_eq!(v["sr"], 48000);
        assert_eq!(v["clamped"][0]["field"], "strength");
        assert_eq!(v["clamped"][0]["applied"], 1.0);
        let v: serde_json::Value = serde_json::from_str(&with_clamped("", &list)).unwrap();
        assert_eq!(v["type"], "meta");
    }

    #[test]
    fn times_are_local_time_strings_as_the_python_server_sends_them() {
        let d = local_time(1_764_504_834.0, "%Y-%m-%d %H:%M");
        assert_eq!(d.len(), 16, "{d}");
        assert!(
            d.starts_with("2025-11-") || d.starts_with("2025-12-"),
            "{d}"
        );
        let t = local_time(1_764_504_834.7, "%H:%M:%S");
        assert_eq!(t.len(), 8, "{t}");
        assert_eq!(local_time(f64::NAN, "%H"), "");
    }

    #[test]
    fn fft_frame_has_the_python_layout() {
        let mut out = Vec::new();
        fft_frame(&[1.0, 0.5], &mut out);
        assert_eq!(&out[..4], &[1, 0, 2, 0]);
        assert_eq!(f32::from_le_bytes(out[4..8].try_into().unwrap()), 1.0);
        assert_eq!(out.len(), 12);
    }
}
