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
    limit_malloc_arenas, lock_memory, pin_current_thread, resolve_cpu, set_realtime_priority,
    RtGrant, MALLOC_ARENAS,
};
pub use ring::{touched_ring, touched_vec};
pub use stop_fd::StopFd;
pub use wake::Wake;

/// Stack size of phase4's own threads: none of our loops needs more than a
/// few tens of KiB. (Memory is locked with `MCL_ONFAULT`, so only the stack
/// pages a thread touches are resident; a smaller reservation still keeps
/// the locked address space small.)
pub const THREAD_STACK: usize = 256 * 1024;

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
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleep until an absolute CLOCK_MONOTONIC time (no drift across sleeps).
pub fn sleep_until_ns(deadline_ns: u64) {
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
