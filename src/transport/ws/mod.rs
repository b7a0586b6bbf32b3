//! The WebSocket server: the Python feature server's protocol (see
//! [`protocol`] and docs/protocol.md) on synchronous `tungstenite`.
//!
//! Threads:
//! - `p4-ws-accept` accepts connections and runs the handshakes, all on one
//!   thread with deadlines and caps (Host and Origin checks, `?token=`,
//!   client caps; see [`accept`]);
//! - `p4-ws` is the broadcaster: one thread that owns every client socket
//!   (non-blocking), drains the workers' frame rings, sends snapshots at
//!   `ws_snapshot_hz`, FFT frames, events and `server_status`, reads
//!   inbound messages within per-client budgets, and hands commands to the
//!   control thread.
//!
//! Not a real-time thread, and it never makes one wait: the workers push
//! into bounded rings and drop when they are full; each client has bounded
//! queues and a non-blocking socket (see [`client`]).
//!
//! Who may do what: anyone who can connect (and passes the Host and Origin
//! checks) may watch; changing anything needs the control secret (see
//! [`crate::control::secret`]) unless the client is on this machine.

pub mod accept;
mod audio;
pub mod client;
pub mod conn;
pub mod guesses;
mod inbound;
mod localtime;
mod meta;
pub mod parse;
pub mod protocol;
pub mod registry;
mod server;
mod status;

use crate::config::Config;
use crate::control::secret::{self, Secret, Source};
use crate::control::{Reply, Request, Shared};
use crate::stats::Stats;
use crate::transport::hosts::HostCheck;
use crate::types::{BandsFrame, SpectrumFrame};
use ringbuf::HeapCons;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Everything the WebSocket threads are given.
pub struct WsCtx {
    /// The configuration as started (ports, limits, token).
    pub config: Config,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// Fired with `stop`: ends the acceptor's wait at once.
    pub stop_fd: crate::rt::StopFd,
    /// The settings in force (for meta).
    pub shared: Arc<Shared>,
    /// Commands to the control thread.
    pub requests: Sender<Request>,
    /// Its answers.
    pub replies: Receiver<Reply>,
    /// The monitor stream and the recorder (see [`audio`]).
    pub monitor: Option<crate::monitor::MonitorLink>,
    /// The control secret ([`secret::load_or_create`]).
    pub secret: Secret,
}

/// Whether binding to `bind` exposes the server beyond this machine.
pub fn beyond_loopback(bind: &str) -> bool {
    bind.parse::<std::net::IpAddr>()
        .map(|ip| !ip.is_loopback())
        .unwrap_or(true)
}

/// File descriptors the servers may hold at most: WebSocket clients and
/// handshakes, HTTP connections (the OSCQuery server's too), and room for
/// everything else.
pub fn fds_needed(config: &Config) -> u64 {
    let oscquery = if config.oscquery.enabled {
        crate::transport::http::MAX_CONNECTIONS as u64 + config.oscquery.max_clients as u64
    } else {
        0
    };
    config.ws.max_clients as u64
        + accept::MAX_PENDING as u64
        + crate::transport::http::MAX_CONNECTIONS as u64
        + oscquery
        // Each OSC destination's sockets (two for a host name), the old
        // set and the new one while a restart of the sender overlaps.
        + 4 * crate::config::MAX_OSC_DESTINATIONS as u64
        + 128
}

/// Raise the soft limit on open files towards the hard one when the caps
/// could need more (systemd's default soft limit is 1024). The caps keep
/// the servers under it either way; this is headroom.
fn raise_fd_limit(needed: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    // rlim_t is 32 bits on armhf.
    let needed = nix::libc::rlim_t::try_from(needed).unwrap_or(nix::libc::rlim_t::MAX);
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < needed {
            let want = needed.clamp(4096.min(hard), hard);
            if want > soft && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
                log::info!("ws: raised the open-file limit from {soft} to {want}");
            }
        }
    }
}

/// Bind the port and start the acceptor and the broadcaster. Binding
/// happens here, so a taken port is a start-up error.
/// Returns the threads and what the UI server tells pages about the
/// places ([`registry::Places`]).
pub fn spawn(
    ctx: WsCtx,
    bands: HeapCons<BandsFrame>,
    spectrum: HeapCons<SpectrumFrame>,
) -> std::io::Result<(Vec<JoinHandle<()>>, registry::Places)> {
    let ws = &ctx.config.ws;
    raise_fd_limit(fds_needed(&ctx.config));
    let listener = crate::transport::bind::tcp(&ws.bind, ws.port, "ws")?;
    let secret = ctx.secret.clone();
    log::info!(
        "ws: listening on ws://{}:{}; watching is open, changing settings needs the control token{}{}",
        ws.bind,
        ws.port,
        match &secret.source {
            Source::Config => " (ws.token)".to_string(),
            // `phase4 token` reads the default configuration: its hint fits
            // the installed service, not a run on a state directory of its
            // own (scripts/demo.sh's), where the path is what helps.
            Source::File(p) if p.starts_with(crate::config::StateConfig::default().dir) => {
                format!(" ({}; show it with: sudo phase4 token)", p.display())
            }
            Source::File(p) => format!(" ({})", p.display()),
            Source::Ephemeral => " (generated for this run only)".to_string(),
        },
        if ws.trust_loopback {
            " except on this machine"
        } else {
            ""
        }
    );
    let max = ws.max_message_bytes as usize;
    // Messages up to 4x the limit are read and answered with an error;
    // larger ones close the connection (1009) without being buffered.
    let wsc = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max * 4))
        .max_frame_size(Some(max * 4))
        // tungstenite 0.26 reads into a 128 KiB buffer per client by
        // default: 2.5 MiB of resident memory for 20 clients. Clients send
        // little (commands), and reads are budgeted per turn anyway.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(256 * 1024);
    let policy = accept::Policy {
        secret: secret.clone(),
        trust_loopback: ws.trust_loopback,
        http_port: ws.http_port,
        allowed_origins: ws.allowed_origins.clone(),
        hosts: HostCheck::new(&ws.allowed_hosts, &ws.bind),
        max_clients: ws.max_clients as usize,
        max_clients_per_ip: ws.max_clients_per_ip as usize,
        ws_config: wsc,
    };
    let registry = Arc::new(registry::Registry::default());
    let places = registry::Places {
        registry: registry.clone(),
        max: policy.max_clients,
        max_per_ip: policy.max_clients_per_ip,
        trust_loopback: policy.trust_loopback,
    };
    let (acc_tx, acc_rx) = std::sync::mpsc::channel();
    let wake = Arc::new(crate::rt::Wake::new());
    let acceptor = accept::spawn(
        listener,
        policy,
        registry.clone(),
        acc_tx,
        wake.clone(),
        ctx.stop.clone(),
        ctx.stop_fd.clone(),
    )?;
    let broadcaster = server::spawn(ctx, secret, acc_rx, wake, registry, bands, spectrum)?;
    Ok((vec![acceptor, broadcaster], places))
}

/// What `phase4 token` prints: the control token in force for `config`
/// (creating the generated one if the service never ran) and the UI
/// addresses to open with it.
pub fn token_report(config: &Config) -> Result<String, String> {
    let ws = &config.ws;
    let (token, from) = token_in_force(config)?;
    let mut out = format!(
        "{token}

(from {from})
"
    );
    let hosts = ui_hosts(&ws.bind);
    if beyond_loopback(&ws.bind) && !hosts.is_empty() {
        out.push_str(
            "
Open the UI once with the token (the browser keeps it), e.g.
",
        );
        let encoded = url_encode(&token);
        for h in hosts {
            out.push_str(&format!(
                "  http://{h}:{}/#token={encoded}
",
                ws.http_port
            ));
        }
        out.push_str(
            "or type it into the \"Unlock\" field of the UI. The browser's history keeps
the link, token and all: on a shared machine open it in a private window,
or type the token in.
",
        );
    } else {
        out.push_str(&format!(
            "
The UI listens on {} only (ws.bind); on this machine no token is needed{}.
",
            ws.bind,
            if ws.trust_loopback {
                ""
            } else {
                " once entered"
            }
        ));
    }
    Ok(out)
}

/// The control token and where it comes from: `ws.token`, or the
/// generated one in the state dir (created if the service never ran).
fn token_in_force(config: &Config) -> Result<(String, String), String> {
    let ws = &config.ws;
    if !ws.token.is_empty() {
        return Ok((
            ws.token.clone(),
            "ws.token in the configuration".to_string(),
        ));
    }
    let dir = config
        .state_dir()
        .ok_or("no ws.token and no [state] dir to keep a generated one in: set ws.token")?;
    let t = secret::file_token(&dir).map_err(|e| {
        format!(
            "cannot read or create {}: {e}",
            dir.join(secret::TOKEN_FILE).display()
        )
    })?;
    Ok((t, dir.join(secret::TOKEN_FILE).display().to_string()))
}

/// `s` as a URL's query or fragment value: every byte but the unreserved
/// ones as `%XX`, so a hand-set token with `+`, `&`, `#` or `%` reaches the
/// UI (which reads it with `URLSearchParams`) as it is.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The addresses a browser elsewhere can reach the UI at, as URL hosts:
/// the one `bind` names, or every interface's (but loopback and
/// link-local) when it is unspecified: IPv4 ones for `0.0.0.0` (an IPv4
/// socket), both families for `::` (dual-stack); none when `bind` is not
/// an address.
fn ui_hosts(bind: &str) -> Vec<String> {
    match bind.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() => crate::transport::hosts::interface_addresses()
            .into_iter()
            .filter(|a| !a.is_loopback() && !is_link_local(a))
            .filter(|a| ip.is_ipv6() || a.is_ipv4())
            .map(url_host)
            .collect(),
        Ok(ip) => vec![url_host(ip)],
        Err(_) => Vec::new(),
    }
}

/// An address as the host part of a URL (IPv6 in brackets).
fn url_host(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}

fn is_link_local(a: &std::net::IpAddr) -> bool {
    match a {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui_hosts_are_the_bound_address_with_ipv6_in_brackets() {
        assert_eq!(ui_hosts("192.168.1.20"), ["192.168.1.20"]);
        assert_eq!(ui_hosts("fd00::7"), ["[fd00::7]"]);
        assert!(ui_hosts("stage.local").is_empty(), "not an address");
        for h in ui_hosts("0.0.0.0") {
            assert!(
                !h.starts_with("127.") && !h.starts_with('['),
                "{h}: 0.0.0.0 is IPv4 only"
            );
        }
        for h in ui_hosts("::") {
            assert!(!h.starts_with("127.") && h != "[::1]", "{h}");
        }
    }

    #[test]
    fn the_token_in_a_link_is_percent_encoded() {
        assert_eq!(url_encode("Ab9-._~"), "Ab9-._~");
        assert_eq!(
            url_encode("ab+cd/ef==gh&i#j%k l"),
            "ab%2Bcd%2Fef%3D%3Dgh%26i%23j%25k%20l"
        );
        let mut config = Config::default();
        config.ws.token = "ab+cd/ef==ghij".into();
        config.ws.bind = "192.168.1.20".into();
        let report = token_report(&config).unwrap();
        assert!(report.starts_with("ab+cd/ef==ghij\n"), "{report}");
        assert!(
            report.contains("http://192.168.1.20:8766/#token=ab%2Bcd%2Fef%3D%3Dghij\n"),
            "{report}"
        );
    }

    #[test]
    fn a_configured_token_is_reported_as_coming_from_the_configuration() {
        let mut config = Config::default();
        config.ws.token = "s3cret-token".into();
        assert_eq!(
            token_in_force(&config).unwrap(),
            (
                "s3cret-token".to_string(),
                "ws.token in the configuration".to_string()
            )
        );
        let report = token_report(&config).unwrap();
        assert!(
            report.starts_with("s3cret-token\n\n(from ws.token"),
            "{report}"
        );
    }
}
