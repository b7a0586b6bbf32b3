//! The WAV input's real-time path allocates nothing either: the capture
//! thread only pops decoded samples from the reader thread's ring and sleeps
//! to each block's deadline (the reader thread, not real-time, does the
//! disk I/O and decoding). Two seconds of a WAV at real time through the
//! whole service, counted like `tests/alloc.rs`.

mod common {
    pub mod counting;
}
use common::counting::RT_ALLOCS;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[test]
fn the_paced_wav_input_does_not_allocate_per_block() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("in.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for i in 0..48_000 * 3 {
        let t = i as f32 / 48_000.0;
        let v = 0.4 * (2.0 * std::f32::consts::PI * (100.0 + 2000.0 * t) * t).sin();
        let click = if i % 24_000 < 200 { 0.5 } else { 0.0 };
        w.write_sample(((v + click) * 30_000.0) as i16).unwrap();
        w.write_sample((v * 10_000.0) as i16).unwrap();
    }
    w.finalize().unwrap();

    let mut cfg = common::counting::quiet_config();
    cfg.audio.input = wav.display().to_string();

    let stats = Arc::new(phase4::stats::Stats::default());
    RT_ALLOCS.store(0, Ordering::SeqCst);
    let code = phase4::app::run(
        cfg,
        phase4::app::RunOptions {
            max_audio_s: Some(2.0),
            stats: Some(stats.clone()),
            ..Default::default()
        },
    );
    assert_eq!(code, 0);
    let blocks = stats.blocks.load(Ordering::SeqCst);
    assert!(blocks >= 370, "only {blocks} blocks went through");
    assert_eq!(
        RT_ALLOCS.load(Ordering::SeqCst),
        0,
        "heap allocations on the real-time threads"
    );
}
