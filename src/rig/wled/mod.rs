//! WLED Audio Sync v2 out: every `wled.interval-ms` (20 ms, WLED's own
//! rate) one 44-byte packet to WLED's multicast group 239.0.0.1:11988, so
//! WLED controllers set to "Receive" react to phase4's input.
//!
//! [`geq`] is WLED's analysis on phase4's audio, [`packet`] the wire layout.
//! The sender lives in the `p4-rig` thread: it takes the audio blocks and
//! phase4's beats and low-band onsets (as WLED's `samplePeak`), sends with a
//! non-blocking socket and counts what the network refused, with a warning
//! (at most one a minute) that says why. A `wled.interface` that is not a
//! local address yet (a DHCP lease that comes late at boot) is tried again
//! every [`REBIND_EVERY`]; until then packets leave by the default route.

pub mod geq;
pub mod packet;

use crate::config::WledConfig;
use crate::service::logging::RateLimit;
use crate::stats::Stats;
use geq::GeqAnalyzer;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an unresolvable `wled.host` is tried again.
const RESOLVE_EVERY: Duration = Duration::from_secs(30);
/// How often a `wled.interface` that could not be bound is tried again.
const REBIND_EVERY: Duration = Duration::from_secs(10);
/// At most one warning about refused packets per this long.
const SEND_WARN_EVERY: Duration = Duration::from_secs(60);

/// Sends Audio Sync packets.
pub struct WledSender {
    cfg: WledConfig,
    sock: UdpSocket,
    dest: Option<SocketAddr>,
    /// Where the resolver thread puts the address, while `wled.host` is a
    /// name not resolved yet.
    resolving: Option<Arc<AtomicU64>>,
    analyzer: Option<GeqAnalyzer>,
    gate_dbfs: f32,
    interval: Duration,
    last: Instant,
    peak: bool,
    stats: Arc<Stats>,
    /// When `wled.interface` could not be bound: when to try again.
    rebind_at: Option<Instant>,
    send_warnings: RateLimit,
    /// The destination the socket is connected to: the kernel then reports
    /// a host that refuses the packets (ICMP port or host unreachable) as
    /// an error of a later send, counted in `wled_failed`; an unconnected
    /// socket never hears of it.
    connected: Option<SocketAddr>,
}

/// A socket for Audio Sync, bound to `local` (the unspecified address:
/// any), with multicast leaving through it.
fn open_socket(local: Ipv4Addr, ttl: u32) -> std::io::Result<UdpSocket> {
    let sock = UdpSocket::bind((local, 0))?;
    sock.set_nonblocking(true)?;
    sock.set_broadcast(true)?;
    sock.set_multicast_ttl_v4(ttl)?;
    if !local.is_unspecified() {
        set_multicast_if(&sock, local)?;
    }
    Ok(sock)
}

fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    (host, port).to_socket_addrs().ok()?.find(|a| a.is_ipv4())
}

/// Resolve a host name on a thread of its own, again every
/// [`RESOLVE_EVERY`] until it resolves: a DNS server or mDNS responder that
/// does not answer holds `getaddrinfo` for seconds, and `p4-rig`, which
/// sends the packets, must not wait on it. The address appears in the
/// returned slot ([`unpack`]); the thread ends once the name resolves or
/// the sender is gone.
fn resolve_in_background(host: String, port: u16) -> std::io::Result<Arc<AtomicU64>> {
    let slot = Arc::new(AtomicU64::new(0));
    let theirs = slot.clone();
    std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-wled-resolve".into())
        .spawn(move || {
            let mut warned = false;
            loop {
                if let Some(SocketAddr::V4(a)) = resolve(&host, port) {
                    theirs.store(pack(a), Ordering::Release);
                    return;
                }
                if !warned {
                    log::warn!(
                        "wled: cannot resolve {host:?}; retrying every {} s",
                        RESOLVE_EVERY.as_secs()
                    );
                    warned = true;
                }
                std::thread::sleep(RESOLVE_EVERY);
                if Arc::strong_count(&theirs) == 1 {
                    return;
                }
            }
        })?;
    Ok(slot)
}

/// An IPv4 address and port in one word for [`resolve_in_background`]'s
/// slot (0: none yet).
fn pack(a: SocketAddrV4) -> u64 {
    (1 << 48) | (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port())
}

fn unpack(v: u64) -> Option<SocketAddr> {
    (v >> 48 == 1).then(|| SocketAddr::from((Ipv4Addr::from((v >> 16) as u32), v as u16)))
}

/// Choose the interface multicast leaves through (IP_MULTICAST_IF).
fn set_multicast_if(sock: &UdpSocket, addr: Ipv4Addr) -> std::io::Result<()> {
    let a = libc::in_addr {
        s_addr: u32::from_ne_bytes(addr.octets()),
    };
    // SAFETY: a valid socket and a pointer to an in_addr of the given size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &a as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::in_addr>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl WledSender {
    /// Open the socket. `gate_dbfs` is phase4's silence threshold.
    pub fn new(cfg: &WledConfig, gate_dbfs: f64, stats: Arc<Stats>) -> std::io::Result<Self> {
        let local: Ipv4Addr = cfg.interface.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let (sock, rebind_at) = match open_socket(local, cfg.ttl) {
            Ok(sock) => (sock, None),
            Err(e) if !local.is_unspecified() => {
                log::warn!(
                    "wled: cannot send from wled.interface {local}: {e}; sending by the default route and trying {local} again every {} s",
                    REBIND_EVERY.as_secs()
                );
                let sock = open_socket(Ipv4Addr::UNSPECIFIED, cfg.ttl)?;
                (sock, Some(Instant::now() + REBIND_EVERY))
            }
            Err(e) => return Err(e),
        };
        // An address is used as it is; a name is looked up off this thread.
        let (dest, resolving) = match cfg.host.parse::<Ipv4Addr>() {
            Ok(ip) => (Some(SocketAddr::from((ip, cfg.port))), None),
            Err(_) => (
                None,
                Some(resolve_in_background(cfg.host.clone(), cfg.port)?),
            ),
        };
        Ok(WledSender {
            cfg: cfg.clone(),
            sock,
            dest,
            resolving,
            analyzer: None,
            gate_dbfs: gate_dbfs as f32,
            interval: Duration::from_millis(cfg.interval_ms as u64),
            last: Instant::now(),
            peak: false,
            stats,
            rebind_at,
            send_warnings: RateLimit::new(SEND_WARN_EVERY),
            connected: None,
        })
    }

    /// Whether packets leave from `wled.interface` (always, when it is
    /// empty).
    pub fn on_interface(&self) -> bool {
        self.rebind_at.is_none()
    }

    /// Try `wled.interface` again once it is due.
    fn rebind(&mut self, now: Instant) {
        if self.rebind_at.is_none_or(|t| now < t) {
            return;
        }
        let local: Ipv4Addr = self.cfg.interface.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        match open_socket(local, self.cfg.ttl) {
            Ok(sock) => {
                log::info!("wled: sending from wled.interface {local} now");
                self.sock = sock;
                self.connected = None;
                self.rebind_at = None;
            }
            Err(_) => self.rebind_at = Some(now + REBIND_EVERY),
        }
    }

    /// Where packets go (once resolved).
    pub fn destination(&self) -> Option<SocketAddr> {
        self.dest
    }

    /// Take one block of input.
    pub fn push(&mut self, samples: &[f32], sample_rate: u32) {
        if sample_rate == 0 {
            return;
        }
        if self
            .analyzer
            .as_ref()
            .is_none_or(|a| a.sample_rate() != sample_rate)
        {
            // First block, or a device switch to a new rate.
            self.analyzer = Some(GeqAnalyzer::new(
                sample_rate,
                self.gate_dbfs,
                self.cfg.gain as f32,
            ));
        }
        if let Some(a) = self.analyzer.as_mut() {
            a.push(samples);
        }
    }

    /// A beat or low-band onset happened (WLED's `samplePeak`).
    pub fn peak(&mut self) {
        self.peak = true;
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Instant {
        self.last + self.interval
    }

    /// Send a packet if one is due.
    pub fn tick(&mut self, now: Instant) {
        if now < self.next_due() {
            return;
        }
        let dt = now
            .duration_since(self.last)
            .as_secs_f32()
            .clamp(0.001, 1.0);
        self.last = if now.duration_since(self.next_due()) < self.interval {
            self.next_due()
        } else {
            now
        };
        if let Some(a) = self
            .resolving
            .as_ref()
            .and_then(|slot| unpack(slot.load(Ordering::Acquire)))
        {
            self.dest = Some(a);
            self.resolving = None;
        }
        let (Some(a), Some(dest)) = (self.analyzer.as_mut(), self.dest) else {
            return;
        };
        let packet = a.analyze(dt, self.peak);
        self.peak = false;
        if self.connected != Some(dest) && self.sock.connect(dest).is_ok() {
            self.connected = Some(dest);
        }
        let sent = if self.connected == Some(dest) {
            self.sock.send(&packet.encode())
        } else {
            self.sock.send_to(&packet.encode(), dest)
        };
        match sent {
            Ok(_) => {
                self.stats.rig.wled_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.rig.wled_failed.fetch_add(1, Ordering::Relaxed);
                if let Some(held) = self.send_warnings.allow() {
                    log::warn!(
                        "wled: cannot send to {dest}: {e} ({held} more refused since the last warning; counted as wled_failed)"
                    );
                }
            }
        }
        self.rebind(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_used_at_once_and_a_name_is_resolved_off_the_thread() {
        let stats = Arc::new(Stats::default());
        let mut cfg = WledConfig {
            host: "127.0.0.1".into(),
            ..WledConfig::default()
        };
        let w = WledSender::new(&cfg, -60.0, stats.clone()).unwrap();
        assert_eq!(
            w.destination(),
            Some(SocketAddr::from(([127, 0, 0, 1], cfg.port)))
        );
        assert!(w.resolving.is_none());
        cfg.host = "localhost".into();
        let mut w = WledSender::new(&cfg, -60.0, stats).unwrap();
        assert!(w.resolving.is_some());
        let deadline = Instant::now() + Duration::from_secs(20);
        while w.destination().is_none() && Instant::now() < deadline {
            w.tick(Instant::now() + Duration::from_secs(1));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            w.destination(),
            Some(SocketAddr::from(([127, 0, 0, 1], cfg.port)))
        );
    }

    #[test]
    fn an_interface_that_is_not_local_yet_is_tried_again_not_fatal() {
        let stats = Arc::new(Stats::default());
        // 192.0.2.1 (TEST-NET-1) is on no interface of a test machine.
        let mut cfg = WledConfig {
            host: "127.0.0.1".into(),
            interface: "192.0.2.1".into(),
            ..WledConfig::default()
        };
        let mut w = WledSender::new(&cfg, -60.0, stats.clone()).unwrap();
        assert!(!w.on_interface());
        // Not before it is due; then again (still not local).
        let due = w.rebind_at.unwrap();
        w.rebind(due - Duration::from_millis(1));
        assert_eq!(w.rebind_at, Some(due));
        w.rebind(due);
        assert!(w.rebind_at.is_some_and(|t| t > due));
        // Once the address is local, the next try takes it.
        cfg.interface = "127.0.0.1".into();
        w.cfg = cfg;
        let again = w.rebind_at.unwrap();
        w.rebind(again);
        assert!(w.on_interface());
        assert_eq!(
            w.sock.local_addr().unwrap().ip(),
            std::net::IpAddr::from([127, 0, 0, 1])
        );
    }

    #[test]
    fn the_slot_carries_any_ipv4_address_and_port() {
        assert_eq!(unpack(0), None);
        for (ip, port) in [
            ([0, 0, 0, 0], 0),
            ([239, 0, 0, 1], 11988),
            ([255, 255, 255, 255], 65535),
        ] {
            let a = SocketAddrV4::new(Ipv4Addr::from(ip), port);
            assert_eq!(unpack(pack(a)), Some(SocketAddr::V4(a)));
        }
    }
}
