//! Our own mDNS responder (the `mdns-sd` crate), for a box without
//! avahi-daemon. It answers for `<host>.local` with every address of every
//! interface (kept current as addresses change) and for each service, and
//! sends goodbye packets when withdrawn. It binds UDP 5353 with
//! SO_REUSEADDR/SO_REUSEPORT, so it can share the port with another
//! responder (the "builtin" backend beside a running avahi-daemon).
//!
//! `mdns-sd` keeps the records other hosts send in a cache with no size
//! limit (a response without a PTR record counts as asked for), and
//! phase4 never browses, so nothing in it is of use here. It reports how
//! many it holds ([`Backend::cached_records`], a TXT record counting as
//! [`TXT_WEIGHT`]); the `p4-mdns` thread restarts the responder when that
//! passes [`super::MAX_CACHED_RECORDS`].

use super::{host_name, Announcement, Backend};
use mdns_sd::{ServiceDaemon, ServiceInfo};
use std::time::Duration;

/// How many records one cached TXT record counts as. The limit
/// ([`super::MAX_CACHED_RECORDS`]) assumes records of up to ~1 KiB, which
/// names of at most 255 bytes make true of SRV, PTR and address records; a
/// TXT record's data may fill a whole datagram (~9 KiB), and a flood of
/// them grew RSS by 35 MiB under the plain count (2197 records of 8 KiB,
/// twice over in two malloc arenas). Counted as 8, a cache of TXT records
/// is bounded in bytes like one of the others, and a LAN's own TXT records
/// (a few hundred bytes each, only those of instances someone resolved)
/// may still number 256.
pub const TXT_WEIGHT: u64 = 8;

/// The responder and what it announces.
pub struct Builtin {
    daemon: ServiceDaemon,
    fullnames: Vec<String>,
    /// The daemon's events (a bounded channel it never blocks on), for
    /// the names it changes after a conflict.
    events: Option<mdns_sd::Receiver<mdns_sd::DaemonEvent>>,
}

impl Builtin {
    /// Start answering for `a`.
    pub fn register(a: &Announcement) -> mdns_sd::Result<Self> {
        let daemon = ServiceDaemon::new()?;
        let events = daemon.monitor().ok();
        let host = format!("{}.local.", host_name());
        let mut fullnames = Vec::new();
        for s in &a.services {
            let props: Vec<(&str, &str)> = s
                .txt
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let info = ServiceInfo::new(
                &format!("{}.local.", s.kind),
                &a.name,
                &host,
                "",
                s.port,
                &props[..],
            )?
            .enable_addr_auto();
            fullnames.push(info.get_fullname().to_string());
            daemon.register(info)?;
        }
        Ok(Builtin {
            daemon,
            fullnames,
            events,
        })
    }
}

impl Backend for Builtin {
    fn cached_records(&mut self) -> Option<u64> {
        // The daemon's own counts of what it holds ("cached-ptr",
        // "cached-srv", "cached-txt", "cached-addr", ...).
        let metrics = self
            .daemon
            .get_metrics()
            .ok()?
            .recv_timeout(Duration::from_millis(500))
            .ok()?;
        Some(weighted(
            metrics
                .iter()
                .map(|(k, &v)| (k.as_str(), u64::try_from(v).unwrap_or(0))),
        ))
    }

    fn renamed(&mut self) -> Vec<(String, String)> {
        let Some(events) = self.events.as_ref() else {
            return Vec::new();
        };
        events
            .try_iter()
            .filter_map(|e| match e {
                mdns_sd::DaemonEvent::NameChange(c) => Some((c.original, c.new_name)),
                _ => None,
            })
            .collect()
    }

    fn alive(&mut self) -> bool {
        matches!(
            self.daemon
                .status()
                .ok()
                .and_then(|r| r.recv_timeout(Duration::from_millis(500)).ok()),
            Some(mdns_sd::DaemonStatus::Running)
        )
    }

    fn withdraw(self: Box<Self>) {
        // Goodbye packets (TTL 0), so browsers drop us at once.
        for f in &self.fullnames {
            if let Ok(r) = self.daemon.unregister(f) {
                let _ = r.recv_timeout(Duration::from_millis(500));
            }
        }
        if let Ok(r) = self.daemon.shutdown() {
            let _ = r.recv_timeout(Duration::from_millis(500));
        }
    }
}

/// The cache's size from the daemon's counts, in records of up to ~1 KiB:
/// a TXT record counts as [`TXT_WEIGHT`].
fn weighted<'a>(counts: impl Iterator<Item = (&'a str, u64)>) -> u64 {
    counts
        .filter(|(k, _)| k.starts_with("cached-"))
        .map(|(k, n)| {
            if k == "cached-txt" {
                n.saturating_mul(TXT_WEIGHT)
            } else {
                n
            }
        })
        .fold(0, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_records_weigh_more_and_other_counters_nothing() {
        let counts = [
            ("cached-ptr", 3),
            ("cached-srv", 5),
            ("cached-txt", 7),
            ("cached-addr", 11),
            ("respond", 1000),
            ("known-answer-suppression", 50),
        ];
        assert_eq!(weighted(counts.into_iter()), 3 + 5 + 7 * TXT_WEIGHT + 11);
        assert_eq!(weighted([("cached-txt", u64::MAX)].into_iter()), u64::MAX);
    }
}
