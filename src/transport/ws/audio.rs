//! The monitor family of WebSocket messages (docs/protocol.md, "Monitor
//! stream" and "Recordings"): listening to the Opus stream, and the
//! recording commands, which go to `p4-record`.
//!
//! Who may: listening and every recording command need the same
//! authorization as changing settings, the control token from another
//! machine (loopback is trusted with `ws.trust-loopback`). Watching the
//! features is open to the LAN; what the microphone hears is not.
//!
//! Fan-out: each Opus packet is framed once and queued to every listener of
//! its preset through the client's bounded frame queue, so a slow listener
//! loses its oldest frames and nobody else notices.

use super::server::answers::bounded_list;
use super::server::Broadcaster;
use crate::monitor::files::Listing;
use crate::monitor::recorder::{RecCommand, RecMsg, RecRequest};
use crate::monitor::{MonitorLink, Preset, RecorderStatus};
use ringbuf::traits::Consumer;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::mpsc::TrySendError;
use std::time::Instant;
use tungstenite::Message;

/// The message types of this family.
const TYPES: [&str; 8] = [
    "subscribe_audio",
    "unsubscribe_audio",
    "start_recording",
    "stop_recording",
    "save_replay",
    "list_recordings",
    "delete_recording",
    "download_recording",
];

const NEEDS_TOKEN: &str = "not authorized: listening and recording from another machine need the control token (sudo phase4 token); send {\"type\":\"auth\",\"token\":\"...\"} first";

/// Inbound messages of the family.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum AudioInbound {
    SubscribeAudio {
        #[serde(default)]
        quality: Option<String>,
    },
    UnsubscribeAudio {},
    StartRecording {},
    StopRecording {},
    SaveReplay {
        #[serde(default)]
        seconds: Option<f64>,
    },
    ListRecordings {},
    DeleteRecording {
        name: String,
    },
    DownloadRecording {
        name: String,
    },
}

/// `server_status.monitor` and the `state` of `recordings`.
#[derive(Clone, Debug, Serialize, Default)]
pub struct MonitorStatus {
    /// Listeners per preset.
    pub listeners: PerPreset<u32>,
    /// Opus packets made per preset since start.
    pub packets: PerPreset<u64>,
    /// Packets dropped before the broadcaster (it fell behind).
    pub packet_drops: u64,
    /// Blocks capture dropped for the monitor (it fell behind).
    pub ring_drops: u64,
    /// CPU of `p4-monitor` over the last interval, percent of one core.
    pub cpu_pct: f64,
    /// Time spent in the Opus encoder since start, s.
    pub encode_s: f64,
    /// The recorder; only for authorized clients (absent for the others).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecorderStatus>,
}

/// Something per preset.
#[derive(Clone, Copy, Debug, Serialize, Default)]
#[allow(missing_docs)]
pub struct PerPreset<T> {
    pub low: T,
    pub medium: T,
    pub high: T,
    pub ultra: T,
}

impl<T: Copy> PerPreset<T> {
    fn from_fn(f: impl Fn(usize) -> T) -> Self {
        PerPreset {
            low: f(0),
            medium: f(1),
            high: f(2),
            ultra: f(3),
        }
    }
}

/// One recording in `recordings.items`.
#[derive(Serialize)]
#[allow(missing_docs)]
struct RecordingJson {
    name: String,
    kind: &'static str,
    bytes: u64,
    seconds: f64,
    sample_rate: u32,
    bits: u16,
}

/// Outbound messages of the family.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum AudioOutbound {
    AudioSubscribed {
        quality: &'static str,
        bitrate: i32,
        codec: &'static str,
        sample_rate: u32,
        channels: u32,
        frame_ms: u32,
        /// CLOCK_MONOTONIC ns now, for the client's clock estimate.
        server_ns: u64,
    },
    AudioUnsubscribed {},
    Recordings {
        items: Vec<RecordingJson>,
        truncated: bool,
        state: RecorderStatus,
    },
    ReplaySaved {
        name: String,
        seconds: f64,
    },
    RecordingDownload {
        name: String,
        url: String,
        expires_s: u64,
    },
}

impl AudioOutbound {
    fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| "{\"type\":\"error\",\"reason\":\"encoding\"}".into())
    }
}

/// The `recordings` message: newest first, as many as fit in
/// 64 KiB like the other lists (1000 items with long names made
/// about 118 KB, sent to every authorized client after every recorder
/// command).
fn listing_json(l: Listing, state: RecorderStatus) -> String {
    let state_bytes = serde_json::to_string(&state).map_or(0, |s| s.len());
    bounded_list(
        &l.items,
        state_bytes,
        |i| RecordingJson {
            kind: i.name.kind().name(),
            name: i.name.to_string(),
            bytes: i.bytes,
            seconds: i.seconds,
            sample_rate: i.sample_rate,
            bits: i.bits,
        },
        |items, cut| {
            AudioOutbound::Recordings {
                items,
                truncated: cut || l.truncated,
                state: state.clone(),
            }
            .to_json()
        },
    )
}

fn render(msg: RecMsg) -> String {
    match msg {
        RecMsg::Recordings(l, s) => listing_json(l, s),
        RecMsg::Saved { name, seconds } => AudioOutbound::ReplaySaved {
            name: name.to_string(),
            seconds,
        }
        .to_json(),
        RecMsg::Download {
            name,
            ticket,
            expires_s,
        } => AudioOutbound::RecordingDownload {
            url: format!("/recordings/{name}?ticket={ticket}"),
            name: name.to_string(),
            expires_s,
        }
        .to_json(),
        RecMsg::Error(e) => super::protocol::Outbound::error(e).to_json(),
    }
}

/// Keeps the previous CPU reading of `p4-monitor`.
#[derive(Default)]
pub(super) struct AudioStatus {
    cpu_s: f64,
    at: Option<Instant>,
    /// The last interval's figure (for a greeting between two intervals).
    cpu_pct: f64,
}

impl Broadcaster {
    /// A message of this family from client `i`: `None` when `text` is not
    /// one (the caller goes on), else whether it was taken or why not.
    pub(super) fn audio_inbound(&mut self, i: usize, text: &str) -> Option<Result<(), String>> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let ty = v.get("type")?.as_str()?;
        if !TYPES.contains(&ty) {
            return None;
        }
        let Some(link) = self.ctx.monitor.as_ref() else {
            return Some(Err("the monitor is off on this server (ws disabled)".into()));
        };
        if !self.clients[i].authorized {
            return Some(Err(NEEDS_TOKEN.into()));
        }
        let msg: AudioInbound = match serde_json::from_value(v) {
            Ok(m) => m,
            Err(e) => {
                let e = e.to_string();
                return Some(Err(super::protocol::truncate(&e, 200).to_string()));
            }
        };
        let cmd = match msg {
            AudioInbound::SubscribeAudio { quality } => {
                return Some(self.subscribe(i, quality.as_deref().unwrap_or("medium")))
            }
            AudioInbound::UnsubscribeAudio {} => {
                self.clients[i].audio = None;
                let json = AudioOutbound::AudioUnsubscribed {}.to_json();
                return Some(self.answer_now(i, json));
            }
            AudioInbound::StartRecording {} => RecCommand::Start,
            AudioInbound::StopRecording {} => RecCommand::Stop,
            AudioInbound::SaveReplay { seconds } => RecCommand::SaveReplay { seconds },
            AudioInbound::ListRecordings {} => RecCommand::List,
            AudioInbound::DeleteRecording { name } => RecCommand::Delete { name },
            AudioInbound::DownloadRecording { name } => RecCommand::Download { name },
        };
        let req = RecRequest {
            client: self.clients[i].id,
            cmd,
        };
        Some(match link.requests.try_send(req) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                Err("busy: the recorder has too many requests waiting".into())
            }
            Err(TrySendError::Disconnected(_)) => Err("the recorder has stopped".into()),
        })
    }

    /// Queue a reply to client `i` while reading from it (never closes it
    /// here: the read loop still holds its index).
    fn answer_now(&mut self, i: usize, json: String) -> Result<(), String> {
        if self.clients[i].push_reply(Message::Text(json.into())) {
            Ok(())
        } else {
            Err("not reading its replies".into())
        }
    }

    fn subscribe(&mut self, i: usize, quality: &str) -> Result<(), String> {
        let Some(link) = self.ctx.monitor.as_ref() else {
            return Err("the monitor is off".into());
        };
        if !link.listen_enabled {
            return Err("listening is off on this server (monitor.enabled)".into());
        }
        let preset = Preset::parse(quality).ok_or_else(|| {
            format!(
                "quality must be one of low, medium, high, ultra (got {:?})",
                super::protocol::truncate(quality, 40)
            )
        })?;
        let others = self
            .clients
            .iter()
            .enumerate()
            .filter(|(k, c)| *k != i && c.audio.is_some())
            .count() as u32;
        if others >= link.max_listeners {
            return Err(format!(
                "{others} listeners already (monitor.max-listeners)"
            ));
        }
        let json = AudioOutbound::AudioSubscribed {
            quality: preset.name(),
            bitrate: preset.bitrate(),
            codec: "opus",
            sample_rate: 48_000,
            channels: 1,
            frame_ms: link.frame_ms,
            server_ns: crate::rt::now_ns(),
        }
        .to_json();
        self.answer_now(i, json)?;
        self.clients[i].audio = Some(preset);
        Ok(())
    }

    /// Once per turn: tell the monitor which presets are wanted, fan the
    /// packets out, pass the recorder's answers on.
    pub(super) fn audio_turn(&mut self) {
        let Some(link) = self.ctx.monitor.as_mut() else {
            return;
        };
        let mut per = [0u32; 4];
        let mut mask = 0u8;
        for c in &self.clients {
            if let Some(p) = c.audio {
                per[p as usize] += 1;
                mask |= p.bit();
            }
        }
        link.hub.set_wanted(mask, per);
        let mut frame = Vec::new();
        while let Some(p) = link.packets.try_pop() {
            if per[p.preset as usize] == 0 {
                continue;
            }
            p.write_frame(crate::rt::now_ns(), &mut frame);
            // One buffer shared by every listener's queue.
            let msg = Message::Binary(frame.as_slice().to_vec().into());
            for c in self
                .clients
                .iter_mut()
                .filter(|c| c.audio == Some(p.preset))
            {
                self.drops += c.push_frame(msg.clone());
            }
        }
        let replies: Vec<_> = link.replies.try_iter().collect();
        for r in replies {
            let json = render(r.msg);
            match r.to {
                Some(id) => self.reply_to(id, json),
                None => {
                    let msg = Message::Text(json.into());
                    for c in self.clients.iter_mut().filter(|c| c.authorized) {
                        self.drops += c.push_announcement(msg.clone());
                    }
                }
            }
        }
    }

    /// `server_status.monitor`; `interval`: a new CPU interval starts
    /// (the periodic status), else the last interval's CPU figure is shown
    /// (a new client's greeting).
    pub(super) fn audio_status(&mut self, interval: bool) -> Option<MonitorStatus> {
        let link: &MonitorLink = self.ctx.monitor.as_ref()?;
        let c = &link.hub.counters;
        let st = &mut self.audio;
        if interval {
            let cpu_s = match c.tid.load(Ordering::Relaxed) {
                0 => 0.0,
                tid => crate::service::cpu::thread_cpu_s(tid).unwrap_or(0.0),
            };
            st.cpu_pct = match st.at {
                Some(at) => {
                    100.0 * (cpu_s - st.cpu_s).max(0.0) / at.elapsed().as_secs_f64().max(1e-3)
                }
                None => 0.0,
            };
            st.cpu_s = cpu_s;
            st.at = Some(Instant::now());
        }
        let cpu_pct = st.cpu_pct;
        Some(MonitorStatus {
            listeners: PerPreset::from_fn(|k| c.listeners[k].load(Ordering::Relaxed)),
            packets: PerPreset::from_fn(|k| c.packets[k].load(Ordering::Relaxed)),
            packet_drops: c.packet_drops.load(Ordering::Relaxed),
            ring_drops: self.ctx.stats.ring_drops[crate::monitor::MONITOR_DROP_SLOT]
                .load(Ordering::Relaxed),
            cpu_pct,
            encode_s: c.encode_ns.load(Ordering::Relaxed) as f64 / 1e9,
            recording: Some(link.hub.recorder_status()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::files::{Kind, RecordingItem, RecordingName, MAX_LISTED};

    /// A full folder's listing (1000 names, a long error in the state) fits
    /// the 64 KiB the other lists are cut to, keeps the newest first and
    /// says it was cut; a short one is whole.
    #[test]
    fn the_recordings_listing_is_cut_like_the_other_lists() {
        let items: Vec<RecordingItem> = (0..MAX_LISTED)
            .map(|i| RecordingItem {
                name: RecordingName::for_capture(
                    Kind::Recording,
                    1_700_000_000_000_000_000 - i as i128 * 1_000_000_000,
                    |_| false,
                ),
                bytes: 1 << 30,
                seconds: 3_599.999_999,
                sample_rate: 192_000,
                bits: 24,
            })
            .collect();
        let state = RecorderStatus {
            error: Some("e".repeat(4000)),
            ..Default::default()
        };
        let listing = |n: usize| Listing {
            items: items[..n].to_vec(),
            ..Default::default()
        };
        let json = listing_json(listing(MAX_LISTED), state.clone());
        assert!(json.len() <= 64 * 1024, "{}", json.len());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["truncated"], true);
        assert_eq!(v["state"]["error"].as_str().unwrap().len(), 4000);
        let listed = v["items"].as_array().unwrap();
        assert!(listed.len() > 300, "{}", listed.len());
        for (j, i) in listed.iter().zip(&items) {
            assert_eq!(j["name"], i.name.to_string(), "newest first, in order");
        }

        let v: serde_json::Value = serde_json::from_str(&listing_json(listing(10), state)).unwrap();
        assert_eq!(v["truncated"], false);
        assert_eq!(v["items"].as_array().unwrap().len(), 10);
    }
}
