//! The recorder's tests: the quota to the byte.

use super::*;
use crate::monitor::tape::SampleKind;
use crate::monitor::wav_out::HEADER_MAX;
use crate::types::{Block, MAX_BLOCK_FRAMES};

/// A recorder with a quota of `quota_mb` MiB in `dir`, and its tape
/// (48 kHz, 32-bit float: 4 bytes a frame).
fn recorder(dir: &Path, quota_mb: u64) -> (Recorder, Arc<Mutex<Tape>>) {
    let mut config = Config::default();
    config.state.dir = dir.to_string_lossy().into_owned();
    config.record.enabled = true;
    config.record.max_total_mb = quota_mb;
    config.record.min_free_mb = 0;
    let tape = Arc::new(Mutex::new(Tape::new(30.0)));
    tape.lock().unwrap().begin(48_000, SampleKind::F32);
    let hub = MonitorHub::new(&config);
    let rec = Recorder::new(&config, tape.clone(), hub, Arc::new(Tickets::default()));
    (rec, tape)
}

/// Put `frames` frames of a quiet tone on the tape.
fn feed(tape: &Mutex<Tape>, mut frames: usize) {
    let mut t = tape.lock().unwrap();
    while frames > 0 {
        let mut b = Block::zeroed();
        b.sample_rate = 48_000;
        b.len = frames.min(MAX_BLOCK_FRAMES) as u32;
        for (i, s) in b.samples[..b.len as usize].iter_mut().enumerate() {
            *s = 0.1 * (i as f32 * 0.05).sin();
        }
        t.append(&b);
        frames -= b.len as usize;
    }
}

fn recorded_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join(RECORDINGS_DIR))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn a_recording_fills_its_quota_to_the_byte_and_not_one_byte_more() {
    let d = tempfile::tempdir().unwrap();
    let quota = 2u64 << 20;
    let (mut rec, tape) = recorder(d.path(), 2);
    let mut out = Vec::new();
    rec.handle(1, RecCommand::Start, &mut out);
    assert!(rec.active.is_some(), "{:?}", rec.last_error);
    // A float WAV's header is 68 bytes; the frames that leave the file
    // exactly at the quota, fed in pieces of every size up to a block.
    let fits = ((quota - HEADER_MAX) / 4) as usize;
    let mut fed = 0;
    let mut piece = 1;
    while fed < fits {
        let n = piece.min(fits - fed);
        feed(&tape, n);
        fed += n;
        rec.pump().expect("within the quota");
        piece = piece % (3 * MAX_BLOCK_FRAMES) + 997;
    }
    let a = rec.active.as_ref().unwrap();
    assert_eq!((a.done_bytes, a.writer.as_ref().unwrap().bytes), (0, quota));
    // One frame more is refused, and the file stays at the quota.
    feed(&tape, 1);
    let e = rec.pump().unwrap_err();
    assert!(e.contains("quota"), "{e}");
    rec.stop(Some(e)).unwrap();
    assert_eq!(recorded_bytes(d.path()), quota);
    let l = rec.listing();
    assert_eq!(l.items.len(), 1);
    assert_eq!(l.total_bytes, quota);
}
