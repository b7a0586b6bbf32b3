//! A stop request a thread can wait on: an eventfd that turns readable,
//! and stays readable, once [`StopFd::fire`] is called, and the same for a
//! tokio task ([`StopFd::fired`]).
//!
//! Threads that sleep in `poll()` or an event loop between events (the
//! WebSocket acceptor, the HTTP server) wait on it instead of waking every
//! 100–200 ms to look at their stop flag: with nothing to do they do not
//! wake at all, and a stop still reaches them at once. The stop flag stays
//! the one source of truth; this only ends the wait.

use nix::sys::eventfd::{EfdFlags, EventFd};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Cheap to clone: every clone is the same stop.
#[derive(Clone, Debug)]
pub struct StopFd(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    fd: EventFd,
    fired: AtomicBool,
    notify: tokio::sync::Notify,
}

impl StopFd {
    /// A new, not yet fired, stop fd (non-blocking, close-on-exec).
    pub fn new() -> std::io::Result<Self> {
        let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(StopFd(Arc::new(Inner {
            fd,
            fired: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
        })))
    }

    /// Make the fd readable for good (nobody reads it back) and end every
    /// [`StopFd::fired`], now and later.
    pub fn fire(&self) {
        self.0.fired.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
        // EAGAIN only when the counter is about to overflow: then it is
        // readable already.
        let _ = self.0.fd.write(1);
    }

    /// Returns once [`StopFd::fire`] was called (at once if it was).
    pub async fn fired(&self) {
        let notified = self.0.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read: a fire in between is not lost.
        notified.as_mut().enable();
        if self.0.fired.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

impl AsFd for StopFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags};

    fn readable(s: &StopFd, ms: u16) -> bool {
        let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, ms).unwrap_or(0) == 1
    }

    #[test]
    fn readable_only_after_fire_and_for_every_clone() {
        let s = StopFd::new().expect("eventfd");
        let c = s.clone();
        assert!(!readable(&c, 0));
        s.fire();
        assert!(readable(&c, 0));
        // It stays readable: every waiter sees it, however many look.
        assert!(readable(&s, 0));
        s.fire();
        assert!(readable(&c, 0));
    }

    #[test]
    fn fired_ends_for_a_waiting_task_and_a_late_one() {
        let s = StopFd::new().expect("eventfd");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        // Not fired: the wait does not end on its own.
        let early = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_millis(50), s.fired())
                .await
                .is_ok()
        });
        assert!(!early);
        let f = s.clone();
        let firer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            f.fire();
        });
        let woke = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), s.fired())
                .await
                .is_ok()
        });
        assert!(woke, "a task waiting while another thread fires must wake");
        let _ = firer.join();
        // Later waits end at once.
        rt.block_on(s.fired());
    }
}
