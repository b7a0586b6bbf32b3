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
//! many it holds ([`Backend::cached_records`]); the `p4-mdns` thread
//! restarts the responder when that passes [`super::MAX_CACHED_RECORDS`].

use super::{host_name, Announcement, Backend};
use mdns_sd::{ServiceDaemon, ServiceInfo};
use std::time::Duration;

/// The responder and what it announces.
pub struct Builtin {
    daemon: ServiceDaemon,
    fullnames: Vec<String>,
}

impl Builtin {
    /// Start answering for `a`.
    pub fn register(a: &Announcement) -> mdns_sd::Result<Self> {
        let daemon = ServiceDaemon::new()?;
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
        Ok(Builtin { daemon, fullnames })
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
        Some(
            metrics
                .iter()
                .filter(|(k, _)| k.starts_with("cached-"))
                .map(|(_, &v)| u64::try_from(v).unwrap_or(0))
                .sum(),
        )
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
