//! sd-notify: READY=1 once audio flowed, STATUS= lines, WATCHDOG=1 only while
//! every pipeline thread makes progress, STOPPING=1 on shutdown.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op, so the same binary runs
//! under systemd, in a terminal and in tests (which bind their own socket).
//!
//! The messages are the `sd-notify` crate's ([`NotifyState`]); the sending
//! is ours, because the crate's send blocks for as long as the receiver
//! does not read. The supervisor sends them, and it is also the thread that
//! takes SIGTERM, writes the health lines and carries out device switches:
//! a service manager that stops reading its socket (under load, or a
//! container manager that never reads it) must not stop any of that. So a
//! send never waits: a message the socket's queue has no room for is not
//! sent now. READY=1 and the current STATUS= are sent again on the next
//! tick until one goes through; a watchdog ping is simply due again. The
//! first refusal is logged, and so is the recovery, with the count held
//! back in between.
//!
//! The socket the messages leave from is made once, at start, and each
//! message is addressed on its own (`sendto`), so a receiver re-bound
//! since the last one still gets the next. A socket per message needed a
//! free file descriptor for every ping: with the process out of them (a
//! low `LimitNOFILE`, or idle connections filling it) the pings stopped
//! while audio flowed, and systemd would have restarted a healthy service.

use sd_notify::NotifyState;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// Bytes of a Unix socket path (`sun_path`).
const SUN_PATH: usize = 108;

/// The notify side of the supervisor.
pub struct Notifier {
    target: Option<SocketAddr>,
    /// Where the messages leave from (`None` without a target, or when it
    /// could not be made at start: then a socket per message).
    sock: Option<UnixDatagram>,
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    last_status: String,
    /// READY=1 was asked for and has not gone through yet.
    ready_due: bool,
    /// Messages not taken since the socket last took one (the first
    /// refusal and the recovery are logged).
    refused: u64,
}

impl Notifier {
    /// Read `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|v| match notify_addr(&v) {
            Ok(a) => Some(a),
            Err(e) => {
                // At most a socket path's worth of it in the log.
                let shown = String::from_utf8_lossy(&v.as_bytes()[..v.len().min(SUN_PATH)]);
                let more = if v.len() > SUN_PATH { "…" } else { "" };
                log::warn!("NOTIFY_SOCKET {shown:?}{more}: {e}; systemd is not notified");
                None
            }
        });
        let usec = std::env::var_os("WATCHDOG_USEC");
        let pid = std::env::var_os("WATCHDOG_PID");
        let watchdog = match watchdog_from(usec.as_deref(), pid.as_deref(), std::process::id()) {
            Ok(w) => w,
            Err(why) => {
                log::warn!("{why}; no watchdog pings are sent");
                None
            }
        };
        Notifier::new(target, watchdog)
    }

    fn new(target: Option<SocketAddr>, watchdog: Option<Duration>) -> Self {
        let sock = target.as_ref().and_then(|_| match sending_socket() {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!("cannot make a socket for systemd's notify messages now ({e}); one is made for each");
                None
            }
        });
        Notifier {
            target,
            sock,
            watchdog,
            last_ping: None,
            last_status: String::new(),
            ready_due: false,
            refused: 0,
        }
    }

    /// Whether a watchdog is configured.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Send one datagram without waiting; true when the socket took it (or
    /// there is no socket to notify).
    fn send(&mut self, states: &[NotifyState]) -> bool {
        let Some(addr) = &self.target else {
            return true;
        };
        let mut msg = String::new();
        for s in states {
            let _ = writeln!(msg, "{s}");
        }
        let sent = match &self.sock {
            Some(sock) => sock
                .send_to_addr(msg.as_bytes(), addr)
                .and_then(|n| whole(n, &msg)),
            None => send_now(addr, msg.as_bytes()),
        };
        match sent {
            Ok(()) => {
                if self.refused > 0 {
                    log::info!(
                        "systemd's notify socket takes messages again ({} not sent meanwhile)",
                        self.refused
                    );
                    self.refused = 0;
                }
                true
            }
            Err(e) => {
                if self.refused == 0 {
                    log::warn!(
                        "systemd's notify socket did not take a message ({e}); \
                         READY, STATUS and the watchdog pings are sent again until it does"
                    );
                }
                self.refused = self.refused.saturating_add(1);
                false
            }
        }
    }

    /// READY=1 with a status line (sent again by [`Notifier::tick`] until
    /// the socket takes it).
    pub fn ready(&mut self, status: &str) {
        self.ready_due = true;
        self.last_status = status.to_string();
        self.send_ready();
    }

    fn send_ready(&mut self) {
        let status = std::mem::take(&mut self.last_status);
        if self.send(&[NotifyState::Ready, NotifyState::Status(&status)]) {
            self.ready_due = false;
        }
        self.last_status = status;
    }

    /// STATUS=, when it changed since the socket last took one.
    pub fn status(&mut self, status: &str) {
        if self.ready_due {
            // The status goes with READY=1 when that goes.
            self.last_status = status.to_string();
            return;
        }
        if status != self.last_status {
            if self.send(&[NotifyState::Status(status)]) {
                status.clone_into(&mut self.last_status);
            } else {
                self.last_status.clear();
            }
        }
    }

    /// WATCHDOG=1 at half the watchdog interval, only when `healthy`; and
    /// READY=1 again if the socket has not taken it yet.
    pub fn tick(&mut self, healthy: bool) {
        if self.ready_due {
            self.send_ready();
        }
        let Some(wd) = self.watchdog else { return };
        if !healthy {
            return;
        }
        let due = self.last_ping.is_none_or(|t| t.elapsed() >= wd / 2);
        if due && self.send(&[NotifyState::Watchdog]) {
            self.last_ping = Some(Instant::now());
        }
    }

    /// RELOADING=1: a configuration reload started (READY=1 ends it).
    pub fn reloading(&mut self) {
        self.send(&[NotifyState::Reloading]);
    }

    /// STOPPING=1.
    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping]);
    }
}

/// The watchdog interval `WATCHDOG_USEC` asks for, if it is this
/// process's (`WATCHDOG_PID` unset or `me`, as sd_watchdog_enabled(3)
/// reads them): `Ok(None)` when there is none or it is another process's,
/// an error naming what cannot be read. At most a day (a larger value is
/// read as a day).
fn watchdog_from(
    usec: Option<&OsStr>,
    pid: Option<&OsStr>,
    me: u32,
) -> Result<Option<Duration>, String> {
    let Some(usec) = usec else { return Ok(None) };
    let show = |v: &OsStr| {
        let b = v.as_bytes();
        String::from_utf8_lossy(&b[..b.len().min(32)]).into_owned()
    };
    if let Some(pid) = pid {
        match pid.to_str().and_then(|p| p.parse::<u32>().ok()) {
            Some(p) if p == me => {}
            Some(_) => return Ok(None),
            None => return Err(format!("WATCHDOG_PID {:?} is not a process id", show(pid))),
        }
    }
    match usec.to_str().and_then(|u| u.parse::<u64>().ok()) {
        Some(0) => Ok(None),
        Some(us) => Ok(Some(Duration::from_micros(us.min(86_400_000_000)))),
        None => Err(format!(
            "WATCHDOG_USEC {:?} is not a number of microseconds",
            show(usec)
        )),
    }
}

/// The address `NOTIFY_SOCKET` names: an absolute path, or `@name` in the
/// abstract namespace (sd_notify(3)).
fn notify_addr(v: &OsStr) -> io::Result<SocketAddr> {
    let b = v.as_bytes();
    match b.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&b[1..]),
        Some(b'/') => SocketAddr::from_pathname(v),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute path or an @abstract name",
        )),
    }
}

/// An unbound datagram socket that never waits for room in a queue.
fn sending_socket() -> io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// One datagram to `addr` from a fresh socket (when none could be kept).
fn send_now(addr: &SocketAddr, msg: &[u8]) -> io::Result<()> {
    let sock = sending_socket()?;
    let n = sock.send_to_addr(msg, addr)?;
    whole(n, msg)
}

/// Whether `n` bytes were all of `msg`.
fn whole(n: usize, msg: impl AsRef<[u8]>) -> io::Result<()> {
    if n == msg.as_ref().len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "message cut short",
        ))
    }
}

#[cfg(test)]
mod tests;
