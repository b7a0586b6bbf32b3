//! Our own mDNS responder (the `mdns-sd` crate), for a box without
//! avahi-daemon. It answers for `<host>.local` with every address of every
//! interface (kept current as addresses change) and for each service, and
//! sends goodbye packets when withdrawn. It binds UDP 5353 with
//! SO_REUSEADDR/SO_REUSEPORT, so it can share the port with another
//! responder (the "builtin" backend beside a running avahi-daemon).

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
