//! Signals → requests the supervisor polls. No signal that `kill` can send
//! makes phase4 lose its state:
//!
//! - SIGTERM, SIGINT, SIGQUIT: stop cleanly (threads stopped, pending state
//!   written), exit 0.
//! - SIGHUP: re-read and validate the configuration and apply what can be
//!   applied while running (systemd's `ExecReload=` convention); on any
//!   problem keep running on the old one.
//! - SIGUSR1: write a health line now.
//! - SIGPIPE: ignored (a closed socket is an error return, not a death).
//! - SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSTKFLT, SIGXCPU,
//!   SIGXFSZ and the real-time signals: their default would kill the
//!   process; they are ignored and the supervisor logs that one arrived.
//!   (In fault-injection test builds SIGUSR2 triggers the injected fault.)
//!
//! SIGABRT (the watchdog's), SIGKILL and the fault signals (SIGSEGV, SIGBUS,
//! SIGILL, SIGFPE, SIGSYS, SIGTRAP) keep their defaults.
//!
//! Handlers only store to atomics and write to an eventfd (both
//! async-signal-safe); the eventfd lets the supervisor sleep for long
//! stretches yet act on a signal at once (see [`wait`]).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
static HEALTH_NOW: AtomicBool = AtomicBool::new(false);
static IGNORED: AtomicU32 = AtomicU32::new(0);
static LAST_IGNORED: AtomicI32 = AtomicI32::new(0);
/// An eventfd the handlers write to, so [`wait`] returns at once (-1: none).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Make [`wait`] return now. Async-signal-safe: one `write` on an eventfd,
/// with `errno` kept as the interrupted code left it.
fn poke() {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    let one: u64 = 1;
    // SAFETY: `__errno_location` returns this thread's errno slot; `one` is
    // a live u64 of the length given; a failed write (counter full) is
    // harmless: the fd is readable anyway.
    unsafe {
        let errno = *libc::__errno_location();
        libc::write(fd, &one as *const u64 as *const libc::c_void, 8);
        *libc::__errno_location() = errno;
    }
}

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    poke();
}

extern "C" fn on_reload(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
    poke();
}

extern "C" fn on_health(_: libc::c_int) {
    HEALTH_NOW.store(true, Ordering::SeqCst);
    poke();
}

extern "C" fn on_ignored(sig: libc::c_int) {
    LAST_IGNORED.store(sig, Ordering::SeqCst);
    IGNORED.fetch_add(1, Ordering::SeqCst);
}

/// Signals whose default action would end the process and that carry no
/// meaning for phase4.
fn ignored_signals() -> Vec<libc::c_int> {
    let mut v = vec![
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGSTKFLT,
        libc::SIGXCPU,
        libc::SIGXFSZ,
    ];
    v.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    v
}

fn handle(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction is a valid value; the handler only stores
    // to atomics (async-signal-safe); sa_mask is emptied by sigemptyset.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler as usize;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(sig, &act, std::ptr::null_mut());
    }
}

/// Install every handler (call once, before threads are spawned).
pub fn install() {
    if WAKE_FD.load(Ordering::SeqCst) < 0 {
        // SAFETY: plain syscall; the fd is kept for the life of the process.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        WAKE_FD.store(fd, Ordering::SeqCst);
    }
    for s in [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT] {
        handle(s, on_stop);
    }
    handle(libc::SIGHUP, on_reload);
    handle(libc::SIGUSR1, on_health);
    for s in ignored_signals() {
        handle(s, on_ignored);
    }
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Request a stop from inside (e.g. the input ended).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
    poke();
}

/// Sleep up to `max`, returning as soon as a stop, reload or health signal
/// arrives (whichever thread the kernel delivered it to). Without
/// [`install`] this is a plain sleep.
pub fn wait(max: std::time::Duration) {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd < 0 {
        std::thread::sleep(max);
        return;
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = max.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfd` is one valid pollfd; `buf` is a live u64 for the read.
    unsafe {
        if libc::poll(&mut pfd, 1, ms) > 0 {
            let mut buf = 0u64;
            libc::read(fd, &mut buf as *mut u64 as *mut libc::c_void, 8);
        }
    }
}

/// Whether a reload was requested since the last call.
pub fn take_reload() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}

/// Whether a health line was requested since the last call.
pub fn take_health_now() -> bool {
    HEALTH_NOW.swap(false, Ordering::SeqCst)
}

/// Ignored signals since the last call: how many, and the last one's number.
pub fn take_ignored() -> Option<(u32, i32)> {
    match IGNORED.swap(0, Ordering::SeqCst) {
        0 => None,
        n => Some((n, LAST_IGNORED.load(Ordering::SeqCst))),
    }
}

/// The name of signal `sig` ("SIGALRM", "SIGRTMIN+3").
pub fn name(sig: i32) -> String {
    if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig) {
        return format!("SIGRTMIN+{}", sig - libc::SIGRTMIN());
    }
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}
