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
/// How often our own responder's record cache is counted.
const CACHE_CHECK_EVERY: Duration = Duration::from_millis(250);
/// How often instead while it holds more than half of
/// [`MAX_CACHED_RECORDS`] (a flood): what arrives between two counts comes
/// on top of the limit, and glibc keeps the peak of each of its two malloc
/// arenas ([`crate::rt::limit_malloc_arenas`]), so a flood costs about
/// twice the largest cache it ever saw. Counted every 50 ms, a flood of
/// ~6700 records/s peaks at ~2400 records instead of ~3700 to ~5000
/// (a count delayed on a busy machine).
const CACHE_CHECK_FLOOD: Duration = Duration::from_millis(50);
/// How long `p4-mdns` sleeps between looks when no flood is under way.
const IDLE_SLEEP: Duration = Duration::from_millis(100);
/// Records of other hosts our own responder may hold before it is
/// restarted to drop them. `mdns-sd` caches every response it sees that
/// carries no PTR record, with no limit, until the records' TTL runs out
/// (an hour or more if the sender says so): on a venue LAN anyone can send
/// such responses to 224.0.0.251 and grow phase4's memory without end. A
/// busy LAN's own chatter is a few hundred records; one of up to ~1 KB
/// (names of 255 bytes) makes this ~2 MB at most, plus what arrives
/// within one [`CACHE_CHECK_EVERY`]. A TXT record, whose data may fill a
/// datagram, counts as [`builtin::TXT_WEIGHT`] records. The restart sends
/// goodbye packets and announces again, so browsers lose the box for a
/// second or two; only a flood causes it.
pub const MAX_CACHED_RECORDS: u64 = 2048;
/// At most one warning about restarts this often (a flood would otherwise
/// log a line a second).
const CACHE_WARN_EVERY: Duration = Duration::from_secs(60);

/// One service to announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// DNS-SD type without domain, e.g. `_oscjson._tcp`.
    pub kind: &'static str,
    /// Port.
    pub port: u16,
    /// TXT records as key, value.
    pub txt: Vec<(String, String)>,
}

/// What is announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// Instance name (the same for every service).
    pub name: String,
    /// The services.
    pub services: Vec<Service>,
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
        });
        if q.input_port != 0 {
            let mut txt = base();
            txt.push(("oscquery".into(), q.port.to_string()));
            services.push(Service {
                kind: "_osc._udp",
                port: q.input_port,
                txt,
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
        });
    }
    Announcement { name, services }
}

/// A way of announcing.
trait Backend {
    /// Still announcing (false: the responder went away).
    fn alive(&mut self) -> bool;
    /// Records of other hosts the backend holds in memory (None: not ours
    /// to bound: avahi-daemon keeps its own cache, limited by avahi).
    fn cached_records(&mut self) -> Option<u64> {
        None
    }
    /// Names the backend gave up since the last call because another host
    /// answered for them (RFC 6762 §9), as (given up, now announced).
    fn renamed(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Withdraw everything (goodbye packets / free the entry group).
    fn withdraw(self: Box<Self>);
}

/// Counts the backend's cache every [`CACHE_CHECK_EVERY`] (every
/// [`CACHE_CHECK_FLOOD`] while it is filling) and says when it must be
/// restarted, with a warning at most every [`CACHE_WARN_EVERY`] that counts
/// the restarts since the last one.
#[derive(Default)]
struct CacheGuard {
    last_count: Option<Instant>,
    last_warn: Option<Instant>,
    restarts: u64,
    /// The last count was beyond half the limit.
    filling: bool,
}

impl CacheGuard {
    fn every(&self) -> Duration {
        if self.filling {
            CACHE_CHECK_FLOOD
        } else {
            CACHE_CHECK_EVERY
        }
    }

    fn over_limit(&mut self, b: &mut dyn Backend) -> bool {
        if self.last_count.is_some_and(|t| t.elapsed() < self.every()) {
            return false;
        }
        self.last_count = Some(Instant::now());
        let n = b.cached_records();
        self.filling = n.is_some_and(|n| n > MAX_CACHED_RECORDS / 2);
        let Some(n) = n.filter(|&n| n > MAX_CACHED_RECORDS) else {
            return false;
        };
        self.restarts += 1;
        log::debug!(
            "discovery: our mDNS responder holds {n} records of other hosts: restarting it"
        );
        if self
            .last_warn
            .is_none_or(|t| t.elapsed() >= CACHE_WARN_EVERY)
        {
            self.last_warn = Some(Instant::now());
            log::warn!(
                "discovery: our mDNS responder held {n} records sent by other hosts \
                 (a TXT record counting as {}; limit {MAX_CACHED_RECORDS}: a flood on the LAN?); restarted to drop them \
                 ({} restart(s) since the last warning); browsers lose this box for a moment each time",
                builtin::TXT_WEIGHT,
                self.restarts
            );
            self.restarts = 0;
        }
        true
    }
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
            Err(e) => log::debug!("discovery: avahi-daemon not usable: {e}"),
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
    let mut cache = CacheGuard::default();
    let kinds: Vec<&str> = a.services.iter().map(|s| s.kind).collect();
    while !stop.load(Ordering::Relaxed) {
        let flooded = current
            .as_mut()
            .is_some_and(|(b, _)| cache.over_limit(b.as_mut()));
        if flooded || last_check.is_none_or(|t| t.elapsed() >= CHECK_EVERY) {
            last_check = Some(Instant::now());
            let alive = !flooded && current.as_mut().is_some_and(|(b, _)| b.alive());
            // In auto mode, our own responder gives way to avahi-daemon.
            let avahi_appeared = mode == DiscoveryBackend::Auto
                && current
                    .as_ref()
                    .is_some_and(|(_, s)| *s == mdns_state::BUILTIN)
                && avahi::available();
            if !alive || avahi_appeared {
                let before = current.take().map(|(b, s)| {
                    b.withdraw();
                    s
                });
                current = start(&a, mode);
                let state = current.as_ref().map_or(mdns_state::WAITING, |(_, s)| *s);
                stats.rig.mdns_state.store(state, Ordering::Relaxed);
                // A restart after a flood says so in its own (rate-limited)
                // warning, not once a second here.
                let news = !flooded || before != Some(state);
                if let Some((_, s)) = current.as_ref().filter(|_| news) {
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
        std::thread::sleep(if cache.filling {
            CACHE_CHECK_FLOOD
        } else {
            IDLE_SLEEP
        });
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

    /// A backend whose cache holds what the test says.
    struct Cached(Option<u64>);

    impl Backend for Cached {
        fn alive(&mut self) -> bool {
            true
        }
        fn cached_records(&mut self) -> Option<u64> {
            self.0
        }
        fn withdraw(self: Box<Self>) {}
    }

    #[test]
    fn the_cache_is_counted_every_quarter_second_and_bounded() {
        let mut g = CacheGuard::default();
        let mut b = Cached(Some(MAX_CACHED_RECORDS));
        assert!(!g.over_limit(&mut b), "at the limit is allowed");
        b.0 = Some(MAX_CACHED_RECORDS + 1);
        assert!(!g.over_limit(&mut b), "counted again only after 0.25 s");
        std::thread::sleep(CACHE_CHECK_EVERY);
        assert!(g.over_limit(&mut b), "beyond the limit: restart");
        assert_eq!(g.restarts, 0, "the first restart is warned about at once");
        std::thread::sleep(CACHE_CHECK_EVERY);
        assert!(g.over_limit(&mut b));
        assert_eq!(
            g.restarts, 1,
            "the next ones are counted for the next warning"
        );
        std::thread::sleep(CACHE_CHECK_EVERY);
        b.0 = None;
        assert!(
            !g.over_limit(&mut b),
            "a backend that cannot say is left alone"
        );
        let mut avahi = Cached(None);
        std::thread::sleep(CACHE_CHECK_EVERY);
        assert!(!g.over_limit(&mut avahi));
    }

    #[test]
    fn a_filling_cache_is_counted_more_often() {
        let mut g = CacheGuard::default();
        let mut b = Cached(Some(MAX_CACHED_RECORDS / 2));
        assert!(!g.over_limit(&mut b));
        assert!(!g.filling, "half the limit is a busy LAN, not a flood");
        b.0 = Some(MAX_CACHED_RECORDS + 1);
        std::thread::sleep(CACHE_CHECK_FLOOD);
        assert!(!g.over_limit(&mut b), "not filling: counted after 0.25 s");
        std::thread::sleep(CACHE_CHECK_EVERY);
        b.0 = Some(MAX_CACHED_RECORDS / 2 + 1);
        assert!(!g.over_limit(&mut b));
        assert!(g.filling);
        b.0 = Some(MAX_CACHED_RECORDS + 1);
        assert!(!g.over_limit(&mut b), "not before 50 ms");
        std::thread::sleep(CACHE_CHECK_FLOOD);
        assert!(g.over_limit(&mut b), "filling: counted again after 50 ms");
        assert!(g.filling, "the new responder is watched as closely");
        b.0 = Some(10);
        std::thread::sleep(CACHE_CHECK_FLOOD);
        assert!(!g.over_limit(&mut b));
        assert!(!g.filling, "the flood is over: back to 0.25 s");
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
