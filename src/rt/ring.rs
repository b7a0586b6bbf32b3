//! Rings and buffers for the real-time threads whose memory is touched when
//! they are made, on the supervisor's thread.
//!
//! Memory is locked with `MCL_ONFAULT` ([`super::lock_memory`]): a page
//! stays resident once touched, and only touched pages are. A ring's slots
//! are otherwise first written by the real-time thread that fills it, one
//! page fault per page on its first pass (about 200 in the capture thread's
//! first quarter second at 48 kHz / 256); written here, they are not.

use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// A ring of `cap` items, each slot written once with `fill` and emptied
/// again.
pub fn touched_ring<T: Copy>(cap: usize, fill: T) -> (HeapProd<T>, HeapCons<T>) {
    let mut rb = HeapRb::<T>::new(cap);
    while rb.try_push(fill).is_ok() {}
    rb.clear();
    rb.split()
}

/// An empty vector with room for `n` items whose memory is already
/// written, so that under `mlockall(MCL_ONFAULT)` its pages are resident
/// and locked before a real-time loop first fills them.
pub fn touched_vec<T: Clone>(n: usize, fill: T) -> Vec<T> {
    // Not `vec![fill; n]`: for zeros that is calloc, which may hand out
    // fresh pages without writing them.
    let mut v = Vec::with_capacity(n);
    v.resize(n, fill);
    std::hint::black_box(&mut v);
    v.clear();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbuf::traits::Observer;

    #[test]
    fn a_touched_ring_starts_empty_with_its_whole_capacity() {
        let (mut tx, mut rx) = touched_ring(5, 7u32);
        assert!(rx.is_empty());
        assert_eq!(tx.vacant_len(), 5);
        for i in 0..5 {
            assert!(tx.try_push(i).is_ok());
        }
        assert!(tx.try_push(9).is_err());
        assert_eq!(
            (0..5).map(|_| rx.try_pop()).collect::<Vec<_>>(),
            (0..5).map(Some).collect::<Vec<_>>()
        );
    }
}
