//! Requests per address, over all of its connections: a generic cell rate
//! (GCRA, the leaky bucket as a meter). An address may make `burst`
//! requests at once and `per_s` a second after that; a request beyond it
//! is not refused but waits until it conforms, so one address asking as
//! fast as it can costs the server `per_s` answers a second, not every
//! request it manages to send. Its connections each wait with one request
//! (hyper answers a connection's requests in order), so the wait is
//! bounded by its connection cap; what it pipelines behind that stays in
//! the kernel's buffers.
//!
//! Without it one address sending `GET /` on kept-alive connections got
//! 11 000 answers a second and ~80 % of a core (another address was still
//! answered within 1.5 ms; the server's thread is not the audio's).
//!
//! An address is kept while it is over its rate (its next conforming time
//! is ahead); at most [`MAX_TRACKED`] are, and when that many are ahead at
//! once a new address shares one meter with every other newcomer.

use crate::transport::serve::Limits;
use crate::transport::ws::registry::peer_key;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Addresses kept at once (see the module documentation).
pub const MAX_TRACKED: usize = 4096;
/// Where newcomers are metered together while [`MAX_TRACKED`] addresses are
/// being paced: an address no client has.
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The meters of one server.
#[derive(Debug)]
pub struct Pace {
    /// Time one request costs: `1 / per_s`.
    every: Duration,
    /// How far ahead of now an address's next conforming time may be
    /// before it waits: `burst` requests' worth.
    slack: Duration,
    /// Per address ([`crate::transport::ws::registry::peer_key`]): when
    /// its next request would be exactly on the rate.
    next: HashMap<IpAddr, Instant>,
}

impl Pace {
    /// `per_s` requests a second after a burst of `burst` (both at least 1).
    pub fn new(per_s: u32, burst: u32) -> Self {
        let every = Duration::from_secs(1) / per_s.max(1);
        Pace {
            every,
            slack: every * burst.max(1).saturating_sub(1),
            next: HashMap::new(),
        }
    }

    /// How long a request from `key` arriving at `now` waits before it is
    /// answered (zero within the rate), counting it.
    pub fn admit(&mut self, key: IpAddr, now: Instant) -> Duration {
        let key = if self.next.len() >= MAX_TRACKED && !self.next.contains_key(&key) {
            self.next.retain(|_, t| *t > now);
            if self.next.len() >= MAX_TRACKED {
                OVERFLOW
            } else {
                key
            }
        } else {
            key
        };
        let due = self.next.get(&key).map_or(now, |t| (*t).max(now));
        let wait = due.saturating_duration_since(now + self.slack);
        self.next.insert(key, due + self.every);
        wait
    }

    /// Addresses being kept (tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.next.len()
    }
}

/// A server's [`Pace`], with a log line now and then while it makes
/// someone wait.
pub struct Paced {
    name: &'static str,
    pace: RefCell<Pace>,
    per_s: u32,
    said: RefCell<crate::service::logging::RateLimit>,
}

impl Paced {
    pub fn new(name: &'static str, limits: &Limits) -> Self {
        Paced {
            name,
            pace: RefCell::new(Pace::new(limits.requests_per_s, limits.request_burst)),
            per_s: limits.requests_per_s,
            said: RefCell::new(crate::service::logging::RateLimit::new(
                Duration::from_secs(30),
            )),
        }
    }

    /// How long a request from `peer` waits; `None` within its rate (and
    /// always on loopback: a reverse proxy on the box brings everyone).
    pub fn wait(&self, peer: SocketAddr) -> Option<Duration> {
        let ip = peer.ip().to_canonical();
        if ip.is_loopback() {
            return None;
        }
        let wait = self
            .pace
            .borrow_mut()
            .admit(peer_key(ip), std::time::Instant::now());
        if wait.is_zero() {
            return None;
        }
        if let Some(held) = self.said.borrow_mut().allow() {
            log::info!(
                "{}: {peer} asks more than {} times a second: its requests wait their turn ({held} similar message(s) suppressed)",
                self.name,
                self.per_s
            );
        }
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_burst_is_answered_at_once_and_the_rest_at_the_rate() {
        let mut p = Pace::new(100, 10);
        let t = Instant::now();
        for i in 0..10 {
            assert_eq!(p.admit(ip(1), t), Duration::ZERO, "request {i}");
        }
        // The eleventh waits one request's time, the twelfth two.
        assert_eq!(p.admit(ip(1), t), Duration::from_millis(10));
        assert_eq!(p.admit(ip(1), t), Duration::from_millis(20));
        // Another address has a burst of its own.
        assert_eq!(p.admit(ip(2), t), Duration::ZERO);
    }

    #[test]
    fn an_address_within_its_rate_never_waits_and_a_quiet_one_gets_its_burst_back() {
        let mut p = Pace::new(100, 5);
        let t = Instant::now();
        for i in 0..1000 {
            let now = t + Duration::from_millis(10 * i);
            assert_eq!(p.admit(ip(1), now), Duration::ZERO, "request {i}");
        }
        let later = t + Duration::from_secs(20);
        for _ in 0..50 {
            p.admit(ip(1), later);
        }
        let quiet = later + Duration::from_secs(1);
        for i in 0..5 {
            assert_eq!(p.admit(ip(1), quiet), Duration::ZERO, "request {i}");
        }
        assert!(p.admit(ip(1), quiet) > Duration::ZERO);
    }

    #[test]
    fn a_flood_is_answered_at_the_rate() {
        // One address asking as fast as it can for 3 s, each request
        // answered when its wait ends: about burst + 3 × rate answers.
        let mut p = Pace::new(100, 100);
        let t0 = Instant::now();
        let mut now = t0;
        let mut answered = 0;
        while now < t0 + Duration::from_secs(3) {
            now += p.admit(ip(1), now) + Duration::from_micros(50);
            answered += 1;
        }
        assert!((390..=402).contains(&answered), "{answered}");
    }

    #[test]
    fn the_addresses_kept_are_bounded_and_newcomers_share_a_meter_beyond() {
        let mut p = Pace::new(1, 1);
        let t = Instant::now();
        for n in 0..MAX_TRACKED as u32 {
            assert_eq!(p.admit(ip(n), t), Duration::ZERO);
        }
        assert_eq!(p.tracked(), MAX_TRACKED);
        // Every kept address is still ahead: newcomers share one meter.
        assert_eq!(p.admit(ip(1 << 20), t), Duration::ZERO);
        assert_eq!(p.admit(ip(1 << 21), t), Duration::from_secs(1));
        assert_eq!(p.tracked(), MAX_TRACKED + 1);
        // Once they are behind now, they are forgotten.
        let later = t + Duration::from_secs(5);
        assert_eq!(p.admit(ip(1 << 22), later), Duration::ZERO);
        assert_eq!(p.tracked(), 1);
    }
}
