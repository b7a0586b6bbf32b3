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

/// Tester o's F2: every command announced the whole listing to every
/// authorized client at once, so a token holder sending commands as fast
/// as the queue took them filled every listener's queue. A burst is now
/// announced once at once and once more when [`ANNOUNCE_EVERY`] has passed;
/// a download ticket, which changes nothing, is announced to nobody.
#[test]
fn a_burst_of_commands_is_announced_once_a_second() {
    let d = tempfile::tempdir().unwrap();
    let (mut rec, tape) = recorder(d.path(), 64);
    feed(&tape, 48_000);
    let announced = |out: &[RecReply]| {
        out.iter()
            .filter(|r| r.to.is_none() && matches!(r.msg, RecMsg::Recordings(..)))
            .count()
    };
    let mut out = Vec::new();
    rec.handle(1, RecCommand::SaveReplay { seconds: Some(0.5) }, &mut out);
    let name = match &out[0].msg {
        RecMsg::Saved { name, .. } => name.to_string(),
        m => panic!("{m:?}"),
    };
    assert_eq!(announced(&out), 1, "the first change at once");
    out.clear();
    for _ in 0..20 {
        rec.handle(1, RecCommand::Start, &mut out);
        rec.handle(1, RecCommand::Stop, &mut out);
        rec.handle(2, RecCommand::Download { name: name.clone() }, &mut out);
        rec.tick(&mut out);
    }
    assert_eq!(announced(&out), 0, "the rest waits: {out:?}");
    let tickets = out
        .iter()
        .filter(|r| r.to == Some(2) && matches!(r.msg, RecMsg::Download { .. }))
        .count();
    assert_eq!(tickets, 20, "each download is answered to its client");
    // Once the second has passed, the burst is announced once, with what
    // it left: the saved file (the recordings got no audio, so no file),
    // no recording running.
    assert!(rec.next_wait() <= ANNOUNCE_EVERY);
    std::thread::sleep(ANNOUNCE_EVERY);
    rec.tick(&mut out);
    rec.tick(&mut out);
    assert_eq!(announced(&out), 1);
    match &out.iter().rev().find(|r| r.to.is_none()).unwrap().msg {
        RecMsg::Recordings(l, status) => {
            assert_eq!(l.items.len(), 1, "{l:?}");
            assert!(!status.recording);
        }
        m => panic!("{m:?}"),
    }
    // Downloads alone announce nothing, however long.
    out.clear();
    std::thread::sleep(ANNOUNCE_EVERY);
    rec.handle(2, RecCommand::Download { name }, &mut out);
    rec.tick(&mut out);
    assert_eq!(announced(&out), 0);
}

/// Once a second was still too often for a full folder: a token holder
/// alternating start and stop sent a 64 KiB listing every second to every
/// authorized client, and cut a 64 KB/s listener within 10 s. A big
/// listing now waits in proportion to its size ([`ANNOUNCE_BYTES_PER_S`]).
#[test]
fn a_big_listing_is_announced_less_often() {
    let d = tempfile::tempdir().unwrap();
    let (mut rec, tape) = recorder(d.path(), 64);
    feed(&tape, 4_800);
    let mut out = Vec::new();
    rec.handle(
        1,
        RecCommand::SaveReplay {
            seconds: Some(0.05),
        },
        &mut out,
    );
    let RecMsg::Saved { name, .. } = &out[0].msg else {
        panic!("{:?}", out[0].msg)
    };
    let dir = d.path().join(RECORDINGS_DIR);
    let saved = dir.join(name.as_str());
    for i in 0..600 {
        let copy = format!(
            "rec-2026-01-01T00-{:02}-{:02}.{:03}Z.wav",
            i / 60,
            i % 60,
            i
        );
        std::fs::copy(&saved, dir.join(copy)).unwrap();
    }
    let wait_after_announcing = |rec: &mut Recorder, out: &mut Vec<RecReply>| {
        std::thread::sleep(rec.next_announce.saturating_duration_since(Instant::now()));
        out.clear();
        rec.handle(1, RecCommand::Start, out);
        assert!(
            out.iter().any(|r| r.to.is_none()),
            "announced at once: {out:?}"
        );
        rec.handle(1, RecCommand::Stop, out);
        rec.next_announce.saturating_duration_since(Instant::now())
    };
    // 601 listed: the 64 KiB that the WebSocket side cuts it to, 8 s.
    let wait = wait_after_announcing(&mut rec, &mut out);
    assert!(wait > Duration::from_secs(7), "{wait:?}");
    // A small folder: once a second, as before.
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p != saved {
            std::fs::remove_file(p).unwrap();
        }
    }
    rec.next_announce = Instant::now();
    let wait = wait_after_announcing(&mut rec, &mut out);
    assert!(wait <= ANNOUNCE_EVERY, "{wait:?}");
}

/// Tester p's P1: the listing was made again for every `list_recordings`
/// while a recording ran, and after any failed command (a delete of a name
/// that does not exist before each list kept this thread at half a core
/// with a full folder). Both now reuse a listing younger than
/// [`LIST_FRESH`]; a command that changed something still lists afresh.
#[test]
fn a_listing_is_reused_while_recording_and_after_a_failed_delete() {
    let d = tempfile::tempdir().unwrap();
    let (mut rec, tape) = recorder(d.path(), 64);
    feed(&tape, 48_000);
    let mut out = Vec::new();
    rec.handle(1, RecCommand::SaveReplay { seconds: Some(0.5) }, &mut out);
    let saved = match &out[0].msg {
        RecMsg::Saved { name, .. } => d.path().join(RECORDINGS_DIR).join(name.as_str()),
        m => panic!("{m:?}"),
    };
    let listed = |rec: &mut Recorder| {
        let mut out = Vec::new();
        rec.handle(1, RecCommand::List, &mut out);
        match &out[0].msg {
            RecMsg::Recordings(l, _) => l.items.len(),
            m => panic!("{m:?}"),
        }
    };
    assert_eq!(listed(&mut rec), 1);
    // A file appears behind the recorder's back: the listing of a moment
    // ago is still the answer, a failed delete notwithstanding.
    let copy = |n: u32| {
        let to = d
            .path()
            .join(RECORDINGS_DIR)
            .join(format!("replay-2026-01-01T00-00-{n:02}.000Z.wav"));
        std::fs::copy(&saved, to).unwrap();
    };
    copy(1);
    out.clear();
    let missing = "replay-2000-01-01T00-00-00.000Z.wav".to_string();
    rec.handle(1, RecCommand::Delete { name: missing }, &mut out);
    assert!(matches!(out[0].msg, RecMsg::Error(_)), "{out:?}");
    assert_eq!(listed(&mut rec), 1, "the failed delete changed nothing");
    // A start changes something: listed afresh (the copy, no file of the
    // recording yet: it has had no audio).
    rec.handle(1, RecCommand::Start, &mut out);
    assert!(rec.active.is_some(), "{:?}", rec.last_error);
    assert_eq!(listed(&mut rec), 2);
    // While it runs, a listing is reused for LIST_FRESH ...
    copy(2);
    assert_eq!(listed(&mut rec), 2);
    // ... and made again after it.
    std::thread::sleep(LIST_FRESH);
    assert_eq!(listed(&mut rec), 3);
}
