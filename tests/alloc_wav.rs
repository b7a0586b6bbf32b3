//! The WAV input's real-time path allocates nothing either: the capture
//! thread only pops decoded samples from the reader thread's ring and sleeps
//! to each block's deadline (the reader thread, not real-time, does the
//! disk I/O and decoding). Two seconds of a WAV at real time through the
//! whole service at 48 kHz, counted like `tests/alloc.rs` (the onset
//! detector reuses the spectrum's FFT there; `tests/alloc_wav_rate.rs` runs
//! the path where it has its own).

mod common {
    pub mod counting;
    pub mod wav_run;
}

#[test]
fn the_paced_wav_input_does_not_allocate_per_block() {
    let (blocks, allocs) = common::wav_run::run_at(48_000, false);
    assert!(blocks >= 370, "only {blocks} blocks went through");
    assert_eq!(allocs, 0, "heap allocations on the real-time threads");
}
