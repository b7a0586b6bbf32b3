//! sd-notify: READY=1 once audio flowed, STATUS= lines, WATCHDOG=1 only while
//! every pipeline thread makes progress, STOPPING=1 on shutdown.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op, so the same binary runs
//! under systemd, in a terminal and in tests (which bind their own socket).

use sd_notify::NotifyState;
use std::time::{Duration, Instant};

/// The notify side of the supervisor.
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    last_status: String,
}

impl Notifier {
    /// Read `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|us| *us > 0)
            .map(Duration::from_micros);
        Notifier {
            enabled,
            watchdog,
            last_ping: None,
            last_status: String::new(),
        }
    }

    /// Whether a watchdog is configured.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, states: &[NotifyState]) {
        if self.enabled {
            let _ = sd_notify::notify(false, states);
        }
    }

    /// READY=1 with a status line.
    pub fn ready(&mut self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        self.last_status = status.to_string();
    }

    /// STATUS=, when it changed.
    pub fn status(&mut self, status: &str) {
        if status != self.last_status {
            self.send(&[NotifyState::Status(status)]);
            self.last_status = status.to_string();
        }
    }

    /// WATCHDOG=1 at half the watchdog interval, only when `healthy`.
    pub fn tick(&mut self, healthy: bool) {
        let Some(wd) = self.watchdog else { return };
        if !healthy {
            return;
        }
        let due = self.last_ping.is_none_or(|t| t.elapsed() >= wd / 2);
        if due {
            self.send(&[NotifyState::Watchdog]);
            self.last_ping = Some(Instant::now());
        }
    }

    /// RELOADING=1: a configuration reload started (READY=1 ends it).
    pub fn reloading(&self) {
        self.send(&[NotifyState::Reloading]);
    }

    /// STOPPING=1.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }
}
