//! Where features go: `[osc]` and its destinations, `[ws]` (the WebSocket
//! and the UI's HTTP server).

use serde::{Deserialize, Serialize};

/// One OSC destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct OscDestination {
    /// Host name or address (unicast, broadcast or multicast).
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// Multicast TTL (only used for multicast groups).
    pub ttl: u32,
}

impl Default for OscDestination {
    fn default() -> Self {
        OscDestination {
            host: "127.0.0.1".into(),
            port: 9000,
            ttl: 1,
        }
    }
}

/// `[osc]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct OscConfig {
    /// Send OSC at all.
    pub enabled: bool,
    /// Address prefix.
    pub prefix: String,
    /// Where to send.
    pub destinations: Vec<OscDestination>,
    /// Also send `/audio/fft` (needs `fft.enabled`).
    pub send_fft: bool,
    /// Wrap each block's messages in a bundle time-tagged with the capture time.
    pub bundle: bool,
    /// Addresses to send (without prefix, e.g. "lmh", "onset/low"); empty: all.
    pub addresses: Vec<String>,
    /// How often `/audio/meta` is repeated.
    pub meta_interval_s: f64,
    /// How often host names are resolved again.
    pub resolve_interval_s: f64,
}

impl Default for OscConfig {
    fn default() -> Self {
        OscConfig {
            enabled: true,
            prefix: "/audio".into(),
            destinations: vec![OscDestination::default()],
            send_fft: false,
            bundle: false,
            addresses: Vec::new(),
            meta_interval_s: 1.0,
            resolve_interval_s: 30.0,
        }
    }
}

/// `[ws]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WsConfig {
    /// Run the WebSocket server and the UI.
    pub enabled: bool,
    /// Address to bind both to.
    pub bind: String,
    /// WebSocket port.
    pub port: u16,
    /// HTTP port of the browser UI.
    pub http_port: u16,
    /// Directory the UI is served from (empty, or missing: the copy built
    /// into the binary).
    pub web_dir: String,
    /// L/M/H snapshot rate.
    pub snapshot_hz: f64,
    /// Control token a client not on this machine must present to change
    /// settings (empty: a generated one, kept in the state directory and
    /// shown by `phase4 token`).
    pub token: String,
    /// Clients on the loopback interface may change settings without the
    /// token.
    pub trust_loopback: bool,
    /// Host names this box is reached by besides its addresses, `localhost`,
    /// its host name and `<hostname>.local` (DNS rebinding defence).
    pub allowed_hosts: Vec<String>,
    /// Origins allowed besides the UI's own (e.g. "http://mypi.local:8766").
    pub allowed_origins: Vec<String>,
    /// Most clients at once.
    pub max_clients: u32,
    /// Most clients from one address (loopback excepted).
    pub max_clients_per_ip: u32,
    /// Largest inbound message.
    pub max_message_bytes: u32,
    /// Most inbound messages per second per client.
    pub max_messages_per_s: f64,
    /// A client that does not read for this long is disconnected.
    pub stall_timeout_s: f64,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            enabled: true,
            bind: "127.0.0.1".into(),
            port: 8765,
            http_port: 8766,
            web_dir: "/usr/share/phase4/web".into(),
            snapshot_hz: 60.0,
            token: String::new(),
            trust_loopback: true,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_clients: 32,
            max_clients_per_ip: 8,
            max_message_bytes: 65_536,
            max_messages_per_s: 200.0,
            stall_timeout_s: 5.0,
        }
    }
}
