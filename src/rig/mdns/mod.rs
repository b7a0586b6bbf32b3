//! mDNS / DNS-SD announcement (`p4-mdns`): the box shows up by name in
//! TouchDesigner's, VDMX's, Chataigne's and ossia score's OSCQuery
//! browsers, in Bonjour browsers and in `avahi-browse`:
//!
//! | service | port | when |
//! |---|---|---|
//! | `_oscjson._tcp` | `oscquery.port` | the OSCQuery server runs beyond loopback |
//! | `_osc._udp` | `oscquery.input-port` | phase4 takes OSC there (otherwise omitted) |
//! | `_http._tcp` | `ws.http-port` | the UI runs beyond loopback |
//!
//! A service bound to 127.0.0.1 is not announced: nobody else could reach
//! it. Each carries TXT records a browser shows (`txtvers`, `app`,
//! `version`, and the other ports).
//!
//! Two backends ([`DiscoveryBackend`]): with avahi-daemon running (the
//! Raspberry Pi OS default) phase4 registers its services through avahi's
//! D-Bus API ([`avahi`]), so there is one responder on the box and avahi's
//! host name, conflict handling and interface tracking are used; without
//! it, phase4 answers mDNS itself ([`builtin`], the `mdns-sd` crate). In
//! "auto" mode the thread looks again every few seconds and moves to
//! avahi when it appears (withdrawing its own answers first) or back to
//! its own when avahi goes away.

mod avahi;
mod builtin;

use super::mdns_state;
use crate::config::{Config, DiscoveryBackend};
use crate::stats::Stats;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the backend is checked (avahi appearing or going away).
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long `p4-mdns` sleeps between looks.
const IDLE_SLEEP: Duration = Duration::from_millis(100);

/// One service to announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// DNS-SD type without domain, e.g. `_oscjson._tcp`.
    pub kind: &'static str,
    /// Port.
    pub port: u16,
    /// TXT records as key, value.
    pub txt: Vec<(String, String)>,
    /// The one address it listens on, when it is bound to one
    /// (`None`: every address of the machine).
    pub addr: Option<std::net::IpAddr>,
}

/// What is announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// Instance name (the same for every service).
    pub name: String,
    /// The services.
    pub services: Vec<Service>,
}

/// The address a service bound to `bind` is reached at, when it is one
/// address rather than all of them (`0.0.0.0`, `::`).
fn one_address(bind: &str) -> Option<std::net::IpAddr> {
    // `fe80::1%eth0`: the address without its scope (review ac: it did not
    // parse, and the service was announced at every address again).
    let bare = bind.split('%').next().unwrap_or(bind);
    bare.parse::<std::net::IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified())
}

fn beyond_loopback(bind: &str) -> bool {
    bind.parse::<std::net::IpAddr>()
        .map(|ip| !ip.is_loopback())
        .unwrap_or(false)
}

/// The host name (without domain).
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or("").to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "phase4".into())
}

/// What `config` announces.
pub fn announcement(config: &Config) -> Announcement {
    let name = if config.discovery.name.is_empty() {
        host_name()
    } else {
        config.discovery.name.clone()
    };
    let base = || {
        vec![
            ("txtvers".to_string(), "1".to_string()),
            ("app".to_string(), "phase4".to_string()),
            ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ]
    };
    let q = &config.oscquery;
    let mut services = Vec::new();
    if q.enabled && beyond_loopback(&q.bind) {
        let mut txt = base();
        txt.push(("path".into(), "/".into()));
        if q.input_port != 0 {
            txt.push(("osc".into(), q.input_port.to_string()));
        }
        services.push(Service {
            kind: "_oscjson._tcp",
            port: q.port,
            txt,
            addr: one_address(&q.bind),
        });
        if q.input_port != 0 {
            let mut txt = base();
            txt.push(("oscquery".into(), q.port.to_string()));
            services.push(Service {
                kind: "_osc._udp",
                port: q.input_port,
                txt,
                addr: one_address(&q.bind),
            });
        }
    }
    let ws = &config.ws;
    if ws.enabled && beyond_loopback(&ws.bind) {
        let mut txt = base();
        txt.push(("path".into(), "/".into()));
        txt.push(("ws".into(), ws.port.to_string()));
        services.push(Service {
            kind: "_http._tcp",
            port: ws.http_port,
            txt,
            addr: one_address(&ws.bind),
        });
    }
    Announcement { name, services }
}

/// A way of announcing.
trait Backend {
    /// Still announcing (false: the responder went away).
    fn alive(&mut self) -> bool;
    /// Names the backend gave up since the last call because another host
    /// answered for them (RFC 6762 §9), as (given up, now announced).
    fn renamed(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Withdraw everything (goodbye packets / free the entry group).
    fn withdraw(self: Box<Self>);
}

/// Start `p4-mdns`, or nothing when there is nothing to announce.
pub fn spawn(
    config: &Config,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Option<JoinHandle<()>>> {
    let a = announcement(config);
    if a.services.is_empty() {
        log::warn!("discovery: nothing to announce beyond this machine (ws.bind and oscquery.bind are loopback addresses)");
        return Ok(None);
    }
    let mode = config.discovery.backend;
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-mdns".into())
        .spawn(move || run(a, mode, &stats, &stop))
        .map(Some)
}

fn start(a: &Announcement, mode: DiscoveryBackend) -> Option<(Box<dyn Backend>, u8)> {
    if mode != DiscoveryBackend::Builtin {
        match avahi::Avahi::register(a) {
            Ok(b) => return Some((Box::new(b), mdns_state::AVAHI)),
            Err(e) => log::info!("discovery: avahi-daemon not usable: {e}"),
        }
    }
    if mode != DiscoveryBackend::Avahi {
        match builtin::Builtin::register(a) {
            Ok(b) => return Some((Box::new(b), mdns_state::BUILTIN)),
            Err(e) => log::warn!("discovery: cannot answer mDNS: {e}"),
        }
    }
    None
}

fn run(a: Announcement, mode: DiscoveryBackend, stats: &Stats, stop: &AtomicBool) {
    let mut current: Option<(Box<dyn Backend>, u8)> = None;
    let mut last_check: Option<Instant> = None;
    let kinds: Vec<&str> = a.services.iter().map(|s| s.kind).collect();
    while !stop.load(Ordering::Relaxed) {
        if last_check.is_none_or(|t| t.elapsed() >= CHECK_EVERY) {
            last_check = Some(Instant::now());
            let alive = current.as_mut().is_some_and(|(b, _)| b.alive());
            // In auto mode, our own responder gives way to avahi-daemon.
            let avahi_appeared = mode == DiscoveryBackend::Auto
                && current
                    .as_ref()
                    .is_some_and(|(_, s)| *s == mdns_state::BUILTIN)
                && avahi::available();
            if !alive || avahi_appeared {
                if let Some((b, _)) = current.take() {
                    b.withdraw();
                }
                current = start(&a, mode);
                let state = current.as_ref().map_or(mdns_state::WAITING, |(_, s)| *s);
                stats.rig.mdns_state.store(state, Ordering::Relaxed);
                if let Some((_, s)) = current.as_ref() {
                    log::info!(
                        "discovery: announcing {:?} as {:?} through {}",
                        kinds,
                        a.name,
                        mdns_state::NAMES[*s as usize]
                    );
                }
            }
        }
        if let Some((b, _)) = current.as_mut() {
            for (was, now) in b.renamed() {
                log::warn!(
                    "discovery: another host on the LAN answers for {was:?}: announcing as {now:?} instead (an mDNS name conflict; until the responder restarts)"
                );
            }
        }
        std::thread::sleep(IDLE_SLEEP);
    }
    if let Some((b, _)) = current.take() {
        b.withdraw();
    }
    stats
        .rig
        .mdns_state
        .store(mdns_state::OFF, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_bound_to_one_address_names_it_scoped_or_not() {
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        assert_eq!(one_address("10.0.0.5"), ip("10.0.0.5"));
        assert_eq!(one_address("fe80::1%eth0"), ip("fe80::1"));
        assert_eq!(one_address("0.0.0.0"), None);
        assert_eq!(one_address("::"), None);
        assert_eq!(one_address("stage-pi.lan"), None);
    }

    #[test]
    fn only_services_reachable_from_the_lan_are_announced() {
        let mut c = Config::default();
        c.discovery.enabled = true;
        assert!(announcement(&c).services.is_empty(), "loopback binds");
        c.ws.bind = "0.0.0.0".into();
        c.oscquery.enabled = true;
        c.oscquery.bind = "0.0.0.0".into();
        let a = announcement(&c);
        let kinds: Vec<_> = a.services.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            ["_oscjson._tcp", "_http._tcp"],
            "no _osc._udp without input"
        );
        c.oscquery.input_port = 9002;
        c.discovery.name = "stage-left".into();
        let a = announcement(&c);
        assert_eq!(a.name, "stage-left");
        let osc = a.services.iter().find(|s| s.kind == "_osc._udp").unwrap();
        assert_eq!(osc.port, 9002);
        assert!(osc.txt.contains(&("oscquery".into(), "8767".into())));
        let http = a.services.iter().find(|s| s.kind == "_http._tcp").unwrap();
        assert_eq!(http.port, 8766);
        assert!(http.txt.contains(&("ws".into(), "8765".into())));
    }
}
