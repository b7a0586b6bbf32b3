//! OSC destinations: where datagrams go, how host names become addresses,
//! and sending one frame's datagrams to all of them.
//!
//! Each destination fails alone. Each has sockets of its own: datagrams
//! waiting for a receiver's link-layer address (a laptop that left the
//! network: the kernel holds them while it asks) are charged to the socket
//! that sent them, and with one socket for all destinations they filled its
//! send buffer, so every other destination, loopback included, got EAGAIN
//! for as long as that receiver was gone (tester aa: 72 % of a healthy
//! desk's datagrams lost over two minutes). A datagram the kernel refuses
//! for one destination (no route, unreachable network, broadcast not
//! allowed, a full buffer) marks that destination down for the rest of the
//! batch (the frames one wake-up of the sender found) and sending goes on
//! with the next one.
//!
//! Name resolution never runs on the sending thread: literal addresses are
//! parsed at start; host names are resolved by `p4-osc-resolve`, which hands
//! new addresses to the sender through a small lock-free ring. A resolver
//! that hangs (a DNS server that does not answer) delays only the names
//! waiting behind it, never a datagram, READY or the watchdog.

use crate::config::OscDestination;
use crate::stats::{OscDestStats, Stats};
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use crate::config::MAX_OSC_DESTINATIONS as MAX_DESTINATIONS;

/// Datagrams handed to one `sendmmsg` call.
const MMSG_BATCH: usize = 64;

/// A new address for destination `.0` (`None`: the name stopped resolving).
type Update = (usize, Option<SocketAddr>);

/// The literal address of a destination, if its host is one (`10.0.0.5`,
/// `::1`, `[::1]`).
pub fn literal(d: &OscDestination) -> Option<SocketAddr> {
    let h = d.host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(h);
    h.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, d.port))
}

/// The addresses the sender currently sends to, one slot per configured
/// destination, and the ring through which the resolver updates them.
pub struct Destinations {
    addrs: Vec<Option<SocketAddr>>,
    updates: Option<HeapCons<Update>>,
    /// Each destination's own sockets (see the module's documentation).
    socks: Vec<Sockets>,
    stats: Arc<Stats>,
    /// Destinations that refused a datagram in the current frame.
    down: [bool; MAX_DESTINATIONS],
}

/// One destination's sockets: IPv4 and IPv6 for a host name (it may
/// resolve to either later), the one its family needs for an address.
struct Sockets {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
}

impl Sockets {
    fn open(d: &OscDestination, literal: Option<SocketAddr>) -> std::io::Result<Self> {
        let v4 = if literal.is_none_or(|a| a.is_ipv4()) {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_nonblocking(true)?;
            s.set_broadcast(true)?;
            s.set_multicast_ttl_v4(d.ttl)?;
            Some(s)
        } else {
            None
        };
        // A host without IPv6 has no IPv6 destinations to send to either.
        let v6 = if literal.is_none_or(|a| a.is_ipv6()) {
            UdpSocket::bind("[::]:0").ok().and_then(|s| {
                s.set_nonblocking(true).ok()?;
                // `ttl` for an IPv6 multicast group too (review ab: it
                // went out with a hop limit of 1 whatever was set).
                if let Err(e) = set_multicast_hops_v6(&s, d.ttl) {
                    log::warn!(
                        "osc: {}: cannot set the IPv6 multicast hop limit: {e}",
                        d.host
                    );
                }
                Some(s)
            })
        } else {
            None
        };
        Ok(Sockets { v4, v6 })
    }

    fn for_addr(&self, addr: &SocketAddr) -> Option<&UdpSocket> {
        if addr.is_ipv6() {
            self.v6.as_ref()
        } else {
            self.v4.as_ref()
        }
    }
}

impl Destinations {
    /// Open the sockets and take the literal addresses. Host names get their
    /// address later, from the resolver returned alongside (if any name
    /// needs one).
    pub fn new(
        list: &[OscDestination],
        stats: Arc<Stats>,
        resolve_every: Duration,
    ) -> std::io::Result<(Self, Option<Resolver>)> {
        let list = &list[..list.len().min(MAX_DESTINATIONS)];
        let addrs: Vec<Option<SocketAddr>> = list.iter().map(literal).collect();
        let socks = list
            .iter()
            .zip(&addrs)
            .map(|(d, a)| Sockets::open(d, *a))
            .collect::<std::io::Result<Vec<_>>>()?;
        let names: Vec<(usize, OscDestination)> = list
            .iter()
            .enumerate()
            .filter(|(i, _)| addrs[*i].is_none())
            .map(|(i, d)| (i, d.clone()))
            .collect();
        let (resolver, updates) = if names.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = HeapRb::<Update>::new(4 * MAX_DESTINATIONS).split();
            let r = Resolver {
                names,
                tx,
                every: resolve_every,
                stats: stats.clone(),
            };
            (Some(r), Some(rx))
        };
        for (i, a) in addrs.iter().enumerate() {
            stats.osc_dests[i]
                .resolved
                .store(a.is_some(), Ordering::Relaxed);
        }
        let dests = Destinations {
            addrs,
            updates,
            socks,
            stats,
            down: [false; MAX_DESTINATIONS],
        };
        Ok((dests, resolver))
    }

    /// The addresses known now (unresolved names are left out).
    pub fn resolved(&self) -> Vec<SocketAddr> {
        self.addrs.iter().flatten().copied().collect()
    }

    /// Take the addresses the resolver found since the last call.
    pub fn poll_updates(&mut self) {
        if let Some(rx) = self.updates.as_mut() {
            while let Some((i, a)) = rx.try_pop() {
                if let Some(slot) = self.addrs.get_mut(i) {
                    *slot = a;
                }
            }
        }
    }

    /// Send the datagrams `spans` of `buf` to every destination.
    pub fn send(&mut self, buf: &[u8], spans: &[(usize, usize)]) {
        if spans.is_empty() {
            return;
        }
        self.down = [false; MAX_DESTINATIONS];
        let mut batch = Batch::new();
        for (d, (addr, socks)) in self.addrs.iter().zip(&self.socks).enumerate() {
            let Some(addr) = addr else { continue };
            let Some(sock) = socks.for_addr(addr) else {
                continue;
            };
            for &(a, b) in spans {
                if batch.is_full() {
                    batch.send(sock, &self.stats, &mut self.down);
                }
                if self.down[d] {
                    let e = self.stats.osc_dests[d].last_errno.load(Ordering::Relaxed);
                    count(&self.stats, d, false, e);
                } else {
                    batch.push(d, &buf[a..b], addr);
                }
            }
            batch.send(sock, &self.stats, &mut self.down);
        }
    }
}

/// Datagrams for one `sendmmsg` call to one destination.
struct Batch {
    iov: [libc::iovec; MMSG_BATCH],
    addrs: [libc::sockaddr_storage; MMSG_BATCH],
    hdrs: [libc::mmsghdr; MMSG_BATCH],
    owner: [usize; MMSG_BATCH],
    n: usize,
}

impl Batch {
    fn new() -> Self {
        Batch {
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MMSG_BATCH],
            // SAFETY: sockaddr_storage and mmsghdr are plain C structs for
            // which all-zero bytes are a valid value.
            addrs: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            hdrs: unsafe { std::mem::zeroed() },
            owner: [0; MMSG_BATCH],
            n: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.n == MMSG_BATCH
    }

    fn push(&mut self, dest: usize, datagram: &[u8], addr: &SocketAddr) {
        let n = self.n;
        self.iov[n].iov_base = datagram.as_ptr() as *mut libc::c_void;
        self.iov[n].iov_len = datagram.len();
        self.hdrs[n].msg_hdr.msg_namelen = write_sockaddr(addr, &mut self.addrs[n]);
        self.owner[n] = dest;
        self.n += 1;
    }

    /// Send everything queued. Datagrams go out in order; at a refusal the
    /// refused destination is marked down, its remaining datagrams in this
    /// batch are counted as failed, and sending resumes after them. A full
    /// socket buffer (EAGAIN) fails the rest of the batch: retrying now
    /// would only spin.
    fn send(&mut self, sock: &UdpSocket, stats: &Stats, down: &mut [bool; MAX_DESTINATIONS]) {
        let n = self.n;
        self.n = 0;
        for k in 0..n {
            // Pointers are set here, after the arrays stopped moving.
            self.hdrs[k].msg_hdr.msg_name = &mut self.addrs[k] as *mut _ as *mut libc::c_void;
            self.hdrs[k].msg_hdr.msg_iov = &mut self.iov[k];
            self.hdrs[k].msg_hdr.msg_iovlen = 1;
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(sock);
        let mut i = 0;
        let mut interrupted = 0;
        while i < n {
            // SAFETY: `hdrs[i..n]` point into `iov` and `addrs` (fields of
            // self, not moved during the call) and into the caller's buffer,
            // all alive for this call; `fd` is a valid UDP socket.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[i..n].as_mut_ptr(),
                    (n - i) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                for k in i..i + r as usize {
                    count(stats, self.owner[k], true, 0);
                }
                i += r as usize;
                continue;
            }
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if errno == libc::EINTR && interrupted < 3 {
                interrupted += 1;
                continue;
            }
            let whole_batch =
                errno == libc::EAGAIN || errno == libc::ENOBUFS || errno == libc::EINTR;
            let d = self.owner[i];
            down[d] = true;
            let mut end = i + 1;
            while end < n && (whole_batch || self.owner[end] == d) {
                end += 1;
            }
            for k in i..end {
                count(stats, self.owner[k], false, errno);
            }
            i = end;
        }
    }
}

fn count(stats: &Stats, dest: usize, ok: bool, errno: i32) {
    let s: &OscDestStats = &stats.osc_dests[dest];
    if ok {
        s.sent.fetch_add(1, Ordering::Relaxed);
        stats.osc_sent.fetch_add(1, Ordering::Relaxed);
    } else {
        s.failed.fetch_add(1, Ordering::Relaxed);
        s.last_errno.store(errno, Ordering::Relaxed);
        stats.osc_failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// IPV6_MULTICAST_HOPS: how many routers an IPv6 multicast datagram
/// crosses (what `set_multicast_ttl_v4` is for IPv4).
fn set_multicast_hops_v6(sock: &UdpSocket, hops: u32) -> std::io::Result<()> {
    let hops = libc::c_int::try_from(hops.min(255)).unwrap_or(1);
    // SAFETY: `sock` is an open socket; the value is a c_int of the size
    // given.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_HOPS,
            &hops as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Fill `out` with `addr`; returns the address length.
fn write_sockaddr(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(out as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(out as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Resolves host names off the sending thread (`p4-osc-resolve`).
pub struct Resolver {
    names: Vec<(usize, OscDestination)>,
    tx: HeapProd<Update>,
    every: Duration,
    stats: Arc<Stats>,
}

/// How soon a name that did not resolve is tried again.
const RETRY_UNRESOLVED: Duration = Duration::from_secs(2);

impl Resolver {
    /// Start the resolver thread. It is not joined at shutdown: a lookup
    /// can block in the C library for as long as the resolver's timeouts
    /// say, and stopping must not wait for it. It only ever touches its
    /// ring and atomics, so leaving it behind at exit is harmless.
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> std::io::Result<()> {
        std::thread::Builder::new()
            .stack_size(crate::rt::THREAD_STACK)
            .name("p4-osc-resolve".into())
            .spawn(move || {
                let mut last: Vec<Option<SocketAddr>> = vec![None; self.names.len()];
                let mut failing = vec![false; self.names.len()];
                while !stop.load(Ordering::Relaxed) {
                    for (k, (i, d)) in self.names.iter().enumerate() {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let found = lookup(d);
                        let addr = found.as_ref().ok().copied();
                        self.stats.osc_dests[*i]
                            .resolved
                            .store(addr.is_some(), Ordering::Relaxed);
                        match (&found, failing[k]) {
                            (Err(e), false) => {
                                log::warn!(
                                    "osc: cannot resolve {}:{} ({e}); retrying",
                                    d.host,
                                    d.port
                                )
                            }
                            (Ok(a), true) => {
                                log::info!("osc: {}:{} resolved to {a}", d.host, d.port)
                            }
                            _ => {}
                        }
                        failing[k] = found.is_err();
                        // A name that stops resolving keeps its last address:
                        // a DNS hiccup must not silence a working rig.
                        if addr.is_some() && addr != last[k] {
                            last[k] = addr;
                            let _ = self.tx.try_push((*i, addr));
                        }
                    }
                    let wait = if failing.iter().any(|f| *f) {
                        RETRY_UNRESOLVED.min(self.every)
                    } else {
                        self.every
                    };
                    sleep_unless_stopped(wait, &stop);
                }
            })?;
        Ok(())
    }
}

fn lookup(d: &OscDestination) -> std::io::Result<SocketAddr> {
    let mut all = (d.host.as_str(), d.port).to_socket_addrs()?;
    // IPv4 first: most rigs listen on IPv4 only.
    let v: Vec<SocketAddr> = all.by_ref().collect();
    v.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| v.first())
        .copied()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(100);
    let mut left = total;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(host: &str, port: u16) -> OscDestination {
        OscDestination {
            host: host.into(),
            port,
            ttl: 1,
        }
    }

    #[test]
    fn literal_addresses_need_no_lookup() {
        assert_eq!(
            literal(&dest("10.1.2.3", 9000)),
            Some("10.1.2.3:9000".parse().unwrap())
        );
        assert_eq!(
            literal(&dest("[::1]", 9001)),
            Some("[::1]:9001".parse().unwrap())
        );
        assert_eq!(literal(&dest("::1", 9)), Some("[::1]:9".parse().unwrap()));
        assert_eq!(literal(&dest("localhost", 9000)), None);
    }

    #[test]
    fn a_refused_destination_does_not_stop_the_others() {
        // Port 0 is refused by the kernel (EINVAL) at once; the receivers
        // listed after it must still get every datagram.
        let stats = Arc::new(Stats::default());
        let rx1 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let list = vec![
            dest("127.0.0.1", 0),
            dest("127.0.0.1", rx1.local_addr().unwrap().port()),
            dest("127.0.0.1", 0),
            dest("127.0.0.1", rx2.local_addr().unwrap().port()),
        ];
        let (mut d, r) = Destinations::new(&list, stats.clone(), Duration::from_secs(30)).unwrap();
        assert!(r.is_none());
        let buf = b"abcdefgh";
        for _ in 0..10 {
            d.send(buf, &[(0, 4), (4, 8)]);
        }
        rx1.set_nonblocking(true).unwrap();
        rx2.set_nonblocking(true).unwrap();
        let mut got = [0usize; 2];
        let mut b = [0u8; 16];
        for (k, rx) in [&rx1, &rx2].iter().enumerate() {
            while rx.recv(&mut b).is_ok() {
                got[k] += 1;
            }
        }
        assert_eq!(got, [20, 20]);
        assert_eq!(stats.osc_dests[1].sent.load(Ordering::Relaxed), 20);
        assert_eq!(stats.osc_dests[3].sent.load(Ordering::Relaxed), 20);
        assert_eq!(stats.osc_dests[0].failed.load(Ordering::Relaxed), 20);
        assert_eq!(stats.osc_dests[2].failed.load(Ordering::Relaxed), 20);
        assert_ne!(stats.osc_dests[0].last_errno.load(Ordering::Relaxed), 0);
        assert_eq!(stats.osc_sent.load(Ordering::Relaxed), 40);
        assert_eq!(stats.osc_failed.load(Ordering::Relaxed), 40);
    }
}
