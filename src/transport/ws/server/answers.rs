//! Control's answers, passed on to the clients that asked (and, for a
//! device change or presets read again, to everyone), and the replies the broadcaster keeps for
//! new clients: the newest `devices` and `presets` messages, each cut to
//! [`MAX_LIST_BYTES`].

use super::Broadcaster;
use crate::control::presets::PresetList;
use crate::control::{DeviceItem, Response};
use crate::transport::ws::protocol::{self as p, Outbound};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

/// Largest `devices` or `presets` message: longer lists are cut and say
/// `"truncated": true`, so a message that cannot be sent is never built.
pub const MAX_LIST_BYTES: usize = 64 * 1024;

impl Broadcaster {
    /// Pass on every answer control has sent since the last turn.
    pub(super) fn answer(&mut self) {
        while let Ok(r) = self.ctx.replies.try_recv() {
            // An answer to a client of this thread, present or gone (ids
            // count up from 1; reloads and the OSC input have ids of their
            // own), takes one request off the total.
            if (1..self.next_id).contains(&r.client) {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            if let Some(c) = self.clients.iter_mut().find(|c| c.id == r.client) {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
            for resp in r.responses {
                self.respond(r.client, resp);
            }
        }
    }

    /// One response to a request of client `id`.
    fn respond(&mut self, id: u64, resp: Response) {
        match resp {
            Response::Error(reason) => {
                self.reply_to(id, Outbound::error(reason).to_json());
                self.snap_back(id);
            }
            Response::Devices(items) => {
                self.devices_json = devices_json(&items);
                self.reply_to(id, self.devices_json.clone());
            }
            Response::DevicesChanged(items) => {
                self.devices_json = devices_json(&items);
                for each in self.clients.iter().map(|c| c.id).collect::<Vec<_>>() {
                    self.reply_to(each, self.devices_json.clone());
                }
            }
            Response::Presets(list) => {
                self.presets_json = presets_json(&list);
                self.reply_to(id, self.presets_json.clone());
            }
            Response::PresetsChanged(list) => {
                self.presets_json = presets_json(&list);
                for each in self.clients.iter().map(|c| c.id).collect::<Vec<_>>() {
                    self.reply_to(each, self.presets_json.clone());
                }
            }
            Response::MetaChanged => self.maybe_meta(true),
            Response::Clamped(list) => {
                // The sender gets this meta instead of the plain one.
                let json = p::with_clamped(&self.meta_json, &list);
                if let Some(c) = self.clients.iter_mut().find(|c| c.id == id) {
                    c.meta_due = false;
                }
                self.reply_to(id, json);
            }
        }
    }

    /// Queue a reply for client `id`; a client whose replies pile up is
    /// closed.
    pub(in crate::transport::ws) fn reply_to(&mut self, id: u64, json: String) {
        if let Some(i) = self.clients.iter().position(|c| c.id == id) {
            if !self.clients[i].push_reply(Message::Text(json.into())) {
                self.remove(i, CloseCode::Policy, "not reading its replies");
            }
        }
    }

    /// After a refused command: the meta in force, so the client's
    /// controls snap back to the real values (the Python UI re-reads it).
    pub(in crate::transport::ws) fn snap_back(&mut self, id: u64) {
        if self.last_meta.is_none() {
            self.maybe_meta(true);
        }
        self.reply_to(id, self.meta_json.to_string());
    }

    /// The meta in force, as JSON.
    pub(in crate::transport::ws) fn meta_json(&self) -> &str {
        &self.meta_json
    }
}

/// The `devices` message for a listing.
fn devices_json(items: &[DeviceItem]) -> String {
    bounded_list(
        items,
        0,
        |d| p::DeviceJson::from(d),
        |items, truncated| Outbound::Devices { items, truncated }.to_json(),
    )
}

/// The `presets` message for a listing (`truncated` also when control
/// did not list every preset).
fn presets_json(list: &PresetList) -> String {
    bounded_list(
        &list.items,
        0,
        |i| p::PresetJson {
            name: i.name.clone(),
            saved_at: p::local_time(i.saved_at, "%Y-%m-%d %H:%M"),
        },
        |items, truncated| {
            Outbound::Presets {
                items,
                truncated: truncated || list.truncated,
            }
            .to_json()
        },
    )
}

/// The JSON of a list message built by `make(items, truncated)`, with as
/// many items as fit in [`MAX_LIST_BYTES`] beside `other_bytes` of fields
/// that are not items.
pub(in crate::transport::ws) fn bounded_list<T, J: serde::Serialize>(
    items: &[T],
    other_bytes: usize,
    convert: impl Fn(&T) -> J,
    make: impl Fn(Vec<J>, bool) -> String,
) -> String {
    let mut out = Vec::with_capacity(items.len());
    let mut bytes = 256 + other_bytes;
    for item in items {
        let j = convert(item);
        bytes += serde_json::to_string(&j).map(|s| s.len() + 1).unwrap_or(0);
        if bytes > MAX_LIST_BYTES {
            return make(out, true);
        }
        out.push(j);
    }
    make(out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_messages_never_outgrow_the_limit() {
        let items: Vec<DeviceItem> = (0..5000)
            .map(|index| DeviceItem {
                index,
                name: format!("hw:CARD=Device{index},DEV=0"),
                description: "x".repeat(100),
                ..Default::default()
            })
            .collect();
        let json = devices_json(&items);
        assert!(json.len() <= MAX_LIST_BYTES, "{}", json.len());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["truncated"], true);
        assert!(v["items"].as_array().unwrap().len() > 100);
        let few = devices_json(&items[..3]);
        let v: serde_json::Value = serde_json::from_str(&few).unwrap();
        assert_eq!(v["truncated"], false);
    }

    #[test]
    fn a_presets_list_control_cut_short_says_truncated() {
        let list = PresetList {
            items: vec![crate::control::presets::PresetInfo {
                name: "club".into(),
                saved_at: 1_764_504_834.0,
            }],
            truncated: true,
        };
        let v: serde_json::Value = serde_json::from_str(&presets_json(&list)).unwrap();
        assert_eq!(v["type"], "presets");
        assert_eq!(v["truncated"], true);
        assert_eq!(v["items"][0]["name"], "club");
        assert_eq!(v["items"][0]["saved_at"].as_str().unwrap().len(), 16);
        let whole = PresetList {
            truncated: false,
            ..list
        };
        let v: serde_json::Value = serde_json::from_str(&presets_json(&whole)).unwrap();
        assert_eq!(v["truncated"], false);
    }
}
