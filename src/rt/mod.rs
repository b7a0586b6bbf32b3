//! Helpers for the real-time threads: lock-free scalars, waking a parked
//! thread, scheduling priority and memory locking, and the monotonic clock.
//!
//! Real-time safety: everything here that a real-time thread calls in its
//! loop ([`AtomicF32`], [`now_ns`], [`Wake::wake`]) neither allocates nor
//! locks. Priority and memory locking are set up once, before the loop.

mod atomic;
pub mod fault;
mod prio;
mod ring;
mod stop_fd;
mod wake;

pub use atomic::AtomicF32;
pub use prio::{
    give_back_freed, limit_malloc_arenas, lock_memory, pin_current_thread, resident_bytes,
    resolve_cpu, set_realtime_priority, RtGrant, MALLOC_ARENAS,
};
pub use ring::{touched_ring, touched_vec};
pub use stop_fd::StopFd;
pub use wake::Wake;

/// Stack size of phase4's own threads: none of our loops needs more than a
/// few tens of KiB. (Memory is locked with `MCL_ONFAULT`, so only the stack
/// pages a thread touches are resident; a smaller reservation still keeps
/// the locked address space small.)
pub const THREAD_STACK: usize = 256 * 1024;

/// Stack size of the threads that hand outside text to a recursive parser
/// we did not write: alsa-lib's configuration (capture, probes, the MIDI
/// clock's sequencer), `toml`
/// (presets, on the control thread), `rosc` (the OSC input). A main
/// thread's 8 MiB, as `arecord` or any ALSA tool has: tester u overflowed
/// [`THREAD_STACK`] (and aborted the process) with a block nested 2 000
/// deep anywhere in the ALSA configuration, and with a preset of 60 nested
/// inline tables. Only touched pages are resident (`MCL_ONFAULT`).
pub const PARSER_STACK: usize = 8 * 1024 * 1024;

thread_local! {
    static RT_LOOP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Mark the calling thread as inside (or outside) its real-time loop. The
/// allocation-counting test counts heap allocations only on threads that are
/// inside their loop, which is where the real-time rules apply.
pub fn mark_rt_loop(inside: bool) {
    RT_LOOP.with(|c| c.set(inside));
}

/// Whether the calling thread is inside its real-time loop. Safe to call
/// from a global allocator (a const-initialised thread local, no allocation).
pub fn in_rt_loop() -> bool {
    RT_LOOP.try_with(|c| c.get()).unwrap_or(false)
}

/// CLOCK_MONOTONIC in nanoseconds (the clock capture time stamps use).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } == 0 {
        return ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    }
    wide::now_ns()
}

/// The kernel's 64-bit clock calls, for a 32-bit `time_t` (armhf) whose C
/// library fails with EOVERFLOW past 2^31 s: the monotonic clock gets
/// there only with a time namespace's offset (a container, a restored
/// checkpoint), and then every time stamp, deadline and heartbeat was 0
/// and the capture thread spun.
#[cfg(all(target_os = "linux", target_arch = "arm"))]
mod wide {
    /// `clock_gettime64` and `clock_nanosleep_time64` on 32-bit Arm.
    const SYS_CLOCK_GETTIME64: libc::c_long = 403;
    const SYS_CLOCK_NANOSLEEP_TIME64: libc::c_long = 407;

    /// The kernel's `__kernel_timespec`: two 64-bit fields.
    fn split(ns: u64) -> [i64; 2] {
        [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64]
    }

    pub fn now_ns() -> u64 {
        let mut ts = [0i64; 2];
        // SAFETY: `ts` has the layout of the kernel's 64-bit timespec and
        // is writable for the call.
        let r =
            unsafe { libc::syscall(SYS_CLOCK_GETTIME64, libc::CLOCK_MONOTONIC, ts.as_mut_ptr()) };
        if r == 0 {
            ts[0] as u64 * 1_000_000_000 + ts[1] as u64
        } else {
            0
        }
    }

    /// Whether it slept (a deadline `time_t` cannot hold).
    pub fn sleep_until_ns(deadline_ns: u64) -> bool {
        if deadline_ns / 1_000_000_000 <= libc::time_t::MAX as u64 {
            return false;
        }
        let ts = split(deadline_ns);
        loop {
            // SAFETY: `ts` has the layout of the kernel's 64-bit timespec;
            // the remainder may be null with TIMER_ABSTIME.
            let r = unsafe {
                libc::syscall(
                    SYS_CLOCK_NANOSLEEP_TIME64,
                    libc::CLOCK_MONOTONIC,
                    libc::TIMER_ABSTIME,
                    ts.as_ptr(),
                    std::ptr::null_mut::<i64>(),
                )
            };
            if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return true;
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "arm")))]
mod wide {
    pub fn now_ns() -> u64 {
        0
    }

    pub fn sleep_until_ns(_deadline_ns: u64) -> bool {
        false
    }
}

/// Sleep until an absolute CLOCK_MONOTONIC time (no drift across sleeps).
pub fn sleep_until_ns(deadline_ns: u64) {
    if wide::sleep_until_ns(deadline_ns) {
        return;
    }
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid timespec and the remainder pointer may be null with TIMER_ABSTIME.
        let r = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if r != libc::EINTR {
            return;
        }
    }
}
