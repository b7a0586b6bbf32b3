//! The real-time path allocates nothing.
//!
//! A counting global allocator counts heap allocations made by threads that
//! are inside their real-time loop (`phase4::rt::in_rt_loop`): the capture
//! thread, both DSP workers and the OSC sender (which, on this clockless
//! device, often finds a backlog of frames at once). The whole service runs on a real ALSA device
//! (alsa-lib's `file` plugin fed from a generated raw file, no sound card
//! needed) for well over 10 000 blocks of varied audio, with every feature
//! and the log spectrum on, and the count must stay zero. The monitor is on
//! too (issue 14): the replay buffer runs, a WebSocket client listens to the
//! Opus stream and a recording is written, so capture feeds the monitor's
//! ring the whole time.

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
    cfg.ws.enabled = true;
    cfg.ws.bind = "127.0.0.1".into();
    cfg.ws.port = free_port();
    cfg.ws.http_port = free_port();
    cfg.state.dir = dir.path().join("state").display().to_string();
    let listener = listen(cfg.ws.port);

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
    let (packets, recorded) = listener.join().unwrap();
    assert!(packets > 50, "the listener got {packets} Opus packets");
    assert!(recorded, "the recording did not start");
    let recs = std::fs::read_dir(dir.path().join("state/recordings")).unwrap();
    assert!(recs.count() >= 1, "no recording was written");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A client on this machine (trusted) that records and listens until the
/// server goes away: (Opus packets received, recording started).
fn listen(port: u16) -> std::thread::JoinHandle<(u64, bool)> {
    use tungstenite::Message;
    std::thread::spawn(move || {
        let url = format!("ws://127.0.0.1:{port}/");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut ws = loop {
            match tungstenite::connect(&url) {
                Ok((ws, _)) => break ws,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("cannot connect: {e}"),
            }
        };
        for m in [
            r#"{"type":"subscribe_audio","quality":"medium"}"#,
            r#"{"type":"start_recording"}"#,
        ] {
            ws.send(Message::Text(m.into())).unwrap();
        }
        let (mut packets, mut recorded) = (0, false);
        while let Ok(m) = ws.read() {
            match m {
                Message::Binary(b) if b.first() == Some(&2) => packets += 1,
                Message::Text(t) if t.contains(r#""active":true"#) => recorded = true,
                _ => {}
            }
        }
        (packets, recorded)
    })
}
