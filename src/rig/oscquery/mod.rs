//! The OSCQuery server (Vidvox OSCQueryProposal): TouchDesigner, VDMX,
//! Chataigne, ossia score and other OSCQuery clients browse phase4's
//! address space over HTTP and bind to it without typing addresses.
//!
//! - `GET /path` returns the node's JSON (FULL_PATH, CONTENTS, TYPE,
//!   ACCESS, VALUE, RANGE, DESCRIPTION); `?ATTRIBUTE` returns one of them;
//!   `?HOST_INFO` the server's NAME, OSC_PORT, OSC_TRANSPORT, WS_PORT and
//!   EXTENSIONS ([`namespace`]).
//! - The address space is every address phase4 sends (under `osc.prefix`,
//!   read-only) and, when the OSC input port is on, the writable settings
//!   under `<prefix>/settings/` ([`setting`]).
//! - A WebSocket on the same port takes `{"COMMAND":"LISTEN","DATA":path}`
//!   and `IGNORE`, and streams the values of listened paths as binary OSC
//!   packets, at most `oscquery.listen-hz` per path ([`listen`]).
//!
//! Threads: `p4-oscq` is the UI's hyper server with the UI's limits and
//! Host/Origin checks ([`crate::transport::serve`]) answering from the
//! namespace; `p4-oscq-ws` owns the WebSocket clients (at most
//! `oscquery.max-clients`). Values come from `p4-rig`'s newest frames;
//! nothing here touches a real-time thread.

pub mod input;
pub mod listen;
pub mod namespace;
mod server;
pub mod setting;

use super::hub::{Latest, LatestInner};
use crate::config::Config;
use crate::control::Shared;
use crate::transport::osc::{Meta, ADDRESSES};
use namespace::{Namespace, Node, Range, Source, Values};
use rosc::OscType;
use serde_json::{json, Value};
use setting::{Kind, Setting};
use std::sync::{Arc, Mutex};

pub use server::spawn;

/// Everything the OSCQuery threads read values from.
#[derive(Clone)]
pub struct Live {
    /// Newest frames.
    pub latest: Arc<Latest>,
    /// What `/audio/meta` says.
    pub meta: Arc<Mutex<Meta>>,
    /// The settings in force (when control runs).
    pub shared: Option<Arc<Shared>>,
    /// The configuration at start (settings when control does not run).
    pub config: Arc<Config>,
}

impl Live {
    /// The settings in force.
    pub fn settings(&self) -> Config {
        match &self.shared {
            Some(s) => s.config(),
            None => (*self.config).clone(),
        }
    }

    /// The arguments output address `idx` carries now. Continuous values
    /// always have one (zeros before the first frame); events only once
    /// one happened.
    pub fn output_args(&self, idx: usize, l: &LatestInner) -> Option<Vec<OscType>> {
        let f = OscType::Float;
        let b = &l.bands;
        let s = &l.spectrum;
        let t = &s.tempo;
        let bpm = if t.locked { t.bpm } else { 0.0 };
        Some(match ADDRESSES.get(idx).copied()? {
            "meta" => {
                let m = self.meta.lock().map(|m| *m).ok()?;
                let mut v = vec![
                    OscType::Int(m.sr),
                    OscType::Int(m.blocksize),
                    OscType::Int(m.n_fft_bins),
                ];
                for (lo, hi) in m.bands {
                    v.push(f(lo));
                    v.push(f(hi));
                }
                v
            }
            "lmh" => b.lmh.iter().map(|x| f(*x)).collect(),
            "level" if l.generation == 0 => vec![f(-160.0), f(-160.0)],
            "level" => vec![f(b.rms_dbfs), f(b.peak_dbfs)],
            "bpm" => vec![f(bpm)],
            "tempo" => vec![f(bpm), f(t.confidence), f(t.phase)],
            "onset/low" if b.band_onset_count[0] > 0 => vec![OscType::Int(1)],
            "onset/mid" if b.band_onset_count[1] > 0 => vec![OscType::Int(1)],
            "onset/high" if b.band_onset_count[2] > 0 => vec![OscType::Int(1)],
            "fft" if s.has_bins => s.bins().iter().map(|x| f(*x)).collect(),
            "fft" => vec![f(0.0); self.settings().fft.n_bins as usize],
            "spectral" => vec![f(s.centroid_hz), f(s.flatness), f(s.rolloff_hz), f(s.flux)],
            "onset" => vec![f(l.last_onset?)],
            "beat" => {
                let (i, bpm, c) = l.last_beat?;
                vec![OscType::Int(i as i32), f(bpm), f(c)]
            }
            "silence" => vec![OscType::Int(b.silent as i32)],
            _ => return None,
        })
    }

    /// Whether output `idx` is an event (no lasting value: ACCESS 0, but
    /// it can be LISTENed to).
    pub fn is_event(idx: usize) -> bool {
        matches!(
            ADDRESSES.get(idx).copied(),
            Some("onset/low" | "onset/mid" | "onset/high" | "onset" | "beat")
        )
    }

    /// A counter that changes whenever output `idx` has a new value to
    /// stream (events: a new event; continuous values: a new frame).
    pub fn output_stamp(idx: usize, l: &LatestInner) -> u64 {
        match ADDRESSES.get(idx).copied() {
            Some("onset/low") => l.bands.band_onset_count[0] as u64,
            Some("onset/mid") => l.bands.band_onset_count[1] as u64,
            Some("onset/high") => l.bands.band_onset_count[2] as u64,
            Some("onset") => l.spectrum.onset_count as u64,
            Some("beat") => l.spectrum.tempo.beat_index as u64,
            Some("fft" | "spectral" | "tempo" | "bpm") => l.spectrum.seq,
            _ => l.generation,
        }
    }
}

/// OSC arguments as OSCQuery JSON values (non-finite floats as null).
pub fn json_args(args: &[OscType]) -> Vec<Value> {
    args.iter()
        .map(|a| match a {
            OscType::Float(v) if v.is_finite() => json!(v),
            OscType::Double(v) if v.is_finite() => json!(v),
            OscType::Int(v) => json!(v),
            OscType::Long(v) => json!(v),
            OscType::Bool(v) => json!(v),
            OscType::String(s) => json!(s),
            _ => Value::Null,
        })
        .collect()
}

impl Values for Live {
    fn value(&self, source: Source) -> Option<Vec<Value>> {
        match source {
            Source::Output(i) => {
                let args = self.latest.with(|l| self.output_args(i, l))??;
                Some(json_args(&args))
            }
            Source::Setting(s) => Some(json_args(&[s.get(&self.settings())])),
        }
    }
}

fn mm(lo: f64, hi: Option<f64>) -> Range {
    Range::MinMax(Some(lo), hi)
}

/// Type, ranges and description of output address `name`.
fn output_node(name: &str, c: &Config) -> Node {
    let nyq = c.audio.sample_rate_hz as f64 / 2.0;
    let unit = || mm(0.0, Some(1.0));
    let bpm = || mm(0.0, Some(c.tempo.max_bpm));
    let db = || mm(-160.0, Some(0.0));
    let (types, range, description): (String, Vec<Range>, String) = match name {
        "meta" => (
            "iiiffffff".into(),
            vec![
                mm(8000.0, Some(384_000.0)),
                mm(16.0, Some(2048.0)),
                mm(0.0, Some(1024.0)),
                mm(20.0, Some(nyq)),
                mm(20.0, Some(nyq)),
                mm(20.0, Some(nyq)),
                mm(20.0, Some(nyq)),
                mm(20.0, Some(nyq)),
                mm(20.0, Some(nyq)),
            ],
            "sample rate, block size, log bins, then low/mid/high band edges in Hz; at start, on change and every second".into(),
        ),
        "lmh" => ("fff".into(), vec![unit(), unit(), unit()], "low, mid, high band energy, auto-scaled; every block".into()),
        "level" => ("ff".into(), vec![db(), db()], "RMS and peak level, dBFS; every block".into()),
        "bpm" => ("f".into(), vec![bpm()], "tempo in BPM, 0 while not locked; every block".into()),
        "tempo" => ("fff".into(), vec![bpm(), unit(), unit()], "tempo (0 while not locked), confidence, beat phase (0 on the beat); every block".into()),
        "onset/low" | "onset/mid" | "onset/high" => (
            "i".into(),
            vec![Range::Vals(vec![json!(1)])],
            format!("1 on each {} band onset", &name[6..]),
        ),
        "fft" => (
            "f".repeat(c.fft.n_bins as usize),
            vec![unit()],
            "log spectrum, one value per bin ([0, 1], or raw dB); every hop while the spectrum is on".into(),
        ),
        "spectral" => ("ffff".into(), vec![mm(0.0, Some(nyq)), unit(), mm(0.0, Some(nyq)), mm(0.0, None)], "spectral centroid (Hz), flatness, 85 % rolloff (Hz), flux; every hop".into()),
        "onset" => ("f".into(), vec![mm(0.0, None)], "strength of each broadband onset".into()),
        "beat" => ("iff".into(), vec![mm(0.0, None), bpm(), unit()], "beat index, tempo, confidence; on each beat while locked".into()),
        "silence" => ("i".into(), vec![Range::Vals(vec![json!(0), json!(1)])], "1 while the input is silent; on change".into()),
        _ => (String::new(), vec![], String::new()),
    };
    Node {
        access: 1,
        types,
        range,
        description,
        ..Default::default()
    }
}

/// The instance name (`discovery.name`, else the host name).
pub fn instance_name(c: &Config) -> String {
    if c.discovery.name.is_empty() {
        super::mdns::host_name()
    } else {
        c.discovery.name.clone()
    }
}

/// The address space and HOST_INFO for `c`.
pub fn build_namespace(c: &Config) -> Namespace {
    let q = &c.oscquery;
    let mut host = json!({
        "NAME": format!("phase4 on {}", instance_name(c)),
        "OSC_TRANSPORT": "UDP",
        "WS_PORT": q.port,
        "EXTENSIONS": {
            "ACCESS": true,
            "VALUE": true,
            "RANGE": true,
            "DESCRIPTION": true,
            "LISTEN": true,
            "PATH_CHANGED": false,
            "TAGS": false,
            "EXTENDED_TYPE": false,
            "UNIT": false,
            "CRITICAL": false,
            "CLIPMODE": false,
        },
    });
    if q.input_port != 0 {
        host["OSC_PORT"] = json!(q.input_port);
    }
    if let Ok(ip) = q.bind.parse::<std::net::IpAddr>() {
        if !ip.is_unspecified() {
            host["OSC_IP"] = json!(q.bind);
            host["WS_IP"] = json!(q.bind);
        }
    }
    let mut ns = Namespace::new(host);
    let prefix = &c.osc.prefix;
    for (i, name) in ADDRESSES.iter().enumerate() {
        if !c.osc.addresses.is_empty() && !c.osc.addresses.iter().any(|a| a == name) {
            continue;
        }
        let mut n = output_node(name, c);
        n.source = Some(Source::Output(i));
        if Live::is_event(i) {
            // An event has no value to read (the proposal's ACCESS 0); its
            // messages can still be LISTENed to.
            n.access = 0;
        }
        ns.add(&format!("{prefix}/{name}"), n);
    }
    if q.input_port != 0 {
        let sr = c.audio.sample_rate_hz as f64;
        for s in setting::all() {
            let (lo, hi) = s.range(sr);
            let (types, range) = match s.kind() {
                Kind::Float => ("f", Range::MinMax(Some(lo), Some(hi))),
                Kind::Int => ("i", Range::MinMax(Some(lo), Some(hi))),
                Kind::Bool => ("T", Range::Vals(vec![json!(false), json!(true)])),
            };
            ns.add(
                &format!("{prefix}/settings/{}", s.path()),
                Node {
                    access: 3,
                    types: types.into(),
                    range: vec![range],
                    description: s.description().into(),
                    source: Some(Source::Setting(s)),
                    ..Default::default()
                },
            );
        }
        if let Some(n) = ns.find(&format!("{prefix}/settings")).cloned() {
            let mut n = n;
            n.description = "settings that OSC messages to OSC_PORT change (validated like the WebSocket commands)".into();
            ns.add(&format!("{prefix}/settings"), n);
        }
    }
    ns
}

/// The setting at OSC address `addr`, if any.
pub fn setting_at(c: &Config, addr: &str) -> Option<Setting> {
    let rest = addr
        .strip_prefix(&c.osc.prefix)?
        .strip_prefix("/settings/")?;
    setting::all().find(|s| s.path() == rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_address_is_in_the_namespace_with_its_arity() {
        let mut c = Config::default();
        c.oscquery.enabled = true;
        let ns = build_namespace(&c);
        for name in ADDRESSES {
            let n = ns
                .find(&format!("/audio/{name}"))
                .unwrap_or_else(|| panic!("{name}"));
            let want = if Live::is_event(ADDRESSES.iter().position(|a| *a == name).unwrap()) {
                0
            } else {
                1
            };
            assert_eq!(n.access, want, "{name}");
            assert!(!n.types.is_empty() && !n.description.is_empty(), "{name}");
            assert!(
                n.range.len() == n.types.len() || n.range.len() == 1,
                "{name}"
            );
        }
        assert!(
            ns.find("/audio/settings").is_none(),
            "no input port, no writable nodes"
        );
        assert!(ns.host_info.get("OSC_PORT").is_none());
    }

    #[test]
    fn settings_appear_with_the_input_port() {
        let mut c = Config::default();
        c.oscquery.enabled = true;
        c.oscquery.input_port = 9002;
        let ns = build_namespace(&c);
        let n = ns.find("/audio/settings/dsp/mid/lo-hz").unwrap();
        assert_eq!((n.access, n.types.as_str()), (3, "f"));
        assert_eq!(ns.host_info["OSC_PORT"], 9002);
        assert_eq!(
            setting_at(&c, "/audio/settings/dsp/mid/lo-hz"),
            Some(Setting::LoHz(1))
        );
        assert_eq!(setting_at(&c, "/audio/settings/dsp/mid"), None);
        assert_eq!(ns.methods().len(), ADDRESSES.len() + setting::ALL.len());
    }
}
