//! The WAV-input allocation run both WAV allocation tests share.

use super::counting::RT_ALLOCS;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Two seconds of a swept tone with clicks at `rate` through the service,
/// OSC sent as bundles or not: the blocks that went through and the
/// real-time threads' allocations.
pub fn run_at(rate: u32, osc_bundle: bool) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("in.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for i in 0..rate * 3 {
        let t = i as f32 / rate as f32;
        let v = 0.4 * (2.0 * std::f32::consts::PI * (100.0 + 2000.0 * t) * t).sin();
        let click = if i % (rate / 2) < rate / 240 {
            0.5
        } else {
            0.0
        };
        w.write_sample(((v + click) * 30_000.0) as i16).unwrap();
        w.write_sample((v * 10_000.0) as i16).unwrap();
    }
    w.finalize().unwrap();

    let mut cfg = super::counting::quiet_config();
    cfg.audio.input = wav.display().to_string();
    cfg.audio.sample_rate_hz = rate;
    cfg.osc.bundle = osc_bundle;

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
    assert_eq!(code, 0, "at {rate} Hz");
    (
        stats.blocks.load(Ordering::SeqCst),
        RT_ALLOCS.load(Ordering::SeqCst),
    )
}
