//! `[audio]`: the capture device or input file, its format, rate, block
//! size and channels, and what to do when the device is missing.

use serde::{Deserialize, Serialize};

/// Longest ALSA PCM name phase4 takes, from the config file, `--device` or
/// a client's `set_device` (alsa-lib's hint names are far shorter; the name
/// goes whole into log lines and systemd's STATUS=).
pub const MAX_DEVICE_NAME: usize = 256;

/// What is wrong with `name` as an ALSA PCM name phase4 would open and
/// report, or `None`: too long, or a control character (a newline would
/// start another assignment in STATUS=). Empty names are the caller's
/// business (`audio.device` may be empty when `audio.input` is set).
pub fn device_name_problem(name: &str) -> Option<String> {
    if name.len() > MAX_DEVICE_NAME {
        Some(format!(
            "an ALSA PCM name of at most {MAX_DEVICE_NAME} bytes (this one has {})",
            name.len()
        ))
    } else if name.chars().any(char::is_control) {
        Some("an ALSA PCM name without control characters (NUL, newline, tab)".into())
    } else {
        None
    }
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
