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
//! Messages raised while a thread lists or probes devices for a client
//! ([`while_listing`]) are logged at debug level instead: enumerating the
//! hints makes alsa-lib expand every PCM definition, and on a machine
//! without a sound card that alone says "cannot find card '$CARD'" at every
//! start (the control thread prepares the device list for the greeting),
//! a warning about nothing the operator asked for. What the listing finds
//! unusable is in each entry's `error` for whoever asked; opening the
//! capture device itself still warns.
//!
//! Real-time safety: the handler may run on the capture thread. It formats
//! on the stack and pushes a `Copy` value into a preallocated
//! `crossbeam_queue::ArrayQueue` (lock-free, no allocation); when the queue
//! is full the message is counted and dropped.

use crate::service::logging::RateLimit;
use crossbeam_queue::ArrayQueue;
use std::cell::Cell;
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
    /// Raised inside [`while_listing`].
    listing: bool,
    bytes: [u8; MSG],
}

thread_local! {
    /// Whether this thread is inside [`while_listing`] (a `const` `Cell`:
    /// reading it from the handler neither allocates nor registers a
    /// destructor, also on the capture thread).
    static LISTING: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` (a device listing or probe) with alsa-lib's messages from this
/// thread logged at debug level rather than as warnings.
pub fn while_listing<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            LISTING.with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(LISTING.with(|l| l.replace(true)));
    f()
}

static QUEUE: OnceLock<ArrayQueue<Msg>> = OnceLock::new();
/// Messages the full queue turned away: [0] warnings, [1] a listing's
/// debug lines (their loss is itself only worth a debug line).
static DROPPED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

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
    let listing = LISTING.with(Cell::get);
    if listing && log::max_level() < log::LevelFilter::Debug {
        // Nobody would see it, and a listing says 30 things on a machine
        // without a card: kept out of the queue a real warning needs.
        return;
    }
    let len = len.min(MSG);
    let mut m = Msg {
        len: len as u8,
        listing,
        bytes: [0; MSG],
    };
    // SAFETY: the caller guarantees `len` readable bytes at `msg`; `m.bytes`
    // has room for `len <= MSG` bytes and the two cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(msg as *const u8, m.bytes.as_mut_ptr(), len) };
    if q.push(m).is_err() {
        DROPPED[listing as usize].fetch_add(1, Ordering::Relaxed);
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
    dropped: [u64; 2],
    /// The "messages lost" line, like a repeat: once a minute at most (a
    /// PCM that errs on every period overflows the queue at every tick).
    lost: [RateLimit; 2],
}

impl Default for AlsaLog {
    fn default() -> Self {
        AlsaLog {
            last: String::new(),
            repeats: RateLimit::new(Duration::from_secs(60)),
            any: RateLimit::new(Duration::from_secs(1)),
            dropped: [0; 2],
            lost: [
                RateLimit::new(Duration::from_secs(60)),
                RateLimit::new(Duration::from_secs(60)),
            ],
        }
    }
}

impl AlsaLog {
    /// Log what alsa-lib said since the last call (through `emit`, with
    /// the level: `Warn`, or `Debug` for what a listing raised, unlimited
    /// since debug lines are off by default). Returns the number of
    /// messages taken.
    pub fn drain(&mut self, mut emit: impl FnMut(log::Level, &str)) -> usize {
        let Some(q) = QUEUE.get() else { return 0 };
        let mut n = 0;
        while let Some(m) = q.pop() {
            n += 1;
            let text = String::from_utf8_lossy(&m.bytes[..m.len as usize]);
            let text = text.trim_end();
            if m.listing {
                emit(
                    log::Level::Debug,
                    &format!("alsa-lib (listing devices): {text}"),
                );
                continue;
            }
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
                    emit(
                        log::Level::Warn,
                        &format!("alsa-lib: {text} ({held} more held back)"),
                    );
                } else {
                    emit(log::Level::Warn, &format!("alsa-lib: {text}"));
                }
            }
        }
        for (listing, level) in [(0, log::Level::Warn), (1, log::Level::Debug)] {
            let dropped = DROPPED[listing].load(Ordering::Relaxed);
            if dropped > self.dropped[listing] && self.lost[listing].allow().is_some() {
                emit(
                    level,
                    &format!(
                        "alsa-lib: {} message(s) lost (more than {SLOTS} between two reads; said at most once a minute)",
                        dropped - self.dropped[listing]
                    ),
                );
                self.dropped[listing] = dropped;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `log` emits now: (level, line) for the lines naming `pcm`.
    fn drained(log: &mut AlsaLog, pcm: &str) -> Vec<(log::Level, String)> {
        let mut lines = Vec::new();
        log.drain(|level, l| lines.push((level, l.to_string())));
        lines.retain(|(_, l)| l.contains(pcm));
        lines
    }

    fn open(pcm: &str) {
        assert!(alsa::pcm::PCM::new(pcm, alsa::Direction::Capture, true).is_err());
    }

    /// One test for the shared queue (tests in this binary run in
    /// parallel and would take each other's messages).
    #[test]
    fn alsa_lib_errors_arrive_here_repeats_are_held_back_and_listings_are_quiet() {
        use log::Level::{Debug, Warn};
        assert!(install());
        // A PCM that does not exist: alsa-lib reports it through the
        // handler, every time; the log says it once.
        let mut log = AlsaLog::default();
        (0..5).for_each(|_| open("p4_no_such_pcm_x"));
        let lines = drained(&mut log, "p4_no_such_pcm_x");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].0, Warn, "{lines:?}");

        // Inside a listing: not even queued while debug lines are off (the
        // process's level; no logger is installed here)...
        let mut log = AlsaLog::default();
        log::set_max_level(log::LevelFilter::Info);
        while_listing(|| open("p4_no_such_pcm_unheard"));
        assert_eq!(drained(&mut log, "p4_no_such_pcm_unheard"), []);
        // ...and with them on, every message at debug level, none of them
        // using up the warnings' one-per-second slot.
        log::set_max_level(log::LevelFilter::Debug);
        let inside = while_listing(|| {
            (0..3).for_each(|_| open("p4_no_such_pcm_listed"));
            LISTING.with(Cell::get)
        });
        assert!(inside && !LISTING.with(Cell::get), "set inside only");
        let lines = drained(&mut log, "p4_no_such_pcm_listed");
        assert!(lines.len() >= 3, "{lines:?}");
        let labelled = |(lv, l): &(log::Level, String)| *lv == Debug && l.contains("listing");
        assert!(lines.iter().all(labelled), "{lines:?}");

        // After the listing, a warning again, at once.
        open("p4_no_such_pcm_after");
        let lines = drained(&mut log, "p4_no_such_pcm_after");
        assert!(lines.iter().any(|(lv, _)| *lv == Warn), "{lines:?}");

        // A listing that overfills the queue: its loss is a debug line too.
        while_listing(|| (0..2 * SLOTS).for_each(|_| open("p4_no_such_pcm_many")));
        let lines = drained(&mut log, "lost");
        assert!(lines.iter().any(|(lv, _)| *lv == Debug), "{lines:?}");
        // Overfilled again at the next tick (a PCM that errs on every
        // period): the loss is said once a minute, not at every tick.
        while_listing(|| (0..2 * SLOTS).for_each(|_| open("p4_no_such_pcm_many")));
        assert_eq!(drained(&mut log, "lost"), []);
    }
}
