//! A counting global allocator for the allocation tests: it counts heap
//! allocations made by threads that are inside their real-time loop
//! (`phase4::rt::in_rt_loop`). And the configuration both tests run with.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

pub static RT_ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; counting
// only reads a const-initialised thread local and bumps an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if phase4::rt::in_rt_loop() {
            RT_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if phase4::rt::in_rt_loop() {
            RT_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if phase4::rt::in_rt_loop() {
            RT_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The service's configuration for an allocation test: OSC to the discard
/// port, no WebSocket, no state directory, no health line during the run.
pub fn quiet_config() -> phase4::config::Config {
    let mut cfg = phase4::config::Config::default();
    cfg.fft.enabled = true;
    cfg.osc.destinations[0].port = 9;
    cfg.ws.enabled = false;
    cfg.state.dir = String::new();
    cfg.health.interval_s = 3600.0;
    cfg
}
