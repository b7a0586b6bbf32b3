//! The rate budgets of the senders that may not write: one token bucket
//! per sending address (an IPv6 host's whole /64 counts as one), for the
//! addresses heard from most recently.

use super::{QUIET_FOR, UNTRUSTED_PER_SENDER_PER_S, UNTRUSTED_SENDERS};
use crate::transport::ws::registry::peer_key;
use std::net::IpAddr;
use std::time::Instant;

/// Token buckets for one second's worth of `rate`.
pub(super) struct Bucket {
    rate: f64,
    level: f64,
}

impl Bucket {
    pub(super) fn new(rate: f64) -> Self {
        Bucket { rate, level: rate }
    }

    pub(super) fn refill(&mut self, dt: f64) {
        self.level = (self.level + dt * self.rate).min(self.rate);
    }

    pub(super) fn take(&mut self) -> bool {
        let ok = self.level >= 1.0;
        if ok {
            self.level -= 1.0;
        }
        ok
    }
}

/// Per-address budgets of the senders that may not write, for the
/// [`UNTRUSTED_SENDERS`] addresses heard from most recently.
pub(super) struct Senders {
    slots: Vec<(IpAddr, Bucket, Instant)>,
}

impl Senders {
    pub(super) fn new() -> Self {
        Senders {
            slots: Vec::with_capacity(UNTRUSTED_SENDERS),
        }
    }

    /// Take one datagram from `ip`'s budget: `None` when it is spent,
    /// else whether the address was quiet (nothing from it for
    /// [`QUIET_FOR`], or never heard from).
    pub(super) fn take(&mut self, ip: IpAddr, now: Instant) -> Option<bool> {
        let ip = peer_key(ip);
        let (i, heard) = match self.slots.iter().position(|(a, _, _)| *a == ip) {
            Some(i) => (i, true),
            None if self.slots.len() < UNTRUSTED_SENDERS => {
                let fresh = Bucket::new(UNTRUSTED_PER_SENDER_PER_S);
                self.slots.push((ip, fresh, now));
                (self.slots.len() - 1, false)
            }
            None => {
                let i = self
                    .slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (_, _, seen))| *seen)
                    .map_or(0, |(i, _)| i);
                self.slots[i] = (ip, Bucket::new(UNTRUSTED_PER_SENDER_PER_S), now);
                (i, false)
            }
        };
        let (_, bucket, seen) = &mut self.slots[i];
        let silent = now.saturating_duration_since(*seen);
        bucket.refill(silent.as_secs_f64());
        let quiet = !heard || silent >= QUIET_FOR;
        *seen = now;
        bucket.take().then_some(quiet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_address_has_its_own_untrusted_budget_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let mut s = Senders::new();
        let guesser: IpAddr = "192.0.2.21".parse().unwrap();
        let other: IpAddr = "192.0.2.22".parse().unwrap();
        let per = UNTRUSTED_PER_SENDER_PER_S as usize;
        assert_eq!(
            (0..100).filter(|_| s.take(guesser, t0).is_some()).count(),
            per
        );
        assert!(
            s.take(other, t0).is_some(),
            "another address is not crowded out"
        );
        let later = t0 + Duration::from_secs_f64(1.0 / UNTRUSTED_PER_SENDER_PER_S);
        assert!(
            s.take(guesser, later).is_some(),
            "refilled at the per-address rate"
        );
        assert!(s.take(guesser, later).is_none());
        // Many addresses: the table keeps UNTRUSTED_SENDERS of them; the
        // one heard from least recently makes room, and comes back fresh.
        for i in 0..200u8 {
            let _ = s.take(IpAddr::from([10, 0, 0, i]), later);
        }
        assert_eq!(s.slots.len(), UNTRUSTED_SENDERS);
        assert!(
            s.take(guesser, later).is_some(),
            "forgotten, then a full budget again"
        );
    }

    #[test]
    fn an_ipv6_host_has_one_budget_for_its_whole_64_and_mapped_ipv4_is_ipv4() {
        let t0 = Instant::now();
        let mut s = Senders::new();
        let per = UNTRUSTED_PER_SENDER_PER_S as usize;
        // Rotating through addresses of one /64 (privacy addresses).
        let taken = (0..100u16)
            .filter(|&i| {
                s.take(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i]), t0)
                    .is_some()
            })
            .count();
        assert_eq!(taken, per);
        assert!(
            s.take("2001:db8:0:2::1".parse().unwrap(), t0).is_some(),
            "another /64"
        );
        let v4: IpAddr = "192.0.2.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        assert_eq!((0..3).filter(|_| s.take(v4, t0).is_some()).count(), 3);
        assert_eq!(
            (0..10).filter(|_| s.take(mapped, t0).is_some()).count(),
            per - 3,
            "the same host seen through a dual-stack socket"
        );
    }

    #[test]
    fn an_address_is_quiet_when_its_budget_is_full() {
        let t0 = Instant::now();
        let mut s = Senders::new();
        let honest: IpAddr = "192.0.2.22".parse().unwrap();
        let guesser: IpAddr = "192.0.2.21".parse().unwrap();
        assert_eq!(s.take(honest, t0), Some(true), "never heard from");
        assert_eq!(s.take(guesser, t0), Some(true));
        // A sender at its full rate is never quiet.
        let step = Duration::from_secs_f64(1.0 / UNTRUSTED_PER_SENDER_PER_S);
        for k in 1..20 {
            assert_eq!(s.take(guesser, t0 + step * k), Some(false), "send {k}");
        }
        // One that tried a second ago is quiet again; half a second is not.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(s.take(honest, t1), Some(true));
        assert_eq!(s.take(honest, t1 + Duration::from_millis(500)), Some(false));
    }
}
