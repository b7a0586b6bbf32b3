use super::*;
use std::time::{Duration, Instant};

#[test]
fn only_names_phase4_makes_parse() {
    for good in [
        "rec-2026-11-30T16-24-48.123Z.wav",
        "replay-2026-01-02T03-04-05.006Z.wav",
        "rec-2026-11-30T16-24-48.123Z-2.wav",
        "rec-2026-11-30T16-24-48.123Z-999.wav",
    ] {
        assert!(RecordingName::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "../rec-2026-11-30T16-24-48.123Z.wav",
        "rec-2026-11-30T16-24-48.123Z.wav/..",
        "rec-2026-11-30T16-24-48.123Z.WAV",
        "rec-2026-11-30T16-24-48.123Z-.wav",
        "rec-2026-11-30T16-24-48.123Z-1000.wav",
        "rec-2026-11-30T16:24:48.123Z.wav",
        "rec-2026-11-30T16-24-48.123Z.wav\0",
        "rec-2026-11-30T16-24-48.12Z.wav",
        "state.toml",
        "control-token",
        "rec-２026-11-30T16-24-48.123Z.wav",
        "recordings/rec-2026-11-30T16-24-48.123Z.wav",
    ] {
        assert!(RecordingName::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn names_carry_the_capture_time_in_utc_and_never_collide() {
    // 2021-01-01T00:00:00.250Z
    let ns = 1_609_459_200_250_000_000i128;
    let n = RecordingName::for_capture(Kind::Replay, ns, |_| false);
    assert_eq!(n.as_str(), "replay-2021-01-01T00-00-00.250Z.wav");
    assert_eq!(n.kind(), Kind::Replay);
    let taken = [
        "rec-2021-01-01T00-00-00.250Z.wav",
        "rec-2021-01-01T00-00-00.250Z-2.wav",
    ];
    let n = RecordingName::for_capture(Kind::Recording, ns, |s| taken.contains(&s));
    assert_eq!(n.as_str(), "rec-2021-01-01T00-00-00.250Z-3.wav");
    assert!(RecordingName::parse(n.as_str()).is_ok());
}

fn wav_header(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut v = b"RIFF\0\0\0\0WAVE".to_vec();
    for (id, body) in chunks {
        v.extend_from_slice(*id);
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
    }
    v
}

fn fmt_16bit_mono_48k() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&1u16.to_le_bytes()); // PCM
    f.extend_from_slice(&1u16.to_le_bytes()); // channels
    f.extend_from_slice(&48_000u32.to_le_bytes());
    f.extend_from_slice(&96_000u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes()); // block align
    f.extend_from_slice(&16u16.to_le_bytes());
    f
}

#[test]
fn headers_are_read_without_reading_what_they_skip() {
    let d = tempfile::tempdir().unwrap();
    let fmt = fmt_16bit_mono_48k();
    // 0.5 s of 16-bit mono at 48 kHz, after an odd-sized chunk (padded).
    let mut plain = wav_header(&[(b"fmt ", &fmt), (b"LIST", b"abc")]);
    plain.push(0);
    plain.extend_from_slice(b"data");
    plain.extend_from_slice(&48_000u32.to_le_bytes());
    plain.extend_from_slice(&vec![0u8; 48_000]);
    let a = d.path().join("rec-2026-11-30T16-24-48.123Z.wav");
    std::fs::write(&a, &plain).unwrap();
    assert_eq!(header_info(&a), (0.5, 48_000, 16));
    // A 4 GiB chunk before fmt (sparse: no space used) is seeked over;
    // the header past it is not there, so it reads as nothing.
    let b = d.path().join("rec-2026-11-30T16-24-49.123Z.wav");
    let mut crafted = b"RIFF\0\0\0\0WAVEjunk".to_vec();
    crafted.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    let f = std::fs::File::create(&b).unwrap();
    std::io::Write::write_all(&mut &f, &crafted).unwrap();
    f.set_len(crafted.len() as u64 + 0xffff_fff0).unwrap();
    let t = Instant::now();
    assert_eq!(header_info(&b), (0.0, 0, 0));
    // Reading 4 GiB takes seconds; seeking, microseconds.
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    // Not a WAV, or no fmt before data: nothing.
    let c = d.path().join("rec-2026-11-30T16-24-50.123Z.wav");
    std::fs::write(&c, wav_header(&[(b"data", &[0u8; 8])])).unwrap();
    assert_eq!(header_info(&c), (0.0, 0, 0));
    std::fs::write(&c, b"RIFX").unwrap();
    assert_eq!(header_info(&c), (0.0, 0, 0));
}

#[test]
fn listing_is_newest_first_by_capture_time_whatever_the_kind() {
    let d = tempfile::tempdir().unwrap();
    let names = [
        "replay-2020-01-01T00-00-00.000Z.wav",
        "rec-2026-11-30T16-24-48.123Z.wav",
        "rec-2026-11-30T16-24-48.123Z-2.wav",
        "rec-2026-11-30T16-24-48.123Z-10.wav",
        "replay-2026-11-30T16-24-49.000Z.wav",
        "rec-2024-05-05T05-05-05.005Z.wav",
    ];
    for n in names {
        std::fs::write(d.path().join(n), b"x").unwrap();
    }
    let got: Vec<String> = list(d.path())
        .items
        .iter()
        .map(|i| i.name.as_str().to_string())
        .collect();
    assert_eq!(
        got,
        [
            "replay-2026-11-30T16-24-49.000Z.wav",
            "rec-2026-11-30T16-24-48.123Z-10.wav",
            "rec-2026-11-30T16-24-48.123Z-2.wav",
            "rec-2026-11-30T16-24-48.123Z.wav",
            "rec-2024-05-05T05-05-05.005Z.wav",
            "replay-2020-01-01T00-00-00.000Z.wav",
        ]
    );
}

#[test]
fn a_folder_too_full_to_count_is_truncated_and_refuses_the_quota() {
    let d = tempfile::tempdir().unwrap();
    // Other files first would push phase4's own out of a capped count.
    for i in 0..=MAX_ENTRIES {
        std::fs::File::create(d.path().join(format!("j{i}"))).unwrap();
    }
    std::fs::write(d.path().join("rec-2026-11-30T16-24-48.123Z.wav"), b"x").unwrap();
    let l = list(d.path());
    assert!(l.truncated, "an incomplete scan must say so");
    let e = usage(d.path()).unwrap_err();
    assert!(e.contains("more than") && e.contains("max-total-mb"), "{e}");
    std::fs::remove_file(d.path().join("j0")).unwrap();
    std::fs::remove_file(d.path().join("j1")).unwrap();
    assert_eq!(usage(d.path()), Ok(1));
    assert!(!list(d.path()).truncated);
}

#[test]
fn listing_and_finding_skip_what_phase4_did_not_write() {
    let d = tempfile::tempdir().unwrap();
    let good = "rec-2026-11-30T16-24-48.123Z.wav";
    std::fs::write(d.path().join(good), b"RIFF").unwrap();
    std::fs::write(d.path().join("secret.txt"), b"x").unwrap();
    std::fs::create_dir(d.path().join("replay-2026-11-30T16-24-48.123Z.wav")).unwrap();
    std::os::unix::fs::symlink(
        "/etc/passwd",
        d.path().join("rec-2026-11-30T16-24-49.123Z.wav"),
    )
    .unwrap();
    let l = list(d.path());
    assert_eq!(l.items.len(), 1);
    assert_eq!(l.items[0].name.as_str(), good);
    assert_eq!(l.total_bytes, 4);
    assert!(find(d.path(), good).is_ok());
    for bad in [
        "rec-2026-11-30T16-24-49.123Z.wav",
        "replay-2026-11-30T16-24-48.123Z.wav",
        "secret.txt",
        "../secret.txt",
    ] {
        assert!(find(d.path(), bad).is_err(), "{bad}");
        assert!(open(d.path(), bad).is_err(), "{bad}");
    }
}
