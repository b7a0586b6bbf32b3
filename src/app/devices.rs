//! Device listing, probing and switching for control ([`DeviceOps`]).
//!
//! Listing runs on the control thread (it opens the sound cards, quickly);
//! a probe, which listens to every device for a while, on a thread of its
//! own ([`crate::control::probe`]). Switching is a request to the
//! supervisor, which owns the capture thread: it stops it, starts one on
//! the new device and rolls back to the previous one when the new one
//! fails to open; control takes the outcome when it comes, without
//! waiting for it.

use crate::capture::alsa::AlsaSource;
use crate::capture::devices::card_device;
use crate::capture::{ReadOutcome, Source};
use crate::config::AudioConfig;
use crate::control::device::ListedDevice;
use crate::control::{DeviceItem, DeviceOps, Prober, SwitchOutcome};
use crate::stats::{DeviceInfo, HwDevice, Stats};
use crate::types::Block;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a probe listens to each device.
const PROBE_FOR: Duration = Duration::from_millis(300);
/// Peak above which a probe counts as signal (about −70 dBFS).
const PROBE_SIGNAL: f32 = 3.2e-4;

/// A device switch asked of the supervisor. The name is a
/// [`ListedDevice`]: one phase4 listed or the configuration names.
pub struct SwitchRequest {
    /// PCM to switch to.
    pub name: ListedDevice,
    /// Where the outcome goes.
    pub reply: Sender<Result<(), String>>,
}

/// [`DeviceOps`] for the live service.
pub struct AppDevices {
    audio: AudioConfig,
    switches: Sender<SwitchRequest>,
    /// What capture has open ([`in_use`]).
    stats: Arc<Stats>,
}

impl AppDevices {
    /// Devices are opened with `audio`'s format settings; switches go to
    /// the supervisor through `switches`; `stats` says which device capture
    /// has open.
    pub fn new(audio: AudioConfig, switches: Sender<SwitchRequest>, stats: Arc<Stats>) -> Self {
        AppDevices {
            audio,
            switches,
            stats,
        }
    }
}

/// The device capture runs on, or is opening or waiting for, and whether
/// it is open. A listing never opens it: a `hw` device answers a second
/// open "busy" (the device that worked was listed unavailable and silent,
/// and a listing at start could make capture's first open fail); it is
/// described from what capture opened instead. Before capture names one,
/// the configured device.
fn in_use(stats: &Stats, audio: &AudioConfig) -> Option<(DeviceInfo, bool)> {
    let up = stats.delivering();
    let mut d = stats
        .device
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if d.access == "wav" {
        return None;
    }
    if d.name.is_empty() {
        if !audio.input.is_empty() {
            return None;
        }
        d.name = audio.device.clone();
    }
    Some((d, up))
}

/// The capture PCM names phase4 enumerates (alsa-lib's hints and
/// "default"), without opening any.
pub fn listed_names() -> Vec<String> {
    crate::capture::alsa_log::while_listing(crate::capture::devices::hints)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// Open `name` (a name from [`crate::capture::devices::list`]) briefly and
/// report its peak level in dBFS.
pub fn probe_peak_dbfs(audio: &AudioConfig, name: &str) -> Result<f32, String> {
    let mut cfg = audio.clone();
    cfg.device = name.to_string();
    cfg.input.clear();
    let stop = nix::sys::eventfd::EventFd::from_value_and_flags(
        0,
        nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
    )
    .map_err(|e| e.to_string())?;
    let mut src = AlsaSource::open(&cfg, stop.as_raw_fd()).map_err(|e| e.to_string())?;
    let mut block = Box::new(Block::zeroed());
    let mut peak = 0.0f32;
    let t0 = Instant::now();
    let mut blocks = 0;
    while t0.elapsed() < PROBE_FOR && blocks < 400 {
        match src.read(&mut block) {
            Ok(ReadOutcome::Block) => {
                blocks += 1;
                peak = block.samples().iter().fold(peak, |m, x| m.max(x.abs()));
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(20.0 * peak.max(1e-8).log10())
}

/// [`list_devices`] with alsa-lib's messages meanwhile as debug lines.
fn listing(audio: &AudioConfig, stats: &Stats, probe: bool) -> Vec<DeviceItem> {
    let in_use = in_use(stats, audio).map(|(d, up)| (numbered_card(d), up));
    let t0 = Instant::now();
    if probe {
        stats.take_peak();
    }
    let mut items =
        crate::capture::alsa_log::while_listing(|| list_devices(audio, in_use.as_ref(), probe));
    let Some((d, true)) = in_use.filter(|_| probe) else {
        return items;
    };
    let mut mine = items
        .iter_mut()
        .filter(|i| captures(&d, &i.name))
        .peekable();
    if mine.peek().is_some() {
        // What capture delivered while the others were probed, over at
        // least the time a probe listens to a device.
        std::thread::sleep(PROBE_FOR.saturating_sub(t0.elapsed()));
        let peak = stats.take_peak();
        for item in mine {
            item.probed_signal = Some(peak.is_some_and(|db| db > signal_dbfs()));
            item.probed_peak_dbfs = peak.map(f64::from);
            item.probed_at = Some(unix_now());
        }
    }
    items
}

/// Whether capture, on `d`, holds the PCM `name`: the same name, or a name
/// on the same card and device (`hw:CARD=X,DEV=0`, `plughw:CARD=X,DEV=0`,
/// `sysdefault:CARD=X`, `hw:1,0`, ...), which would answer a second open
/// "busy". The card and device are capture's name's when it names them,
/// and the ones its PCM runs on once open (`d.hw`, by number or id: a
/// configuration's `default` or `plughw:1` is a listing's
/// `hw:CARD=Device,DEV=0`).
fn captures(d: &DeviceInfo, name: &str) -> bool {
    if d.name == name {
        return true;
    }
    let Some((card, dev)) = card_device(name) else {
        return false;
    };
    card_device(&d.name) == Some((card, dev))
        || d.hw.iter().any(|h| {
            h.device == dev && ((!h.id.is_empty() && h.id == card) || card.parse() == Ok(h.card))
        })
}

/// `d`, with the card its name gives by number (`hw:1,0`, `plughw:1`) as
/// the card it runs on while capture has not opened it yet: the listing
/// names that card by its id (`hw:CARD=Device,DEV=0`), and opening that
/// while capture opens its own name makes one of them "busy".
fn numbered_card(mut d: DeviceInfo) -> DeviceInfo {
    if d.hw.is_empty() {
        let card = card_device(&d.name).and_then(|(c, dev)| Some((c.parse::<u32>().ok()?, dev)));
        if let Some((card, device)) = card.filter(|(c, _)| *c < 64) {
            d.hw.push(HwDevice {
                card,
                id: crate::capture::chain::card_id(card),
                device,
            });
        }
    }
    d
}

/// [`PROBE_SIGNAL`] in dBFS.
fn signal_dbfs() -> f32 {
    20.0 * PROBE_SIGNAL.log10()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// [`DeviceOps::list`]'s work: the hints, the cards opened for what they
/// support, every hint opened and listened to with `probe`; the one
/// capture has open (`in_use`), and the other names of its card and device,
/// are not opened again: their entries carry the channels, rate and format
/// capture opened it with ([`listing`] adds their probe fields from what
/// capture delivered meanwhile), and a switch to one works (capture closes
/// the device before it opens the next). While capture is opening it or
/// waiting for it, they are listed unavailable, without opening them.
fn list_devices(
    audio: &AudioConfig,
    in_use: Option<&(DeviceInfo, bool)>,
    probe: bool,
) -> Vec<DeviceItem> {
    use crate::capture::devices::{hints, is_card, probe as capabilities};
    let want = audio.sample_rate_hz;
    hints()
        .into_iter()
        .enumerate()
        .map(|(index, (name, description))| {
            let card = is_card(&name);
            let mut item = DeviceItem {
                index,
                name,
                description,
                card,
                available: true,
                default_samplerate: want as f64,
                ..Default::default()
            };
            match in_use.filter(|(d, _)| captures(d, &item.name)) {
                Some((d, true)) => {
                    item.max_input_channels = d.channels;
                    item.default_samplerate = d.rate as f64;
                    item.formats = vec![d.format.clone()];
                    return item;
                }
                Some((_, false)) => {
                    item.available = false;
                    item.error = Some("capture is opening it, or waiting for it".into());
                    return item;
                }
                None => {}
            }
            if !(card || probe) {
                return item;
            }
            if let Some(why) = crate::capture::pcm_conf::opening_runs(&item.name) {
                // Listed as without a probe (it may well work when chosen),
                // with why it was not opened.
                item.error = Some(format!("not probed: {why}"));
                return item;
            }
            match capabilities(&item.name) {
                Ok((channels, rates, formats)) => {
                    item.max_input_channels = channels.map(|c| c.1).unwrap_or(0);
                    item.default_samplerate = match rates {
                        Some((lo, hi)) if (lo..=hi).contains(&want) => want,
                        Some((_, hi)) => hi,
                        None => want,
                    } as f64;
                    item.formats = formats;
                }
                Err(e) => {
                    item.available = false;
                    let held = crate::capture::holders::busy_detail(&item.name, &e);
                    item.error = Some(e + &held);
                }
            }
            if probe {
                match probe_peak_dbfs(audio, &item.name) {
                    Ok(db) => {
                        item.probed_signal = Some(db > signal_dbfs());
                        item.probed_peak_dbfs = Some(db as f64);
                    }
                    Err(e) => {
                        item.probed_signal = Some(false);
                        item.error.get_or_insert(e);
                    }
                }
                item.probed_at = Some(unix_now());
            }
            item
        })
        .collect()
}

impl DeviceOps for AppDevices {
    /// Sound cards are opened for what they support; ALSA's plugin devices
    /// (pulse, jack, dmix, ...) only with `probe`. Opening a plugin loads
    /// and starts its libraries (libpulse pulls in libX11, libgcrypt, ...):
    /// measured, a first client's greeting added 23 MiB to the resident
    /// memory (and 88 MiB at the peak) when every hint was opened.
    /// alsa-lib's complaints meanwhile are debug lines
    /// ([`crate::capture::alsa_log::while_listing`]): each entry carries its
    /// own error for the client that asked.
    fn list(&mut self, probe: bool) -> Vec<DeviceItem> {
        listing(&self.audio, &self.stats, probe)
    }

    /// A probe opens every device for [`PROBE_FOR`] (seconds with a few
    /// cards): it runs on a thread of its own, not on control's.
    fn prober(&self) -> Option<Prober> {
        let (audio, stats) = (self.audio.clone(), self.stats.clone());
        Some(Box::new(move || listing(&audio, &stats, true)))
    }

    fn listed_names(&mut self) -> Vec<String> {
        listed_names()
    }

    fn in_use_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        if let Some((d, up)) = in_use(&self.stats, &self.audio) {
            (d.name, d.format, d.rate, d.channels, d.hw, up).hash(&mut h);
        }
        h.finish()
    }

    fn switch(&mut self, device: &ListedDevice) -> Result<SwitchOutcome, String> {
        let (tx, rx): (Sender<Result<(), String>>, Receiver<_>) = std::sync::mpsc::channel();
        self.switches
            .send(SwitchRequest {
                name: device.clone(),
                reply: tx,
            })
            .map_err(|_| "the service is stopping".to_string())?;
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_of_the_card_and_device_in_use_are_recognised() {
        let on = |name: &str| DeviceInfo {
            name: name.into(),
            ..Default::default()
        };
        let usb = on("plughw:CARD=Device,DEV=0");
        for name in [
            "plughw:CARD=Device,DEV=0",
            "hw:CARD=Device,DEV=0",
            "sysdefault:CARD=Device",
            "dsnoop:CARD=Device,DEV=0",
        ] {
            assert!(captures(&usb, name), "{name}");
        }
        for name in [
            "hw:CARD=Device,DEV=1",
            "hw:CARD=Device2,DEV=0",
            "default",
            "hw:CARD=Device,DEV=x",
            "pulse",
        ] {
            assert!(!captures(&usb, name), "{name}");
        }
        // Without a card in the name only the name itself.
        assert!(captures(&on("default"), "default"));
        assert!(!captures(&on("default"), "sysdefault:CARD=Device"));
        assert!(!captures(&on("hw:0"), "hw:CARD=Device,DEV=0"));
        // Numbers in order.
        assert!(captures(&on("hw:1,0"), "plughw:1"));
        assert!(captures(&on("plughw:1,2,0"), "hw:CARD=1,DEV=2"));
        assert!(!captures(&on("hw:1,0"), "hw:1,1"));
        assert!(!captures(&on("plug:hw:1"), "plug:hw:2"));
    }

    #[test]
    fn the_card_and_device_capture_runs_on_are_recognised_under_any_name() {
        // `default` on card 1 ("Device"), device 0, as alsa-lib reports it.
        let d = |id: &str| DeviceInfo {
            name: "default".into(),
            hw: vec![HwDevice {
                card: 1,
                id: id.into(),
                device: 0,
            }],
            ..Default::default()
        };
        for name in [
            "default",
            "hw:CARD=Device,DEV=0",
            "plughw:CARD=Device,DEV=0",
            "sysdefault:CARD=Device",
            "dsnoop:CARD=Device,DEV=0",
            "hw:1,0",
            "plughw:1",
            "hw:CARD=1,DEV=0",
        ] {
            assert!(captures(&d("Device"), name), "{name}");
        }
        for name in [
            "hw:CARD=Device,DEV=1",
            "hw:CARD=Other,DEV=0",
            "hw:0",
            "hw:1,1",
            "pulse",
            "hw:CARD=,DEV=0",
        ] {
            assert!(!captures(&d("Device"), name), "{name}");
        }
        // A card whose id could not be asked: by number only.
        assert!(captures(&d(""), "hw:1,0"));
        assert!(!captures(&d(""), "hw:CARD=Device,DEV=0"));
        assert!(!captures(&d(""), "hw:CARD=,DEV=0"));
    }
}
