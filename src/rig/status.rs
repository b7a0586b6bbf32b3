//! What the rig outputs show in the health line and in `server_status`
//! (the UI's status panel): only the outputs that are on, so a box with
//! none of them sees no change at all.

use super::midi::MidiState;
use super::{mdns_state, outputs};
use crate::stats::Stats;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// `server_status.rig` (phase4 addition; absent when every output is off).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RigStatus {
    /// mDNS: "avahi", "builtin", "waiting-for-avahi" (absent when off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<&'static str>,
    /// OSCQuery: WebSocket clients and HTTP requests answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oscquery: Option<OscQueryStatus>,
    /// Link feed datagrams sent and refused (refused: phase4-link is not
    /// running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<Counts>,
    /// MIDI clock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub midi: Option<MidiStatus>,
    /// WLED packets sent and refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wled: Option<Counts>,
}

/// Sent and refused datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Sent.
    pub sent: u64,
    /// Refused by the network.
    pub failed: u64,
}

/// OSCQuery server figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct OscQueryStatus {
    /// WebSocket (LISTEN) clients.
    pub clients: u32,
    /// HTTP requests answered.
    pub requests: u64,
    /// OSC input messages applied (null when the input port is off).
    pub input_ok: Option<u64>,
    /// OSC input messages refused.
    pub input_refused: Option<u64>,
}

/// MIDI clock figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MidiStatus {
    /// "no-sequencer", "waiting" (not locked) or "running".
    pub state: &'static str,
    /// Clock pulses sent.
    pub pulses: u64,
    /// Ports subscribed to phase4:clock.
    pub subscribers: u32,
}

/// The rig part of `server_status`, or `None` when everything is off.
pub fn server_status(stats: &Stats) -> Option<RigStatus> {
    let r = &stats.rig;
    if r.enabled.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Some(RigStatus {
        discovery: r.on(outputs::DISCOVERY).then(|| {
            mdns_state::NAMES
                .get(r.mdns_state.load(Ordering::Relaxed) as usize)
                .copied()
                .unwrap_or("off")
        }),
        oscquery: r.on(outputs::OSCQUERY).then(|| OscQueryStatus {
            clients: r.oscq_clients.load(Ordering::Relaxed),
            requests: n(&r.oscq_requests),
            input_ok: r.on(outputs::OSC_INPUT).then(|| n(&r.osc_in_ok)),
            input_refused: r.on(outputs::OSC_INPUT).then(|| n(&r.osc_in_refused)),
        }),
        link: r.on(outputs::LINK).then(|| Counts {
            sent: n(&r.link_sent),
            failed: n(&r.link_failed),
        }),
        midi: r.on(outputs::MIDI).then(|| MidiStatus {
            state: MidiState::from_u8(r.midi_state.load(Ordering::Relaxed)).as_str(),
            pulses: n(&r.midi_pulses),
            subscribers: r.midi_subscribers.load(Ordering::Relaxed),
        }),
        wled: r.on(outputs::WLED).then(|| Counts {
            sent: n(&r.wled_sent),
            failed: n(&r.wled_failed),
        }),
    })
}

/// CPU time of the rig threads between two health lines.
pub struct RigCpu {
    at: Instant,
    last: [f64; 3],
}

const THREADS: [&str; 3] = ["rig", "midi", "oscq"];

fn thread_cpu(stats: &Stats) -> [f64; 3] {
    let r = &stats.rig;
    let tids = [&r.tid_rig, &r.tid_midi, &r.tid_oscq];
    std::array::from_fn(|i| match tids[i].load(Ordering::Relaxed) {
        0 => 0.0,
        t => crate::service::cpu::thread_cpu_s(t).unwrap_or(0.0),
    })
}

impl Default for RigCpu {
    /// Start measuring now, from the threads' start (they start after the
    /// health line's keeper is made, so their CPU so far is this interval's).
    fn default() -> Self {
        RigCpu {
            at: Instant::now(),
            last: [0.0; 3],
        }
    }
}

impl RigCpu {
    /// Start measuring now.
    pub fn new(stats: &Stats) -> Self {
        RigCpu {
            at: Instant::now(),
            last: thread_cpu(stats),
        }
    }

    /// The rig fields of the health line (with a leading space), empty
    /// when every output is off.
    pub fn health_fields(&mut self, stats: &Stats) -> String {
        let Some(s) = server_status(stats) else {
            return String::new();
        };
        let dt = self.at.elapsed().as_secs_f64().max(1e-3);
        self.at = Instant::now();
        let now = thread_cpu(stats);
        let mut out = String::new();
        if let Some(d) = s.discovery {
            out += &format!(" mdns={d}");
        }
        if let Some(q) = s.oscquery {
            out += &format!(
                " oscquery_clients={} oscquery_requests={}",
                q.clients, q.requests
            );
            if let (Some(ok), Some(bad)) = (q.input_ok, q.input_refused) {
                out += &format!(" osc_in={ok} osc_in_refused={bad}");
            }
        }
        if let Some(l) = s.link {
            out += &format!(" link_sent={} link_failed={}", l.sent, l.failed);
        }
        if let Some(m) = s.midi {
            out += &format!(
                " midi={} midi_pulses={} midi_subscribers={}",
                m.state, m.pulses, m.subscribers
            );
        }
        if let Some(w) = s.wled {
            out += &format!(" wled_sent={} wled_failed={}", w.sent, w.failed);
        }
        let cpu: Vec<String> = (0..3)
            .filter(|i| now[*i] > 0.0)
            .map(|i| {
                format!(
                    "{}={:.2}",
                    THREADS[i],
                    100.0 * (now[i] - self.last[i]).max(0.0) / dt
                )
            })
            .collect();
        if !cpu.is_empty() {
            out += &format!(" rig_cpu%[{}]", cpu.join(" "));
        }
        self.last = now;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_shows_while_every_output_is_off() {
        let s = Stats::default();
        assert_eq!(server_status(&s), None);
        assert_eq!(RigCpu::new(&s).health_fields(&s), "");
    }

    #[test]
    fn only_enabled_outputs_show() {
        let s = Stats::default();
        s.rig
            .enabled
            .store(outputs::WLED | outputs::MIDI, Ordering::Relaxed);
        s.rig.wled_sent.store(50, Ordering::Relaxed);
        s.rig
            .midi_state
            .store(MidiState::Running as u8, Ordering::Relaxed);
        let st = server_status(&s).unwrap();
        assert_eq!(
            st.wled,
            Some(Counts {
                sent: 50,
                failed: 0
            })
        );
        assert_eq!(st.midi.unwrap().state, "running");
        assert!(st.link.is_none() && st.discovery.is_none() && st.oscquery.is_none());
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["wled"]["sent"], 50);
        assert!(json.get("link").is_none());
        let line = RigCpu::new(&s).health_fields(&s);
        assert!(
            line.contains(" wled_sent=50") && line.contains(" midi=running"),
            "{line}"
        );
        assert!(!line.contains("link"), "{line}");
    }
}
