use super::*;
use crate::capture::Source;

/// A 16-bit mono WAV at 8 kHz whose frame k holds k + 1.
fn ramp_wav(path: &Path, frames: usize) {
    std::fs::write(path, ramp_bytes(8000, frames, 1)).unwrap();
}

/// A 16-bit mono WAV at `rate` whose frame k holds k + `first`.
fn ramp_bytes(rate: u32, frames: usize, first: i16) -> Vec<u8> {
    let data: Vec<u8> = (0..frames)
        .flat_map(|k| (k as i16 + first).to_le_bytes())
        .collect();
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    for x in [1u16, 1] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(2 * rate).to_le_bytes());
    for x in [2u16, 16] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(&data);
    v
}

/// Read blocks until `done` says so of one, for at most `blocks`
/// blocks; the outcome that ended it.
fn read_until(
    src: &mut WavSource,
    blocks: usize,
    done: &dyn Fn(&[f32]) -> bool,
) -> Result<bool, CaptureError> {
    let mut block = Block::zeroed();
    let mut n = 0;
    while n < blocks {
        if let ReadOutcome::Block = src.read(&mut block)? {
            n += 1;
            if done(block.samples()) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[test]
fn a_file_overwritten_in_place_plays_its_new_audio_or_is_reopened() {
    use std::io::{Seek, SeekFrom, Write};
    let d = tempfile::tempdir().unwrap();
    let new_audio = |x: &[f32]| x.iter().any(|&v| v >= 20_000.0 / 32768.0);
    // The same format, written over the old bytes (same inode): the
    // new audio plays, from memory (7 frames) or from the file (1500),
    // and the source goes on (tester aa W1: the first pass was played
    // for ever, or the new bytes read as the old format).
    for frames in [7usize, 1500] {
        let p = d.path().join(format!("same{frames}.wav"));
        ramp_wav(&p, frames);
        let stop = Arc::new(AtomicBool::new(false));
        let mut src = WavSource::open(&p, -1, 256, true, stop, &|| {}).unwrap();
        assert!(!read_until(&mut src, 40, &new_audio).unwrap());
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(&ramp_bytes(8000, frames, 20_000)).unwrap();
        drop(f);
        // The ring reads about a second ahead: 8000 / 256 blocks.
        assert!(
            read_until(&mut src, 120, &new_audio).unwrap(),
            "{frames} frames: the new audio never played"
        );
    }
    // The same format with the data starting elsewhere (a chunk before
    // it): the pass starts again at the new data's first frame (review
    // ae AE2: read on from the old offset, frames were cut wrongly).
    let p = d.path().join("moved.wav");
    ramp_wav(&p, 1500);
    let stop = Arc::new(AtomicBool::new(false));
    let mut src = WavSource::open(&p, -1, 256, true, stop, &|| {}).unwrap();
    assert!(!read_until(&mut src, 10, &new_audio).unwrap());
    let plain = ramp_bytes(8000, 1500, 20_000);
    let mut moved = plain[..36].to_vec();
    moved.extend_from_slice(b"JUNK\x02\x00\x00\x00xy");
    moved.extend_from_slice(&plain[36..]);
    let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all(&moved).unwrap();
    drop(f);
    let first = std::sync::Mutex::new(None);
    assert!(read_until(&mut src, 120, &|x: &[f32]| {
        let hit = x.iter().find(|&&v| v >= 20_000.0 / 32768.0).copied();
        *first.lock().unwrap() = hit;
        hit.is_some()
    })
    .unwrap());
    assert_eq!(*first.lock().unwrap(), Some(20_000.0 / 32768.0));
    // A header with no audio behind it yet (a recorder writing into
    // the file) is waited for, not taken for an emptied file (review
    // ae AE1).
    let p = d.path().join("recorded.wav");
    ramp_wav(&p, 1500);
    let stop = Arc::new(AtomicBool::new(false));
    let mut src = WavSource::open(&p, -1, 256, true, stop, &|| {}).unwrap();
    assert!(!read_until(&mut src, 10, &new_audio).unwrap());
    let recorder = {
        let p = p.clone();
        std::thread::spawn(move || {
            let mut head = ramp_bytes(8000, 0, 0);
            head[40..44].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
            let mut f = std::fs::File::create(&p).unwrap();
            f.write_all(&head).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            let audio = ramp_bytes(8000, 4000, 20_000);
            for part in audio[44..].chunks(1600) {
                f.write_all(part).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    assert!(
        read_until(&mut src, 200, &new_audio).unwrap(),
        "the recording never played"
    );
    recorder.join().unwrap();
    // Another format: the source says it is gone, and the capture
    // thread reopens it at its new rate.
    for frames in [7usize, 1500] {
        let p = d.path().join(format!("other{frames}.wav"));
        ramp_wav(&p, frames);
        let stop = Arc::new(AtomicBool::new(false));
        let mut src = WavSource::open(&p, -1, 256, true, stop, &|| {}).unwrap();
        assert!(!read_until(&mut src, 10, &new_audio).unwrap());
        std::fs::write(&p, ramp_bytes(16000, frames, 20_000)).unwrap();
        match read_until(&mut src, 120, &|_| false) {
            Err(CaptureError::Gone { reason, .. }) => {
                assert!(reason.contains("changed format"), "{reason}")
            }
            other => panic!("{frames} frames: {other:?}"),
        }
    }
}

#[test]
fn a_looped_file_plays_on_seamlessly_short_or_long() {
    let d = tempfile::tempdir().unwrap();
    // 1, 7 and 300 frames loop from memory after the first pass; 1500
    // is more than a chunk and loops from the file.
    for frames in [1usize, 7, 300, 1500] {
        let p = d.path().join(format!("r{frames}.wav"));
        ramp_wav(&p, frames);
        let stop = Arc::new(AtomicBool::new(false));
        let mut src = WavSource::open(&p, -1, 256, true, stop, &|| {}).unwrap();
        let mut got = Vec::new();
        let mut block = Block::zeroed();
        while got.len() < 4000 {
            match src.read(&mut block).unwrap() {
                ReadOutcome::Block => got.extend_from_slice(block.samples()),
                ReadOutcome::Waiting => {}
                other => panic!("{frames} frames: {other:?}"),
            }
        }
        for (i, &x) in got.iter().enumerate() {
            let want = ((i % frames) + 1) as f32 / 32768.0;
            assert_eq!(x, want, "{frames} frames: sample {i}");
        }
    }
}
