//! `phase4 devices`: the capture PCMs alsa-lib knows, with what they support.

use alsa::device_name::HintIter;
use alsa::pcm::{Format, HwParams, PCM};
use alsa::Direction;
use serde::Serialize;

/// One capture device.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeviceEntry {
    /// Index in this listing (advisory; devices are stored by name).
    pub index: usize,
    /// PCM name to put in `audio.device`.
    pub name: String,
    /// Human description from alsa-lib.
    pub description: String,
    /// Whether it could be opened for capture just now.
    pub available: bool,
    /// Channel range.
    pub channels: Option<(u32, u32)>,
    /// Rate range.
    pub rates: Option<(u32, u32)>,
    /// Supported formats among those phase4 reads.
    pub formats: Vec<String>,
    /// Why it could not be opened.
    pub error: Option<String>,
}

/// What a probe finds: channel range, rate range, formats.
pub type Capabilities = (Option<(u32, u32)>, Option<(u32, u32)>, Vec<String>);

/// Probe one PCM for what it supports (opens and closes it).
pub fn probe(name: &str) -> Result<Capabilities, String> {
    let pcm = PCM::new(name, Direction::Capture, true).map_err(|e| e.to_string())?;
    let hwp = HwParams::any(&pcm).map_err(|e| e.to_string())?;
    let channels = hwp.get_channels_min().ok().zip(hwp.get_channels_max().ok());
    let rates = hwp.get_rate_min().ok().zip(hwp.get_rate_max().ok());
    let formats = [
        (Format::S16LE, "S16_LE"),
        (Format::S243LE, "S24_3LE"),
        (Format::S24LE, "S24_LE"),
        (Format::S32LE, "S32_LE"),
        (Format::FloatLE, "FLOAT_LE"),
    ]
    .iter()
    .filter(|(f, _)| hwp.test_format(*f).is_ok())
    .map(|(_, n)| n.to_string())
    .collect();
    Ok((channels, rates, formats))
}

/// Every capture PCM from alsa-lib's hints (plus "default"), with its
/// description, without opening any.
pub fn hints() -> Vec<(String, String)> {
    let mut names: Vec<(String, String)> = vec![("default".into(), "Default ALSA device".into())];
    if let Ok(hints) = HintIter::new_str(None, "pcm") {
        for h in hints {
            let capture = h.direction.is_none_or(|d| d == Direction::Capture);
            if let (true, Some(name)) = (capture, h.name) {
                if name != "default" && name != "null" {
                    let desc = h.desc.unwrap_or_default().replace('\n', " ");
                    names.push((name, desc));
                }
            }
        }
    }
    names
}

/// Whether a PCM name is a sound card's (`hw:CARD=…`, `plughw:CARD=…`,
/// `sysdefault:CARD=…`, …) rather than a plugin (`pulse`, `jack`, `dmix`…).
pub fn is_card(name: &str) -> bool {
    name.contains("CARD=") || name.starts_with("hw:") || name.starts_with("plughw:")
}

/// The card and device an ALSA name gives, with `CARD=` and `DEV=` or in
/// that order (`hw:1,0`, `plughw:Device`; device 0 when it says none).
pub fn card_device(name: &str) -> Option<(&str, u32)> {
    let (_, args) = name.split_once(':')?;
    let mut card = None;
    let mut dev = 0;
    for (i, arg) in args.split(',').enumerate() {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (Some(k), v),
            None => (None, arg),
        };
        match (key, i) {
            (Some("CARD"), _) | (None, 0) => card = Some(value),
            (Some("DEV"), _) | (None, 1) => dev = value.parse().ok()?,
            _ => {}
        }
    }
    card.filter(|c| !c.is_empty() && !c.contains(':'))
        .map(|c| (c, dev))
}

/// Every capture PCM from alsa-lib's hints (plus "default"), each probed.
pub fn list() -> Vec<DeviceEntry> {
    hints()
        .into_iter()
        .enumerate()
        .map(|(index, (name, description))| match probe(&name) {
            Ok((channels, rates, formats)) => DeviceEntry {
                index,
                name,
                description,
                available: true,
                channels,
                rates,
                formats,
                error: None,
            },
            Err(e) => DeviceEntry {
                index,
                name,
                description,
                available: false,
                channels: None,
                rates: None,
                formats: Vec::new(),
                error: Some(e),
            },
        })
        .collect()
}
