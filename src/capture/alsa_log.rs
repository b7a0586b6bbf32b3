//! alsa-lib's own error messages, through phase4's logging.
//!
//! Left alone, alsa-lib prints its errors straight to stderr: two lines per
//! failed reopen while a device is away, tens of thousands of journal lines
//! a day for an unplugged interface. [`install`] sets a handler (a few lines
//! of C, csrc/alsa_errors.c, since alsa-lib's handler type is variadic) that
//! formats each message into a fixed buffer and pushes it into a bounded
//! lock-free queue; the supervisor calls [`AlsaLog::drain`] on every tick and
//! logs them as warnings: a message that differs from the previous one at
//! once (at most one per second), a repeat of the same message once a
//! minute with the number of repeats held back.
//!
//! Real-time safety: the handler may run on the capture thread. It formats
//! on the stack and pushes a `Copy` value into a preallocated
//! `crossbeam_queue::ArrayQueue` (lock-free, no allocation); when the queue
//! is full the message is counted and dropped.

use crate::service::logging::RateLimit;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Longest message kept (the C side formats into the same size).
const MSG: usize = 240;
/// Messages queued between two supervisor ticks at most.
const SLOTS: usize = 64;

#[derive(Clone, Copy)]
struct Msg {
    len: u8,
    bytes: [u8; MSG],
}

static QUEUE: OnceLock<ArrayQueue<Msg>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn p4_alsa_errors_install() -> libc::c_int;
}

/// Called by the C handler with a formatted message (not NUL-terminated).
///
/// # Safety
/// `msg` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn p4_alsa_error(msg: *const libc::c_char, len: libc::size_t) {
    let Some(q) = QUEUE.get() else { return };
    if msg.is_null() {
        return;
    }
    let len = len.min(MSG);
    let mut m = Msg {
        len: len as u8,
        bytes: [0; MSG],
    };
    // SAFETY: the caller guarantees `len` readable bytes at `msg`; `m.bytes`
    // has room for `len <= MSG` bytes and the two cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(msg as *const u8, m.bytes.as_mut_ptr(), len) };
    if q.push(m).is_err() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Route alsa-lib's error messages to [`AlsaLog`] from now on (call once,
/// before any PCM is opened). Returns false if alsa-lib refused.
pub fn install() -> bool {
    QUEUE.get_or_init(|| ArrayQueue::new(SLOTS));
    // SAFETY: installs a handler with the signature alsa-lib expects; the
    // handler only calls p4_alsa_error, which is safe at any time.
    unsafe { p4_alsa_errors_install() == 0 }
}

/// The supervisor's side: takes queued messages and logs them, rate-limited.
pub struct AlsaLog {
    last: String,
    repeats: RateLimit,
    any: RateLimit,
    dropped: u64,
}

impl Default for AlsaLog {
    fn default() -> Self {
        AlsaLog {
            last: String::new(),
            repeats: RateLimit::new(Duration::from_secs(60)),
            any: RateLimit::new(Duration::from_secs(1)),
            dropped: 0,
        }
    }
}

impl AlsaLog {
    /// Log what alsa-lib said since the last call (through `emit`, which is
    /// `log::warn!` in the service). Returns the number of messages taken.
    pub fn drain(&mut self, mut emit: impl FnMut(&str)) -> usize {
        let Some(q) = QUEUE.get() else { return 0 };
        let mut n = 0;
        while let Some(m) = q.pop() {
            n += 1;
            let text = String::from_utf8_lossy(&m.bytes[..m.len as usize]);
            let text = text.trim_end();
            let held = if text == self.last {
                self.repeats.allow()
            } else {
                let held = self.any.allow();
                if held.is_some() {
                    self.last = text.to_string();
                    self.repeats = RateLimit::new(Duration::from_secs(60));
                    self.repeats.allow();
                }
                held
            };
            if let Some(held) = held {
                if held > 0 {
                    emit(&format!("alsa-lib: {text} ({held} more held back)"));
                } else {
                    emit(&format!("alsa-lib: {text}"));
                }
            }
        }
        let dropped = DROPPED.load(Ordering::Relaxed);
        if dropped > self.dropped {
            emit(&format!(
                "alsa-lib: {} message(s) lost (more than {SLOTS} between two reads)",
                dropped - self.dropped
            ));
            self.dropped = dropped;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alsa_lib_errors_arrive_here_and_repeats_are_held_back() {
        assert!(install());
        // A PCM that does not exist: alsa-lib reports it through the handler.
        for _ in 0..5 {
            assert!(
                alsa::pcm::PCM::new("p4_no_such_pcm_x", alsa::Direction::Capture, true).is_err()
            );
        }
        let mut lines = Vec::new();
        let mut log = AlsaLog::default();
        let taken = log.drain(|l| lines.push(l.to_string()));
        assert!(taken >= 5, "{taken} messages: {lines:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("p4_no_such_pcm_x"), "{lines:?}");
    }
}
