use super::*;

#[test]
fn chunks_are_whole_past_4_gib() {
    for left in [1u64 << 32, (1 << 32) + 5, 1 << 40, u64::MAX] {
        assert_eq!(chunk_len(left), CHUNK, "{left}");
    }
    assert_eq!(chunk_len(5), 5);
    assert_eq!(chunk_len(CHUNK as u64 + 1), CHUNK);
}

/// The address the tests download from.
const ME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A recordings folder holding `files`, and the query of a live ticket
/// for the first one.
fn folder(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Access, String) {
    let d = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(d.path().join(name), body).unwrap();
    }
    let access = Access {
        dir: d.path().into(),
        tickets: Arc::new(Tickets::default()),
    };
    let code = access
        .tickets
        .issue(&RecordingName::parse(files[0].0).unwrap())
        .unwrap();
    (d, access, format!("ticket={code}"))
}

#[test]
fn only_a_live_ticket_for_that_name_admits() {
    let a = "rec-2026-11-30T16-24-48.123Z.wav";
    let b = "rec-2026-11-30T16-24-49.123Z.wav";
    let (_d, access, q) = folder(&[(a, b"RIFFaaaa"), (b, b"RIFFbbbb")]);
    let ok = access
        .admit(ME, &format!("/recordings/{a}"), Some(&q), None, None)
        .ok();
    assert_eq!(
        ok.map(|d| (d.total, d.body_len(), d.part)),
        Some((8, 8, Part::Whole))
    );
    let status = |p: &str, q: Option<&str>| {
        access
            .admit(ME, p, q, Some("bytes=0-1"), None)
            .err()
            .map(|e| e.0.as_u16())
    };
    assert_eq!(status(&format!("/recordings/{b}"), Some(&q)), Some(403));
    assert_eq!(status(&format!("/recordings/{a}"), None), Some(403));
    assert_eq!(
        status(&format!("/recordings/{a}"), Some("ticket=00")),
        Some(403)
    );
    assert_eq!(status("/recordings/../state.toml", Some(&q)), Some(404));
    assert_eq!(status("/recordings/", Some(&q)), Some(404));
}

#[test]
fn a_single_range_is_a_part_and_anything_else_the_whole_file() {
    let tag = "\"1-64-2.3\"";
    let v = Validators {
        etag: tag,
        strong_date: None,
    };
    let part = |r: &str| part_of(Some(r), None, 100, v);
    assert_eq!(part_of(None, None, 100, v), Part::Whole);
    assert_eq!(part("bytes=0-9"), Part::Range(0, 9));
    assert_eq!(part("bytes=90-"), Part::Range(90, 99));
    assert_eq!(part("bytes=-10"), Part::Range(90, 99));
    // Past the end is clipped; starting past it is 416.
    assert_eq!(part("bytes=95-500"), Part::Range(95, 99));
    assert_eq!(part("bytes=100-"), Part::Unsatisfiable);
    assert_eq!(part("bytes=18446744073709551615-"), Part::Unsatisfiable);
    // Malformed, another unit, several ranges, absurd sizes: the whole.
    for whole in [
        "bytes=9-0",
        "bytes=abc",
        "items=0-9",
        "bytes=0-9,20-29",
        "bytes=",
        "bytes=-",
        "bytes=0-99999999999999999999999999999999999999",
        "",
    ] {
        assert_eq!(part(whole), Part::Whole, "{whole:?}");
    }
    let many = format!("bytes={}", vec!["1-2"; 5000].join(","));
    assert_eq!(part(&many), Part::Whole);
    // If-Range: only this file's tag keeps the range.
    assert_eq!(
        part_of(Some("bytes=5-"), Some(tag), 100, v),
        Part::Range(5, 99)
    );
    for other in [
        "\"1-64-2.4\"",
        "W/\"1-64-2.3\"",
        "Sat, 05 Dec 2026 10:00:00 GMT",
        "",
    ] {
        assert_eq!(part_of(Some("bytes=5-"), Some(other), 100, v), Part::Whole);
    }
    // An empty file has no part to give.
    assert!(!matches!(
        part_of(Some("bytes=0-"), None, 0, v),
        Part::Range(..)
    ));
}

#[test]
fn if_range_keeps_the_range_on_its_own_strong_date_only() {
    let date = "Sat, 05 Dec 2026 10:00:00 GMT";
    let v = Validators {
        etag: "\"1-64-2.3\"",
        strong_date: date.parse().ok(),
    };
    assert!(v.strong_date.is_some());
    let with = |i: &str| part_of(Some("bytes=5-"), Some(i), 100, v);
    assert_eq!(with(date), Part::Range(5, 99));
    // The same instant in HTTP's two obsolete formats.
    assert_eq!(with("Saturday, 05-Dec-26 10:00:00 GMT"), Part::Range(5, 99));
    assert_eq!(with("Sat Dec  5 10:00:00 2026"), Part::Range(5, 99));
    for other in [
        "Sat, 05 Dec 2026 10:00:01 GMT",
        "Sat, 05 Dec 2026 10:00:00 GMT junk",
        "not a date",
        "",
    ] {
        assert_eq!(with(other), Part::Whole, "{other:?}");
    }
    // A date that is not yet strong (the file was written within the
    // last second) keeps nothing, not even its own value.
    let weak = Validators {
        strong_date: None,
        ..v
    };
    assert_eq!(
        part_of(Some("bytes=5-"), Some(date), 100, weak),
        Part::Whole
    );
}

#[test]
fn a_file_written_just_now_has_a_weak_date() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f");
    std::fs::write(&p, b"x").unwrap();
    let meta = std::fs::metadata(&p).unwrap();
    let mtime = meta.modified().unwrap();
    let (date, strong) = last_modified_of(&meta, mtime).unwrap();
    assert!(!strong);
    // Whole seconds, as the header carries it.
    assert_eq!(date.to_string().parse::<HttpDate>().ok(), Some(date));
    let later = mtime + Duration::from_secs(2);
    assert_eq!(last_modified_of(&meta, later), Some((date, true)));
}

#[test]
fn a_file_dated_after_now_is_last_modified_now_and_weak() {
    let (d, _, _) = folder(&[("rec-2026-11-30T16-24-48.123Z.wav", b"RIFFaaaa")]);
    let meta = std::fs::metadata(d.path().join("rec-2026-11-30T16-24-48.123Z.wav")).unwrap();
    // The clock set back an hour since the file was written.
    let now = meta.modified().unwrap() - Duration::from_secs(3600);
    let (date, strong) = last_modified_of(&meta, now).unwrap();
    assert_eq!(date, HttpDate::from(now));
    assert!(!strong);
}

#[test]
fn a_file_dated_outside_what_http_dates_carry_is_served_without_one() {
    let a = "rec-2026-11-30T16-24-48.123Z.wav";
    let (d, access, q) = folder(&[(a, b"RIFFaaaa")]);
    let path = format!("/recordings/{a}");
    let epoch = SystemTime::UNIX_EPOCH;
    // Before 1970 is the case every file system keeps.
    for mtime in [
        epoch - Duration::from_secs(86_400),
        epoch + Duration::from_secs(YEAR_10000),
        epoch + Duration::from_secs(YEAR_10000 - 1),
        epoch,
    ] {
        let f = std::fs::File::options()
            .write(true)
            .open(d.path().join(a))
            .unwrap();
        f.set_modified(mtime).unwrap();
        let dl = access
            .admit(ME, &path, Some(&q), Some("bytes=4-"), None)
            .ok()
            .unwrap();
        assert_eq!(dl.part, Part::Range(4, 7));
        // What the file system kept (ext4 clamps to 2446; btrfs keeps
        // year 10000).
        let kept = f.metadata().unwrap().modified().unwrap();
        let in_range = kept >= epoch && kept < epoch + Duration::from_secs(YEAR_10000);
        assert_eq!(
            dl.last_modified.is_some(),
            in_range,
            "{mtime:?} kept as {kept:?}"
        );
    }
}

#[test]
fn a_used_ticket_is_its_first_address_s_alone() {
    let a = "rec-2026-11-30T16-24-48.123Z.wav";
    let (_d, access, q) = folder(&[(a, b"RIFFaaaa")]);
    let path = format!("/recordings/{a}");
    let code = |peer: &str| {
        let peer: IpAddr = peer.parse().unwrap();
        match access.admit(peer, &path, Some(&q), Some("bytes=4-"), None) {
            Ok(d) => d.body_len() as u16 * 1000 + 206,
            Err(e) => e.0.as_u16(),
        }
    };
    assert_eq!(code("2001:db8:1:2::10"), 4206);
    assert_eq!(code("2001:db8:1:2::10"), 4206, "a resume");
    // Another address in the same /64: on a venue's Wi-Fi, that is
    // every other machine on the LAN.
    assert_eq!(code("2001:db8:1:2:abcd::99"), 403);
    assert_eq!(code("2001:db8:1:3::10"), 403);
    assert_eq!(code("192.168.1.20"), 403);
    let (_d, access, q) = folder(&[(a, b"RIFFaaaa")]);
    let v4 = |peer: &str| {
        access
            .admit(peer.parse().unwrap(), &path, Some(&q), None, None)
            .is_ok()
    };
    assert!(v4("192.168.1.20"));
    // The same address through a dual-stack socket.
    assert!(v4("::ffff:192.168.1.20"));
    assert!(!v4("192.168.1.21"));
}

#[test]
fn a_download_ends_when_its_recording_is_deleted() {
    use http_body_util::BodyExt;
    let a = "rec-2026-11-30T16-24-48.123Z.wav";
    let body = vec![7u8; 12 * CHUNK];
    let (d, access, q) = folder(&[(a, &body)]);
    let dl = access
        .admit(ME, &format!("/recordings/{a}"), Some(&q), None, None)
        .ok()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let (got, ended) = local.block_on(&rt, async {
        let mut stream = dl.stream();
        let mut got = 0;
        // The first chunk, then the file is deleted under the download.
        if let Some(Ok(f)) = stream.frame().await {
            got += f.into_data().map_or(0, |b| b.len());
        }
        std::fs::remove_file(d.path().join(a)).unwrap();
        loop {
            match stream.frame().await {
                Some(Ok(f)) => got += f.into_data().map_or(0, |b| b.len()),
                Some(Err(e)) => break (got, Some(e.to_string())),
                None => break (got, None),
            }
        }
    });
    // What was already in the channel (CHANNEL_CHUNKS) still arrives;
    // then the body ends with an error, well short of the file.
    assert!(got <= (2 + CHANNEL_CHUNKS) * CHUNK, "{got}");
    assert_eq!(ended.as_deref(), Some("the recording was deleted"));
    // A file that stays is sent whole.
    let (_d, access, q) = folder(&[(a, &body)]);
    let dl = access
        .admit(ME, &format!("/recordings/{a}"), Some(&q), None, None)
        .ok()
        .unwrap();
    let whole = local.block_on(&rt, async {
        dl.stream().collect().await.map(|c| c.to_bytes().len())
    });
    assert_eq!(whole.ok(), Some(body.len()));
}

#[test]
fn a_range_starts_the_stream_at_its_first_byte() {
    let a = "rec-2026-11-30T16-24-48.123Z.wav";
    let body: Vec<u8> = (0..=255u8).collect();
    let (d, access, q) = folder(&[(a, &body)]);
    let path = format!("/recordings/{a}");
    let dl = access
        .admit(ME, &path, Some(&q), Some("bytes=200-209"), None)
        .ok()
        .unwrap();
    assert_eq!(
        (dl.part, dl.body_len(), dl.total),
        (Part::Range(200, 209), 10, 256)
    );
    let mut file = dl.file;
    let mut got = Vec::new();
    file.read_to_end(&mut got).unwrap();
    assert_eq!(&got[..10], &body[200..210]);
    // The tag changes when the file grows (a recording in progress).
    let again = access.admit(ME, &path, Some(&q), None, None).ok().unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.path().join(a))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"more"))
        .unwrap();
    let grown = access
        .admit(ME, &path, Some(&q), Some("bytes=0-"), Some(&again.etag))
        .ok()
        .unwrap();
    assert_ne!(grown.etag, again.etag);
    assert_eq!((grown.part, grown.total), (Part::Whole, 260));
}
