//! The onset detector's own FFT allocates nothing either. At 22.05 kHz the
//! detectors' window (21.3 ms, 470 frames) is not the spectrum's, so they
//! run their own FFT on the history, twice or three times per 512-frame
//! spectrum hop, each at the frame its hop falls due. Two seconds of a WAV
//! at real time through the whole service, counted like `tests/alloc.rs`,
//! with OSC sent as bundles (whose messages the sender lends to the bundle
//! and takes back). (Its own process: the service runs once per process.)

mod common {
    pub mod counting;
    pub mod wav_run;
}

#[test]
fn the_detectors_own_fft_does_not_allocate_per_block() {
    let (blocks, allocs) = common::wav_run::run_at(22_050, true);
    assert!(blocks >= 165, "only {blocks} blocks went through");
    assert_eq!(allocs, 0, "heap allocations on the real-time threads");
}
