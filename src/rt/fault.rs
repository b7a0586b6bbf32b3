//! Fault injection for tests: make one pipeline thread hang on demand, so the
//! watchdog's behaviour can be checked. Exists only with the
//! `fault-injection` cargo feature; in normal builds [`Fault::check`] is an
//! empty inline function.
//!
//! Use: start phase4 with `PHASE4_FAULT_HANG=<thread>` (capture, bands,
//! spectrum, osc, ws) and send it `SIGUSR2`: that thread stops making
//! progress (it sleeps forever without a heartbeat) until the process stops.
//!
//! `PHASE4_FAULT_SLOW_FSYNC_MS=<ms>` makes every fsync of the state and
//! preset files take that much longer, as on a slow SD card ([`slow_fsync`]).
//!
//! `PHASE4_FAULT_MLOCK_REFUSALS=<n>` refuses the `n` memory locks after the
//! first one ([`refuse_mlock`]), as a lowered `RLIMIT_MEMLOCK` would: the
//! kernel lets root with `CAP_IPC_LOCK` lock anything, and raising the limit
//! back needs `CAP_SYS_RESOURCE`, which the test machines lack.

use crate::stats::Role;
use std::sync::atomic::AtomicBool;

/// A thread's fault-injection hook.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    armed_for_me: bool,
}

#[cfg(feature = "fault-injection")]
static TRIGGERED: AtomicBool = AtomicBool::new(false);

#[cfg(feature = "fault-injection")]
extern "C" fn on_sigusr2(_: libc::c_int) {
    TRIGGERED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Install the SIGUSR2 trigger (test builds only; no-op otherwise).
pub fn install() {
    #[cfg(feature = "fault-injection")]
    {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        let act = SigAction::new(
            SigHandler::Handler(on_sigusr2),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(Signal::SIGUSR2, &act) };
    }
}

impl Fault {
    /// The hook for `role` (reads `PHASE4_FAULT_HANG` once, at thread start).
    pub fn for_role(role: Role) -> Self {
        #[cfg(feature = "fault-injection")]
        {
            let want = std::env::var("PHASE4_FAULT_HANG").unwrap_or_default();
            Fault {
                armed_for_me: want == crate::stats::ROLE_NAMES[role as usize],
            }
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = role;
            Fault {
                armed_for_me: false,
            }
        }
    }

    /// Hang here forever if this thread's fault was triggered.
    #[inline(always)]
    pub fn check(&self, _stop: &AtomicBool) {
        #[cfg(feature = "fault-injection")]
        if self.armed_for_me && TRIGGERED.load(std::sync::atomic::Ordering::Relaxed) {
            loop {
                if _stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Even a hung thread lets the process exit cleanly.
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

/// Before an fsync of a state or preset file: with fault injection and
/// `PHASE4_FAULT_SLOW_FSYNC_MS` set, sleep that long (a slow SD card, whose
/// fsync takes 10 ms to over a second). Nothing otherwise.
#[inline(always)]
pub fn slow_fsync() {
    #[cfg(feature = "fault-injection")]
    {
        static MS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let ms = *MS.get_or_init(|| {
            std::env::var("PHASE4_FAULT_SLOW_FSYNC_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
                .min(10_000)
        });
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
}

/// Whether this memory lock is to be refused: with fault injection and
/// `PHASE4_FAULT_MLOCK_REFUSALS=<n>`, the second to the `n + 1`-th calls.
/// Always false otherwise.
#[inline(always)]
pub fn refuse_mlock() -> bool {
    #[cfg(feature = "fault-injection")]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let n: u64 = std::env::var("PHASE4_FAULT_MLOCK_REFUSALS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        call >= 1 && call <= n
    }
    #[cfg(not(feature = "fault-injection"))]
    false
}
