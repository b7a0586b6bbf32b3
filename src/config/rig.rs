//! The sections for plugging into a rig: `[discovery]` (mDNS/DNS-SD),
//! `[oscquery]` (the OSCQuery server and the OSC input port), `[link]`
//! (the tempo feed for the `phase4-link` program), `[midi]` (MIDI clock
//! out) and `[wled]` (WLED Audio Sync). Every one is off by default and
//! costs nothing while off.

use super::validate::Checker;
use serde::{Deserialize, Serialize};

/// How the box is announced on the LAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscoveryBackend {
    /// Register through avahi-daemon when it runs (its D-Bus API), else
    /// answer mDNS ourselves.
    Auto,
    /// Only through avahi-daemon; keep retrying while it is away.
    Avahi,
    /// Only our own responder (a box without avahi-daemon).
    Builtin,
}

/// `[discovery]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiscoveryConfig {
    /// Announce the services at all.
    pub enabled: bool,
    /// Instance name shown in browsers (empty: the host name).
    pub name: String,
    /// Who answers the mDNS queries.
    pub backend: DiscoveryBackend,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            enabled: false,
            name: String::new(),
            backend: DiscoveryBackend::Auto,
        }
    }
}

/// `[oscquery]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct OscQueryConfig {
    /// Run the OSCQuery server (HTTP namespace and WebSocket streaming).
    pub enabled: bool,
    /// Address the OSCQuery server and the OSC input port bind to.
    pub bind: String,
    /// TCP port of the OSCQuery server (HTTP and WebSocket on one port).
    pub port: u16,
    /// UDP port where phase4 takes OSC writes to its settings (0: off).
    pub input_port: u16,
    /// Most OSCQuery clients at once (HTTP and WebSocket together).
    pub max_clients: u32,
    /// Most values per second streamed for one LISTENed address.
    pub listen_hz: f64,
    /// Most OSC messages per second taken on the input port (all senders).
    pub max_input_per_s: f64,
}

impl Default for OscQueryConfig {
    fn default() -> Self {
        OscQueryConfig {
            enabled: false,
            bind: "127.0.0.1".into(),
            port: 8767,
            input_port: 0,
            max_clients: 16,
            listen_hz: 60.0,
            max_input_per_s: 200.0,
        }
    }
}

/// `[link]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LinkConfig {
    /// Send the tempo feed that the `phase4-link` program (a separate,
    /// GPL package) turns into an Ableton Link session.
    pub enabled: bool,
    /// Loopback UDP port `phase4-link` listens on.
    pub feed_port: u16,
    /// Beats per bar (Link's quantum) used to align the session's phase.
    pub quantum: f64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            enabled: false,
            feed_port: 9011,
            quantum: 4.0,
        }
    }
}

/// `[midi]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MidiConfig {
    /// Send MIDI clock through the ALSA sequencer.
    pub enabled: bool,
    /// Sequencer client name other programs see.
    pub client_name: String,
    /// Name of the output port.
    pub port_name: String,
    /// Connect to this sequencer port at start and whenever it appears
    /// ("client:port", a client name such as "Midi Through", or
    /// "name:port"); empty: wait for others to connect.
    pub connect_to: String,
    /// Send Start when the tempo locks and Stop when it is lost.
    pub start_stop: bool,
    /// Send Song Position Pointer (0) before Start.
    pub song_position: bool,
}

impl Default for MidiConfig {
    fn default() -> Self {
        MidiConfig {
            enabled: false,
            client_name: "phase4".into(),
            port_name: "clock".into(),
            connect_to: String::new(),
            start_stop: true,
            song_position: true,
        }
    }
}

/// `[wled]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WledConfig {
    /// Send WLED Audio Sync v2 packets.
    pub enabled: bool,
    /// Destination: WLED's multicast group (or one controller's address).
    pub host: String,
    /// UDP port (WLED's "UDP sound sync" port).
    pub port: u16,
    /// Milliseconds between two packets (WLED sends every 20 ms).
    pub interval_ms: u32,
    /// Multicast TTL.
    pub ttl: u32,
    /// Local IPv4 address of the interface multicast leaves through
    /// (empty: the system's choice).
    pub interface: String,
    /// Gain applied to the GEQ channels before scaling to 0..255 (like
    /// WLED's "Gain" setting; 1 = as measured).
    pub gain: f64,
}

impl Default for WledConfig {
    fn default() -> Self {
        WledConfig {
            enabled: false,
            host: "239.0.0.1".into(),
            port: 11988,
            interval_ms: 20,
            ttl: 1,
            interface: String::new(),
            gain: 1.0,
        }
    }
}

/// A name other programs show: 1..=`max` bytes, no control characters.
fn check_name(k: &mut Checker, key: &str, v: &str, max: usize, may_be_empty: bool) {
    if (v.is_empty() && !may_be_empty) || v.len() > max || v.chars().any(char::is_control) {
        k.fail(
            key,
            format!("{v:?}"),
            format!(
                "{}at most {max} bytes without control characters",
                if may_be_empty { "" } else { "1 to " }
            ),
        );
    }
}

/// Range checks on the rig sections (see [`super::validate`]).
pub(super) fn check(c: &super::Config, k: &mut Checker) {
    check_discovery(c, k);
    check_oscquery(c, k);
    let l = &c.link;
    if l.feed_port == 0 {
        k.fail("link.feed-port", l.feed_port, "must be 1..65535");
    }
    k.range_f("link.quantum", l.quantum, 1.0, 16.0);
    let m = &c.midi;
    check_name(k, "midi.client-name", &m.client_name, 63, false);
    check_name(k, "midi.port-name", &m.port_name, 63, false);
    check_name(k, "midi.connect-to", &m.connect_to, 128, true);
    check_wled(c, k);
}

fn check_discovery(c: &super::Config, k: &mut Checker) {
    let d = &c.discovery;
    // An mDNS instance name is one DNS label.
    check_name(k, "discovery.name", &d.name, 63, true);
    if d.enabled && !c.ws.enabled && !c.oscquery.enabled {
        k.fail(
            "discovery.enabled",
            "true",
            "needs something to announce: ws.enabled or oscquery.enabled",
        );
    }
}

/// The OSCQuery server's address and port, and its OSC input port (which
/// needs the server, and the WebSocket side's control thread).
fn check_oscquery(c: &super::Config, k: &mut Checker) {
    let q = &c.oscquery;
    if let Some(why) = crate::config::net::bind_problem(&q.bind) {
        k.fail("oscquery.bind", &q.bind, why);
    }
    if q.enabled {
        if q.port == 0 {
            k.fail("oscquery.port", q.port, "must be 1..65535");
        } else if c.ws.enabled && (q.port == c.ws.port || q.port == c.ws.http_port) {
            k.fail(
                "oscquery.port",
                q.port,
                "must differ from ws.port and ws.http-port",
            );
        }
    }
    if q.input_port != 0 && c.link.enabled && q.input_port == c.link.feed_port {
        k.fail(
            "oscquery.input-port",
            q.input_port,
            "must differ from link.feed-port",
        );
    }
    if q.input_port != 0 && q.enabled && !c.ws.enabled {
        k.fail(
            "oscquery.input-port",
            q.input_port,
            "the OSC input port hands commands to the control thread, which runs with ws.enabled",
        );
    }
    if q.input_port != 0 && !q.enabled {
        k.fail(
            "oscquery.input-port",
            q.input_port,
            "the OSC input port needs oscquery.enabled (0 turns it off)",
        );
    }
    k.range_u("oscquery.max-clients", q.max_clients as u64, 1, 256);
    k.range_f("oscquery.listen-hz", q.listen_hz, 1.0, 240.0);
    k.range_f("oscquery.max-input-per-s", q.max_input_per_s, 1.0, 10_000.0);
}

/// What is wrong with `wled.host`, if anything: the shared host check
/// ([`super::net::host_problem`]) with IPv4 only (Audio Sync is IPv4 only).
fn wled_host_problem(host: &str) -> Option<&'static str> {
    use super::net::HostProblem as H;
    super::net::host_problem(host, false).map(|p| match p {
        H::Syntax => {
            "an IPv4 address or a host name, e.g. \"239.0.0.1\" (WLED's group) or \"wled-stage.local\""
        }
        H::NotIpv4 => "not an IPv4 address (four numbers 0-255) and not a host name",
        H::Unspecified => {
            "0.0.0.0 is no destination; an IPv4 address or a host name, e.g. \"239.0.0.1\""
        }
        H::Ipv6 => {
            "WLED Audio Sync is IPv4 only: an IPv4 address or a host name, e.g. \"239.0.0.1\""
        }
    })
}

fn check_wled(c: &super::Config, k: &mut Checker) {
    let w = &c.wled;
    if let Some(why) = wled_host_problem(&w.host) {
        k.fail("wled.host", format!("{:?}", w.host), why);
    }
    if w.port == 0 {
        k.fail("wled.port", w.port, "must be 1..65535");
    }
    k.range_u("wled.interval-ms", w.interval_ms as u64, 10, 1000);
    k.range_u("wled.ttl", w.ttl as u64, 1, 255);
    if !w.interface.is_empty() && w.interface.parse::<std::net::Ipv4Addr>().is_err() {
        k.fail(
            "wled.interface",
            &w.interface,
            "empty, or the IPv4 address of a local interface",
        );
    }
    k.range_f("wled.gain", w.gain, 0.01, 100.0);
}

#[cfg(test)]
mod tests {
    use crate::config::{load_str, ConfigError};

    fn keys(text: &str) -> Vec<String> {
        match load_str(text) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.into_iter().map(|p| p.key).collect()
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn rig_sections_are_off_and_valid_by_default() {
        assert_eq!(keys(""), Vec::<String>::new());
        let c = crate::config::Config::default();
        assert!(!c.discovery.enabled && !c.oscquery.enabled && !c.link.enabled);
        assert!(!c.midi.enabled && !c.wled.enabled);
        assert_eq!(c.oscquery.input_port, 0);
    }

    #[test]
    fn bad_rig_values_are_each_reported() {
        let k = keys(
            "[discovery]\nname = \"a\\u0007b\"\n[oscquery]\nenabled = true\nport = 8765\nbind = \"lan\"\nlisten-hz = 0.0\n[link]\nquantum = 0.0\n[midi]\nclient-name = \"\"\n[wled]\nhost = \"\"\ninterval-ms = 1\ninterface = \"eth0\"\n",
        );
        for want in [
            "discovery.name",
            "oscquery.port",
            "oscquery.bind",
            "oscquery.listen-hz",
            "link.quantum",
            "midi.client-name",
            "wled.host",
            "wled.interval-ms",
            "wled.interface",
        ] {
            assert!(k.iter().any(|x| x == want), "{want} missing from {k:?}");
        }
    }

    #[test]
    fn wled_hosts_are_ipv4_addresses_or_host_names() {
        for good in [
            "239.0.0.1",
            "255.255.255.255",
            "192.168.1.50",
            "wled-stage.local",
            "wled_1.lan.",
            "localhost",
        ] {
            assert_eq!(super::wled_host_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "0.0.0.0",
            "::1",
            "ff02::1",
            "256.1.1.1",
            "1.2.3",
            "  239.0.0.1",
            "239.0.0.1 ",
            "a..b",
            "-wled",
            "wled/1",
            "x\u{7}",
        ] {
            assert!(super::wled_host_problem(bad).is_some(), "{bad:?}");
            // TOML's own quoting ("x\u0007"), not Rust's ("x\u{7}", a
            // TOML syntax error that would name the key for another reason).
            let cfg = format!("[wled]\nhost = {}\n", toml::Value::String(bad.into()));
            assert_eq!(keys(&cfg), ["wled.host"], "{bad:?}");
        }
        assert!(super::wled_host_problem(&"a".repeat(64)).is_some());
        assert!(super::wled_host_problem(&["a"; 128].join(".")).is_some());
    }

    #[test]
    fn input_port_needs_the_oscquery_server() {
        let k = keys("[oscquery]\ninput-port = 9002\n");
        assert_eq!(k, vec!["oscquery.input-port".to_string()]);
        assert!(keys("[oscquery]\nenabled = true\ninput-port = 9002\n").is_empty());
    }
}
