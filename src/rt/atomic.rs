//! An `f32` that can be shared between threads without a lock.

use std::sync::atomic::{AtomicU32, Ordering};

/// An `f32` stored as its bits in an [`AtomicU32`].
#[derive(Debug, Default)]
pub struct AtomicF32(AtomicU32);

impl AtomicF32 {
    /// A new value.
    pub fn new(v: f32) -> Self {
        AtomicF32(AtomicU32::new(v.to_bits()))
    }

    /// Read (relaxed: these are status values, not synchronisation).
    pub fn get(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// Write.
    pub fn set(&self, v: f32) {
        self.0.store(v.to_bits(), Ordering::Relaxed)
    }
}
