//! Our own mDNS responder (the `mdns-sd` crate), for a box without
//! avahi-daemon. It answers for `<host>.local` with the addresses of its
//! services: every address of every interface (kept current as addresses
//! change), or only the bound one for a service bound to one address (with
//! every service so bound, `<host>.local` is that address), and for each
//! service, and
//! sends goodbye packets when withdrawn. It binds UDP 5353 with
//! SO_REUSEADDR/SO_REUSEPORT, so it can share the port with another
//! responder (the "builtin" backend beside a running avahi-daemon).
//!
//! Upstream `mdns-sd` keeps the records other hosts send in a cache with
//! no size limit (a response without a PTR record counts as asked for),
//! searched linearly per name: anyone on the LAN could grow phase4's
//! memory, or keep the daemon's thread busy long after a flood of records
//! under one name. phase4 never browses, so it builds the crate with the
//! `responder-only` feature of its vendored copy (vendor/mdns-sd/PHASE4.md),
//! which keeps nothing: a flood costs what parsing it costs, while it lasts.

use super::{host_name, Announcement, Backend};
use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};
use std::time::Duration;

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
            let mut info = ServiceInfo::new(
                &format!("{}.local.", s.kind),
                &a.name,
                &host,
                "",
                s.port,
                &props[..],
            )?
            .enable_addr_auto();
            // A service bound to one address is announced at that address
            // only (tester aa: bound to 10.77.0.1, it was announced at every
            // address of the box, and while 10.77.0.1 was gone only at
            // addresses that refused), and from the moment the machine has
            // it: the daemon follows the machine's addresses, keeping that
            // one (review ac: given as a fixed address instead, one that
            // arrived after the start, bound with IP_FREEBIND, was never
            // announced or answered for).
            if let Some(ip) = s.addr {
                info.set_interfaces(vec![IfKind::Addr(ip)]);
            }
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
        // A daemon that does not answer in time is busy (reading a flood:
        // it reads its socket dry before it looks at commands), not gone:
        // starting another beside it would only add a second thread
        // reading the same flood. Gone is a closed channel or a status
        // other than running.
        let Ok(status) = self.daemon.status() else {
            return false;
        };
        match status.recv_timeout(Duration::from_millis(500)) {
            Ok(s) => matches!(s, mdns_sd::DaemonStatus::Running),
            Err(e) => matches!(e, mdns_sd::RecvTimeoutError::Timeout),
        }
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
