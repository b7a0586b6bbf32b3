//! The WebSocket wire protocol: every message type as serde types, in one
//! place. docs/protocol.md documents the same messages for client authors.
//!
//! Baseline: the Python feature server's protocol, field for field. phase4's
//! additions are new fields on existing messages and new message types;
//! nothing is renamed. Inbound messages deny unknown fields, so a typo is an
//! error reply rather than a silent no-op.

use crate::control::{Command, DeviceItem};
use serde::{Deserialize, Serialize};

/// Binary FFT frame type byte.
pub const FFT_FRAME_TYPE: u8 = 1;

/// Every inbound (client → server) message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)]
pub enum Inbound {
    SetFft {
        enabled: bool,
    },
    SetBand {
        band: BandName,
        lo_hz: f64,
        hi_hz: f64,
        #[serde(default)]
        commit: Option<bool>,
    },
    SetSmoothing {
        #[serde(deserialize_with = "object_only")]
        tau: Taus,
        #[serde(default)]
        commit: Option<bool>,
    },
    SetAutoscale {
        #[serde(default)]
        tau_attack_s: Option<f64>,
        #[serde(default)]
        tau_release_s: Option<f64>,
        #[serde(default)]
        noise_floor: Option<f64>,
        #[serde(default)]
        strength: Option<f64>,
        #[serde(default)]
        commit: Option<bool>,
    },
    SetFftSendRawDb {
        send_raw_db: bool,
    },
    SetFftPeakSmear {
        peak_smear_oct: f64,
        #[serde(default)]
        commit: Option<bool>,
    },
    ListDevices {
        #[serde(default)]
        probe: Option<bool>,
    },
    SetDevice {
        #[serde(default)]
        index: Option<i64>,
        #[serde(default)]
        name: Option<String>,
    },
    SetNFftBins {
        n: i64,
    },
    SetWsSnapshotHz {
        hz: f64,
        #[serde(default)]
        commit: Option<bool>,
    },
    ListPresets {},
    SavePreset {
        name: String,
    },
    LoadPreset {
        name: String,
    },
    /// phase4: delete a preset.
    DeletePreset {
        name: String,
    },
    /// phase4: onset detector settings.
    SetOnset {
        #[serde(default)]
        enabled: Option<bool>,
        #[serde(default)]
        sensitivity: Option<f64>,
        #[serde(default)]
        min_gap_s: Option<f64>,
        #[serde(default)]
        commit: Option<bool>,
    },
    /// phase4: tempo tracker settings.
    SetTempo {
        #[serde(default)]
        enabled: Option<bool>,
        #[serde(default)]
        min_bpm: Option<f64>,
        #[serde(default)]
        max_bpm: Option<f64>,
        #[serde(default)]
        lock_confidence: Option<f64>,
        #[serde(default)]
        commit: Option<bool>,
    },
    /// phase4: present the control token after connecting.
    Auth {
        token: String,
    },
}

/// `"low" | "mid" | "high"`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum BandName {
    Low,
    Mid,
    High,
}

/// A nested value that must be a JSON object: serde would otherwise take
/// `[0.1]` for `{"low": 0.1}` (structs also deserialize from sequences).
fn object_only<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error;
    let v = serde_json::Value::deserialize(d)?;
    if !v.is_object() {
        return Err(D::Error::custom(
            "must be an object with named fields, e.g. {\"low\": 0.1}",
        ));
    }
    serde_json::from_value(v).map_err(D::Error::custom)
}

/// `set_smoothing.tau`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Taus {
    #[serde(default)]
    pub low: Option<f64>,
    #[serde(default)]
    pub mid: Option<f64>,
    #[serde(default)]
    pub high: Option<f64>,
}

/// What a parsed inbound message asks for.
pub enum Action {
    /// A control command.
    Command(Command),
    /// A token to check.
    Auth(String),
}

impl Inbound {
    /// The command this message carries. `commit` defaults to true: a
    /// client that does not know about dragging gets its change saved soon.
    pub fn into_action(self) -> Action {
        let c = |commit: Option<bool>| commit.unwrap_or(true);
        Action::Command(match self {
            Inbound::SetFft { enabled } => Command::SetFft { enabled },
            Inbound::SetBand {
                band,
                lo_hz,
                hi_hz,
                commit,
            } => Command::SetBand {
                band: band as usize,
                lo_hz,
                hi_hz,
                commit: c(commit),
            },
            Inbound::SetSmoothing { tau, commit } => Command::SetSmoothing {
                tau: [tau.low, tau.mid, tau.high],
                commit: c(commit),
            },
            Inbound::SetAutoscale {
                tau_attack_s,
                tau_release_s,
                noise_floor,
                strength,
                commit,
            } => Command::SetAutoscale {
                tau_attack_s,
                tau_release_s,
                noise_floor,
                strength,
                commit: c(commit),
            },
            Inbound::SetFftSendRawDb { send_raw_db } => Command::SetFftSendRawDb { send_raw_db },
            Inbound::SetFftPeakSmear {
                peak_smear_oct,
                commit,
            } => Command::SetFftPeakSmear {
                peak_smear_oct,
                commit: c(commit),
            },
            Inbound::ListDevices { probe } => Command::ListDevices {
                probe: probe.unwrap_or(false),
            },
            Inbound::SetDevice { index, name } => Command::SetDevice { index, name },
            Inbound::SetNFftBins { n } => Command::SetNFftBins { n },
            Inbound::SetWsSnapshotHz { hz, commit } => Command::SetWsSnapshotHz {
                hz,
                commit: c(commit),
            },
            Inbound::ListPresets {} => Command::ListPresets,
            Inbound::SavePreset { name } => Command::SavePreset { name },
            Inbound::LoadPreset { name } => Command::LoadPreset { name },
            Inbound::DeletePreset { name } => Command::DeletePreset { name },
            Inbound::SetOnset {
                enabled,
                sensitivity,
                min_gap_s,
                commit,
            } => Command::SetOnset {
                enabled,
                sensitivity,
                min_gap_s,
                commit: c(commit),
            },
            Inbound::SetTempo {
                enabled,
                min_bpm,
                max_bpm,
                lock_confidence,
                commit,
            } => Command::SetTempo {
                enabled,
                min_bpm,
                max_bpm,
                lock_confidence,
                commit: c(commit),
            },
            Inbound::Auth { token } => return Action::Auth(token),
        })
    }
}

/// Parse one inbound text message; the error is the reason to send back.
pub fn parse(text: &str) -> Result<Inbound, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("message must be a JSON object with a \"type\"".into());
    };
    match obj.get("type") {
        Some(serde_json::Value::String(_)) => {}
        Some(_) => return Err("\"type\" must be a string".into()),
        None => return Err("missing \"type\"".into()),
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
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
}

/// `meta.device`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeviceMeta {
    /// Index in the last listing (null when not listed, e.g. a WAV input).
    pub index: Option<usize>,
    /// PCM name, or the WAV path.
    pub name: String,
}

/// `meta.onset` (phase4).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[allow(missing_docs)]
pub struct OnsetMeta {
    pub enabled: bool,
    pub sensitivity: f64,
    pub min_gap_s: f64,
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
    pub tau: Lmh<f64>,
    pub autoscale: AutoscaleMeta,
    pub ws_snapshot_hz: f64,
    pub device: DeviceMeta,
    // phase4 additions.
    pub fft_window: u32,
    pub fft_hop: u32,
    pub onset: OnsetMeta,
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
    pub t: f64,
    // phase4 additions.
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probed_at: Option<f64>,
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
            probed_at: d.probed_at,
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
    pub saved_at: f64,
}

/// `server_status.perf.<thread>`.
#[derive(Clone, Copy, Debug, Serialize, Default)]
pub struct Perf {
    /// Average CPU time per unit of work (block, hop, snapshot), ms.
    pub avg_ms: f64,
    /// phase4 does not time single blocks: always null.
    pub p95_ms: Option<f64>,
    /// CPU of that thread, percent of one core.
    pub load_pct: f64,
}

/// `server_status.perf`.
#[derive(Clone, Copy, Debug, Serialize, Default)]
#[allow(missing_docs)]
pub struct PerfAll {
    pub cb: Perf,
    pub dsp: Perf,
    pub fft: Perf,
    pub ws: Perf,
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
    fn python_messages_parse() {
        for m in [
            r#"{"type":"set_fft","enabled":true}"#,
            r#"{"type":"set_band","band":"mid","lo_hz":200,"hi_hz":4000,"commit":true}"#,
            r#"{"type":"set_smoothing","tau":{"low":0.2}}"#,
            r#"{"type":"set_autoscale","strength":0.5}"#,
            r#"{"type":"list_devices","probe":true}"#,
            r#"{"type":"list_devices"}"#,
            r#"{"type":"list_presets"}"#,
            r#"{"type":"set_device","index":2}"#,
        ] {
            assert!(parse(m).is_ok(), "{m}: {:?}", parse(m).err());
        }
    }

    #[test]
    fn bad_messages_are_refused_with_a_reason() {
        for m in [
            "not json",
            "[]",
            r#"{"enabled":true}"#,
            r#"{"type":"nope"}"#,
            r#"{"type":"set_fft"}"#,
            r#"{"type":"set_fft","enabled":true,"extra":1}"#,
            r#"{"type":"set_fft","enabled":"yes"}"#,
            r#"{"type":"set_band","band":"bass","lo_hz":20,"hi_hz":200}"#,
            r#"{"type":"set_ws_snapshot_hz","hz":NaN}"#,
            r#"{"type":"set_ws_snapshot_hz","hz":Infinity}"#,
            r#"{"type":"set_ws_snapshot_hz","hz":1e999}"#,
            r#"{"type":"set_smoothing","tau":{"sub":0.1}}"#,
            r#"{"type":"list_presets","x":1}"#,
            r#"{"type":"set_smoothing","tau":[0.1]}"#,
            r#"{"type":"set_smoothing","tau":[0.1,0.2,0.3]}"#,
            r#"{"type":"set_smoothing","tau":0.1}"#,
            r#"{"type":"set_smoothing","tau":null}"#,
            r#"{"type":"set_smoothing","tau":{"low":[0.1]}}"#,
        ] {
            assert!(parse(m).is_err(), "{m} accepted");
        }
    }

    #[test]
    fn error_reasons_are_bounded() {
        let m = format!(r#"{{"type":"{}"}}"#, "x".repeat(100_000));
        let e = parse(&m).unwrap_err();
        let json = Outbound::error(e).to_json();
        assert!(json.len() < 400, "{}", json.len());
        assert_eq!(truncate("aé", 2), "a");
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
