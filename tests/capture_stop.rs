//! The capture thread stops within a second whatever its source is doing:
//! reading a clockless, always-ready PCM (ALSA's `null`, whose poll is never
//! reached), waiting for ring space that never comes, waiting for a device
//! that is missing, or waiting for a FIFO's writer. Each runs through the
//! real alsa-lib or the real file system.

use phase4::capture::thread::{self, BlockTx, CaptureCtx, CaptureEvent, CaptureSpec};
use phase4::config::{AudioConfig, RealtimeConfig};
use phase4::rt::Wake;
use phase4::stats::Stats;
use phase4::types::Block;
use ringbuf::traits::{Consumer, Split};
use ringbuf::{HeapCons, HeapRb};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Running {
    handle: std::thread::JoinHandle<Vec<BlockTx>>,
    stop: Arc<AtomicBool>,
    stop_fd: nix::sys::eventfd::EventFd,
    events: Receiver<CaptureEvent>,
    stats: Arc<Stats>,
    rings: Vec<HeapCons<Block>>,
}

fn start(audio: AudioConfig) -> Running {
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let stop_fd = nix::sys::eventfd::EventFd::from_value_and_flags(
        0,
        nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
    )
    .unwrap();
    let mut outputs = Vec::new();
    let mut rings = Vec::new();
    for slot in 0..2 {
        let (prod, cons) = HeapRb::<Block>::new(16).split();
        outputs.push(BlockTx {
            prod,
            wake: Arc::new(Wake::new()),
            drop_slot: slot,
        });
        rings.push(cons);
    }
    let (tx, events) = std::sync::mpsc::channel();
    let spec = CaptureSpec {
        audio,
        realtime: RealtimeConfig {
            enabled: false,
            ..Default::default()
        },
        max_audio_s: None,
    };
    let handle = thread::spawn(
        spec,
        outputs,
        CaptureCtx {
            stats: stats.clone(),
            stop: stop.clone(),
            stop_fd: stop_fd.as_fd().as_raw_fd(),
            events: tx,
        },
    )
    .unwrap();
    Running {
        handle,
        stop,
        stop_fd,
        events,
        stats,
        rings,
    }
}

/// Ask the thread to stop as the supervisor does; the time it took.
fn stop(r: Running) -> Duration {
    let t = Instant::now();
    r.stop.store(true, Ordering::SeqCst);
    let _ = r.stop_fd.write(1);
    while !r.handle.is_finished() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = t.elapsed();
    assert!(
        r.handle.is_finished(),
        "the capture thread did not stop at all"
    );
    let outputs = r.handle.join().unwrap();
    assert_eq!(outputs.len(), 2, "the ring producers come back");
    took
}

fn null_device() -> AudioConfig {
    AudioConfig {
        device: "null".into(),
        channels: 1,
        ..Default::default()
    }
}

fn wait_opened(r: &Running) {
    match r.events.recv_timeout(Duration::from_secs(5)) {
        Ok(CaptureEvent::Opened { info, .. }) => {
            assert!(!info.clocked, "null has no clock: {info:?}")
        }
        other => panic!("expected Opened, got {other:?}"),
    }
}

#[test]
fn stops_while_an_always_ready_pcm_streams_into_drained_rings() {
    let mut r = start(null_device());
    wait_opened(&r);
    // Drain as fast as the workers would: the thread never has to wait.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(300) {
        for c in r.rings.iter_mut() {
            while c.try_pop().is_some() {}
        }
    }
    assert!(r.stats.blocks.load(Ordering::Relaxed) > 100);
    let consumers = std::mem::take(&mut r.rings);
    let drainer = std::thread::spawn(move || {
        let mut consumers = consumers;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(2) {
            for c in consumers.iter_mut() {
                while c.try_pop().is_some() {}
            }
        }
    });
    let took = stop(r);
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
    drainer.join().unwrap();
}

#[test]
fn stops_while_waiting_for_ring_space() {
    let r = start(null_device());
    wait_opened(&r);
    // Nobody drains: the clockless source waits for space.
    std::thread::sleep(Duration::from_millis(200));
    let took = stop(r);
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
}

#[test]
fn stops_while_retrying_a_missing_device() {
    let r = start(AudioConfig {
        device: "p4_no_such_device".into(),
        retry_initial_s: 5.0,
        retry_max_s: 5.0,
        ..Default::default()
    });
    match r.events.recv_timeout(Duration::from_secs(5)) {
        Ok(CaptureEvent::OpenFailed { .. }) => {}
        other => panic!("expected OpenFailed, got {other:?}"),
    }
    let took = stop(r);
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
}

#[test]
fn stops_while_a_fifo_has_no_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.wav");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let r = start(AudioConfig {
        input: fifo.display().to_string(),
        ..Default::default()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(r.events.try_recv().is_err(), "still waiting for the writer");
    let took = stop(r);
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
}
