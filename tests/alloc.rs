//! The real-time path allocates nothing.
//!
//! A counting global allocator counts heap allocations made by threads that
//! are inside their real-time loop (`phase4::rt::in_rt_loop`): the capture
//! thread and both DSP workers. The whole service runs on a real ALSA device
//! (alsa-lib's `file` plugin fed from a generated raw file, no sound card
//! needed) for well over 10 000 blocks of varied audio, with every feature
//! and the log spectrum on, and the count must stay zero.

mod common {
    pub mod counting;
}
use common::counting::RT_ALLOCS;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const BLOCKS: u64 = 12_000;
const BLOCK: u64 = 256;
const RATE: u64 = 48_000;

/// Tones sweeping across the bands, clicks, noise bursts and silence, so that
/// every code path (onsets, beats, silence, gates) runs.
fn test_signal(frames: u64) -> Vec<i16> {
    let mut seed = 0x1234_5678u32;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed as f32 / u32::MAX as f32) * 2.0 - 1.0
    };
    (0..frames)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            let seg = (t / 2.0) as u32 % 4;
            let beat = (t * 2.0).fract() < 0.02;
            let v = match seg {
                0 => 0.4 * (2.0 * std::f32::consts::PI * (80.0 + 400.0 * t) * t).sin(),
                1 => 0.3 * noise() * if beat { 1.0 } else { 0.1 },
                2 => 0.0,
                _ => {
                    if beat {
                        0.9
                    } else {
                        0.05 * noise()
                    }
                }
            };
            (v.clamp(-1.0, 1.0) * 32_000.0) as i16
        })
        .collect()
}

#[test]
fn capture_and_workers_do_not_allocate_per_block() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("input.raw");
    let mut f = std::fs::File::create(&raw).unwrap();
    // One extra second so the plugin never runs past the end of the file.
    for s in test_signal((BLOCKS + 200) * BLOCK) {
        f.write_all(&s.to_le_bytes()).unwrap();
    }
    drop(f);
    let conf = dir.path().join("asound.conf");
    std::fs::write(
        &conf,
        format!(
            "pcm.p4alloc {{\n type file\n slave.pcm \"null\"\n file \"/dev/null\"\n infile \"{}\"\n format \"raw\"\n}}\n",
            raw.display()
        ),
    )
    .unwrap();
    std::env::set_var(
        "ALSA_CONFIG_PATH",
        format!("/usr/share/alsa/alsa.conf:{}", conf.display()),
    );

    let mut cfg = common::counting::quiet_config();
    cfg.audio.device = "p4alloc".into();
    cfg.audio.format = phase4::config::SampleFormat::S16Le;
    cfg.audio.channels = 1;
    cfg.audio.access = phase4::config::AccessMode::Mmap;
    cfg.osc.send_fft = true;

    let stats = Arc::new(phase4::stats::Stats::default());
    RT_ALLOCS.store(0, Ordering::SeqCst);
    let code = phase4::app::run(
        cfg,
        phase4::app::RunOptions {
            max_audio_s: Some((BLOCKS * BLOCK) as f64 / RATE as f64),
            stats: Some(stats.clone()),
            ..Default::default()
        },
    );
    assert_eq!(code, 0);
    let blocks = stats.blocks.load(Ordering::SeqCst);
    assert!(blocks >= BLOCKS, "only {blocks} blocks went through");
    let drops: u64 = stats
        .ring_drops
        .iter()
        .map(|d| d.load(Ordering::SeqCst))
        .sum();
    assert_eq!(drops, 0, "a clockless device must not drop blocks");
    assert!(
        stats.osc_sent.load(Ordering::SeqCst) >= BLOCKS,
        "feature frames must have come out of the workers"
    );
    assert_eq!(
        RT_ALLOCS.load(Ordering::SeqCst),
        0,
        "heap allocations on the real-time threads"
    );
}
