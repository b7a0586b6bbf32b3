//! Running as a service: logging backends (journald/syslog or stderr),
//! sd-notify (READY, STATUS, WATCHDOG, STOPPING), signals, thread ids.

pub mod cpu;
pub mod inherited;
pub mod logging;
pub mod notify;
pub mod peer_lines;
pub mod safe_fs;
pub mod signals;
pub mod state_dir;

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

/// The error when this process has no file descriptor left (`EMFILE`, or
/// the system's table is full: `ENFILE`), found by opening `/dev/null`. A
/// file that failed to open for that reason is no fault of the file: its
/// failure must not be taken for a bad configuration, whose exit status
/// (78) the unit never restarts (tester ag AG4).
pub fn out_of_descriptors() -> Option<std::io::Error> {
    match std::fs::File::open("/dev/null") {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => Some(e),
        _ => None,
    }
}
