//! Who holds the WebSocket's places, and the budget of wrong control
//! tokens: shared by the acceptor (which admits and checks `?token=`) and
//! the broadcaster (which releases and checks `auth` messages). The
//! OSCQuery LISTEN port counts its clients with the same [`Registry`].

use super::guesses::Guesses;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The address as the IP it is (an IPv4 client of a dual-stack socket
/// shows up as `::ffff:a.b.c.d`).
pub fn canonical_ip(peer: &SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

/// Whose share of a per-address cap or budget a peer at `ip` uses: an IPv4
/// address as such (also when a dual-stack socket shows it as
/// `::ffff:a.b.c.d`), an IPv6 address by its /64, which is one host's or
/// one link's: a host may take any number of addresses in it (privacy
/// addresses), so per address it could give itself as many shares as it
/// liked.
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        v4 => v4,
    }
}

/// Places of `max` that clients without a privilege (neither on loopback
/// nor holding the token) can never take: a quarter. Watchers from a few
/// addresses can fill every other place, and then still neither the
/// operator at the box nor a phone with the token is turned away.
pub fn kept_places(max: usize) -> usize {
    max / 4
}

/// Connected clients, in all, without a privilege and per address
/// ([`peer_key`]).
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    unprivileged: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Counts {
    /// Why one more client from `ip` passes a cap, if it does.
    fn refusal(
        &self,
        ip: IpAddr,
        privileged: bool,
        max: usize,
        max_per_ip: usize,
    ) -> Result<(), String> {
        if self.total >= max {
            return Err(format!("already {max} clients (ws.max-clients)"));
        }
        let open = max - kept_places(max);
        if !privileged && self.unprivileged >= open {
            return Err(format!(
                "already {open} clients without the token; the other {} places of ws.max-clients are kept for clients on loopback or with the token",
                max - open
            ));
        }
        let key = peer_key(ip);
        let n = self.per_ip.get(&key).copied().unwrap_or(0);
        if !ip.is_loopback() && !privileged && n >= max_per_ip {
            let whose = if key == ip.to_canonical() {
                ip.to_string()
            } else {
                format!("{key}/64")
            };
            return Err(format!(
                "already {max_per_ip} clients from {whose} (ws.max-clients-per-ip)"
            ));
        }
        Ok(())
    }
}

/// What the UI's page is told about the WebSocket's places before it
/// connects (`/ui-config.json`): the browser never sees why a handshake
/// failed, so without it a page turned away because every place open to
/// watchers is taken could only say "reconnecting" (tester x #9; making
/// room by closing other watchers was tried twice and let a guest with
/// many addresses close honest ones at will: reviews ab and af).
#[derive(Clone, Debug)]
pub struct Places {
    pub registry: std::sync::Arc<Registry>,
    pub max: usize,
    pub max_per_ip: usize,
    pub trust_loopback: bool,
}

impl Places {
    /// Why a page at `ip` that connects without the token would be refused
    /// a place now (on loopback with `ws.trust-loopback`, with its
    /// privilege).
    pub fn watcher_refusal(&self, ip: IpAddr) -> Option<String> {
        let ip = ip.to_canonical();
        let privileged = self.trust_loopback && ip.is_loopback();
        self.registry
            .refusal(ip, privileged, self.max, self.max_per_ip)
    }
}

/// Connected clients, in all, without a privilege and per address; shared
/// by the acceptor (which admits) and the broadcaster (which releases).
/// Also the budget of wrong control tokens per address, which both spend:
/// the acceptor for `?token=`, the broadcaster for `auth` messages.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Counts>,
    guesses: Mutex<Guesses>,
}

impl Registry {
    /// Count a client from `ip` in, unless that passes a cap. A client
    /// with a `privileged` place (on loopback, or with the token when it
    /// connected) may take any place and is not held to `max_per_ip`
    /// (watchers from one IPv6 /64, which on a venue's Wi-Fi is every
    /// machine, would otherwise keep the operator's phone out); others
    /// leave [`kept_places`] free.
    pub fn admit(
        &self,
        ip: IpAddr,
        privileged: bool,
        max: usize,
        max_per_ip: usize,
    ) -> Result<(), String> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.refusal(ip, privileged, max, max_per_ip)?;
        g.total += 1;
        g.unprivileged += !privileged as usize;
        *g.per_ip.entry(peer_key(ip)).or_insert(0) += 1;
        Ok(())
    }

    /// Why a client from `ip` would be refused a place now (what
    /// [`Registry::admit`] would say), without taking one.
    pub fn refusal(
        &self,
        ip: IpAddr,
        privileged: bool,
        max: usize,
        max_per_ip: usize,
    ) -> Option<String> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.refusal(ip, privileged, max, max_per_ip).err()
    }

    /// Count a client from `ip` out (`privileged` as it was admitted).
    pub fn release(&self, ip: IpAddr, privileged: bool) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.total = g.total.saturating_sub(1);
        if !privileged {
            g.unprivileged = g.unprivileged.saturating_sub(1);
        }
        let key = peer_key(ip);
        if let Some(n) = g.per_ip.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                g.per_ip.remove(&key);
            }
        }
    }

    /// Connected clients.
    pub fn total(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Whether `token` from `ip` is the control token, checked only while
    /// `ip`'s budget of wrong tokens ([`GUESS_BURST`](super::guesses::GUESS_BURST), one back every
    /// [`GUESS_REFILL`](super::guesses::GUESS_REFILL)) is not spent: otherwise how long until one try is
    /// back. Nothing is checked then, so an address that guesses learns
    /// nothing faster than the budget lets it, however many connections it
    /// opens; other addresses keep their own budgets. Loopback has none,
    /// as it has no per-address cap: behind a reverse proxy on the box
    /// (`trust-loopback = false`) every client would share one budget, and
    /// one guesser could keep all of them from authenticating; the proxy
    /// is the place to limit them.
    pub fn check_token(
        &self,
        ip: IpAddr,
        now: Instant,
        matches: impl FnOnce() -> bool,
    ) -> Result<bool, Duration> {
        if ip.is_loopback() {
            return Ok(matches());
        }
        let mut g = self.guesses.lock().unwrap_or_else(|e| e.into_inner());
        g.check(peer_key(ip), now, matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ws::guesses::{GUESS_BURST, GUESS_REFILL};

    #[test]
    fn the_registry_caps_clients_in_all_and_per_address() {
        let r = Registry::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(r.admit(a, false, 5, 2).is_ok());
        assert!(r.admit(a, false, 5, 2).is_ok());
        assert!(r.admit(a, false, 5, 2).is_err());
        assert!(r.admit(b, false, 5, 2).is_ok());
        assert!(r.admit(lo, true, 5, 2).is_ok());
        assert!(r.admit(lo, true, 5, 2).is_ok());
        assert!(
            r.admit(lo, true, 5, 2).is_err(),
            "the total cap holds for loopback too"
        );
        r.release(a, false);
        assert!(r.admit(a, false, 5, 2).is_ok());
        assert_eq!(r.total(), 5);
    }

    #[test]
    fn a_page_is_told_what_a_watcher_from_its_address_would_be_refused() {
        // `/ui-config.json`'s `ws_refused`: exactly what admitting a
        // watcher from that address would say, and nothing taken.
        let places = Places {
            registry: std::sync::Arc::new(Registry::default()),
            max: 8,
            max_per_ip: 2,
            trust_loopback: true,
        };
        let r = &places.registry;
        let addrs: Vec<IpAddr> = (1..=5u8).map(|h| IpAddr::from([10, 0, 0, h])).collect();
        let v6: IpAddr = "fd00:1:2:3::9".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        for step in 0..12 {
            for &ip in addrs.iter().chain([&v6, &mapped]) {
                let before = r.total();
                let said = places.watcher_refusal(ip);
                assert_eq!(r.total(), before, "nothing taken");
                let admitted = r.admit(ip.to_canonical(), false, 8, 2);
                assert_eq!(said, admitted.clone().err(), "step {step}, {ip}");
                if admitted.is_ok() {
                    r.release(ip.to_canonical(), false);
                }
            }
            // Fill one more place, from the addresses in turn.
            let _ = r.admit(addrs[step % 5], false, 8, 2);
        }
        // Full for watchers (6 of 8: two kept), and it says why.
        assert_eq!(r.total(), 6);
        let why = places.watcher_refusal(IpAddr::from([10, 0, 0, 9])).unwrap();
        assert!(why.contains("without the token"), "{why}");
        // A page on loopback (trusted) would take a kept place: not refused,
        // unless loopback is not trusted.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(places.watcher_refusal(lo), None);
        let untrusted = Places {
            trust_loopback: false,
            ..places.clone()
        };
        assert!(untrusted.watcher_refusal(lo).is_some());
    }

    #[test]
    fn watchers_never_take_the_places_kept_for_the_token() {
        let r = Registry::default();
        let (max, per_ip) = (32, 8);
        assert_eq!(kept_places(max), 8);
        // Four addresses, eight watchers each: 24 places, then no more.
        let mut refused = 0;
        for host in 2..=5u8 {
            for _ in 0..per_ip {
                refused += r
                    .admit(IpAddr::from([10, 9, 0, host]), false, max, per_ip)
                    .is_err() as usize;
            }
        }
        assert_eq!((r.total(), refused), (24, 8));
        let newcomer = IpAddr::from([10, 9, 0, 6]);
        let why = r.admit(newcomer, false, max, per_ip).unwrap_err();
        assert!(
            why.contains("kept for clients on loopback or with the token"),
            "{why}"
        );
        // The operator on loopback and a phone with the token get in.
        assert!(r
            .admit("127.0.0.1".parse().unwrap(), true, max, per_ip)
            .is_ok());
        assert!(r.admit(newcomer, true, max, per_ip).is_ok());
        // A privileged place going does not free a watcher's.
        r.release(newcomer, true);
        assert!(r.admit(newcomer, false, max, per_ip).is_err());
        // A watcher's does.
        r.release(IpAddr::from([10, 9, 0, 2]), false);
        assert!(r.admit(newcomer, false, max, per_ip).is_ok());
        // Privileged clients may fill every place.
        for _ in 0..7 {
            assert!(r
                .admit("127.0.0.1".parse().unwrap(), true, max, per_ip)
                .is_ok());
        }
        assert_eq!(r.total(), max);
        assert!(r
            .admit("127.0.0.1".parse().unwrap(), true, max, per_ip)
            .is_err());
    }

    #[test]
    fn an_ipv6_host_has_one_share_for_its_whole_64() {
        let r = Registry::default();
        let host = |i: u16| IpAddr::from([0x2001, 0xdb8, 1, 2, 0xa, 0xb, 0xc, i]);
        for i in 0..4 {
            assert!(r.admit(host(i), false, 32, 4).is_ok());
        }
        let why = r.admit(host(99), false, 32, 4).unwrap_err();
        assert!(why.contains("2001:db8:1:2::/64"), "{why}");
        assert!(r
            .admit(
                IpAddr::from([0x2001, 0xdb8, 1, 3, 0, 0, 0, 1]),
                false,
                32,
                4
            )
            .is_ok());
        r.release(host(7), false);
        assert!(r.admit(host(8), false, 32, 4).is_ok());
        // Another machine on the same Wi-Fi (the same /64) with the token
        // gets in beside the watchers.
        assert!(r.admit(host(200), true, 32, 4).is_ok());
        assert!(r.admit(host(201), false, 32, 4).is_err());
        // IPv4 through a dual-stack socket is the IPv4 address.
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(peer_key(mapped), IpAddr::from([10, 1, 2, 3]));
    }

    #[test]
    fn wrong_tokens_spend_a_budget_per_address_across_connections() {
        let r = Registry::default();
        let t0 = Instant::now();
        let a = IpAddr::from([10, 9, 0, 2]);
        let b = IpAddr::from([10, 9, 0, 3]);
        for i in 0..GUESS_BURST as usize {
            assert_eq!(r.check_token(a, t0, || false), Ok(false), "guess {i}");
        }
        // Spent: not even the right token is checked (no oracle).
        let mut asked = false;
        let wait = r
            .check_token(a, t0, || {
                asked = true;
                true
            })
            .unwrap_err();
        assert!(!asked && wait == GUESS_REFILL, "{wait:?}");
        // Another address keeps its own budget; the right token is free.
        assert_eq!(r.check_token(b, t0, || true), Ok(true));
        for _ in 0..10 {
            assert_eq!(r.check_token(b, t0, || true), Ok(true));
        }
        // One try comes back per GUESS_REFILL.
        let later = t0 + GUESS_REFILL;
        assert_eq!(r.check_token(a, later, || true), Ok(true));
        assert_eq!(r.check_token(a, later, || false), Ok(false));
        assert!(r.check_token(a, later, || true).is_err());
        // Loopback has no budget (see check_token).
        let lo = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..20 {
            assert_eq!(r.check_token(lo, t0, || false), Ok(false));
        }
        assert_eq!(r.check_token(lo, t0, || true), Ok(true));
        // Privacy addresses of one /64 share a budget.
        let v6 = |i: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i]);
        for i in 0..GUESS_BURST as u16 {
            assert_eq!(r.check_token(v6(i), t0, || false), Ok(false));
        }
        assert!(r.check_token(v6(1000), t0, || false).is_err());
    }
}
