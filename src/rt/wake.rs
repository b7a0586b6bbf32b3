//! Waking a consumer thread that parks while its ring is empty.
//!
//! `std::thread::park`/`unpark` is futex-based on Linux: `unpark` is an atomic
//! swap plus a `FUTEX_WAKE` only when the thread is actually parked. No lock
//! is shared between producer and consumer and nothing is allocated, which is
//! what the capture thread needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;

/// A handle the producer uses to wake one consumer thread.
#[derive(Debug, Default)]
pub struct Wake {
    thread: OnceLock<Thread>,
    /// The consumer needs no wake-up for blocks numbered below this.
    not_before: AtomicU64,
}

impl Wake {
    /// A handle with no thread registered yet.
    pub fn new() -> Self {
        Wake {
            thread: OnceLock::new(),
            not_before: AtomicU64::new(0),
        }
    }

    /// Register the calling thread as the one to wake. Call once, at the start
    /// of the consumer thread (this clones a handle, so never in the loop).
    pub fn register_current(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// Wake the consumer if one is registered.
    pub fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// Wake the consumer for block `seq`, unless it said it has no use for
    /// blocks before a later one (a spectrum worker between hops).
    pub fn wake_for(&self, seq: u64) {
        if seq >= self.not_before.load(Ordering::Relaxed) {
            self.wake();
        }
    }

    /// Consumer side: no wake-up needed before block `seq` (it still wakes
    /// on its own timeout, so a missed wake-up only delays).
    pub fn defer_until(&self, seq: u64) {
        self.not_before.store(seq, Ordering::Relaxed);
    }
}
