//! Running as a service: logging backends (journald/syslog or stderr),
//! sd-notify (READY, STATUS, WATCHDOG, STOPPING), signals, thread ids.

pub mod cpu;
pub mod inherited;
pub mod logging;
pub mod notify;
pub mod peer_lines;
pub mod safe_fs;
pub mod signals;

/// Kernel thread id of the calling thread.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// CPU time and peak RSS of the whole process.
pub fn process_usage() -> (f64, u64) {
    // SAFETY: getrusage writes into the provided, zero-initialised struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage for RUSAGE_SELF.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let cpu = ru.ru_utime.tv_sec as f64
        + ru.ru_utime.tv_usec as f64 / 1e6
        + ru.ru_stime.tv_sec as f64
        + ru.ru_stime.tv_usec as f64 / 1e6;
    (cpu, ru.ru_maxrss as u64 * 1024)
}
