//! Waking a consumer thread that parks while its ring is empty.
//!
//! `std::thread::park`/`unpark` is futex-based on Linux: `unpark` is an atomic
//! swap plus a `FUTEX_WAKE` only when the thread is actually parked. No lock
//! is shared between producer and consumer and nothing is allocated, which is
//! what the capture thread needs.

use std::sync::OnceLock;
use std::thread::Thread;

/// A handle the producer uses to wake one consumer thread.
#[derive(Debug, Default)]
pub struct Wake {
    thread: OnceLock<Thread>,
}

impl Wake {
    /// A handle with no thread registered yet.
    pub fn new() -> Self {
        Wake {
            thread: OnceLock::new(),
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
}
