//! Recording downloads over HTTP: `GET /recordings/<name>?ticket=<code>`.
//!
//! A page cannot put the control token in a plain download link (and the
//! token never goes into a URL, where proxies and histories keep it), so an
//! authorized WebSocket client asks for a download (`download_recording`)
//! and gets a ticket good for one file for a minute
//! ([`crate::monitor::files::Tickets`]); its first use pins it to the
//! address that used it, which may then resume with it for an hour. Without
//! a live ticket for exactly that name, from an address that may use it,
//! the answer is 403, whoever asks (loopback too). The name must
//! parse as a name phase4 makes and be a regular file in the recordings
//! folder (never a symlink), so a request can never name another file.
//!
//! The file is streamed in [`CHUNK`] pieces through a small bounded
//! channel, so a download holds [`CHANNEL_CHUNKS`] chunks of memory, never
//! the file; a connection that is downloading lives up to
//! [`DOWNLOAD_LIFETIME`] instead of the UI's short connection lifetime,
//! and is closed when its client takes nothing for [`STALL_TIMEOUT`]
//! (`transport::serve`). A file still being recorded is sent up to the length it had when the
//! request came.
//!
//! A single byte range (`Range: bytes=…`) is answered with 206 and that part
//! of the file, so a download broken off on a venue's Wi-Fi resumes where it
//! stopped (`curl -C -`, `wget -c`, a browser's resume) instead of starting
//! over. A range past the end is 416; several ranges, or a malformed or
//! unreasonable header, get the whole file (RFC 9110 lets a server ignore
//! Range). Each answer carries a strong `ETag` (the file's inode, length
//! and modification time) and a `Last-Modified`, and a Range sent with an
//! `If-Range` that is neither that tag nor (for a file last written more
//! than a second ago) that date gets the whole file: a recording that grew
//! or was replaced since the first part is never spliced.

use crate::monitor::files::{self, RecordingName, Tickets};
use bytes::Bytes;
use http_body_util::channel::Channel;
use httpdate::HttpDate;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Bytes per read and per body frame.
pub const CHUNK: usize = 64 * 1024;
/// Body frames waiting for a slow client at most.
pub const CHANNEL_CHUNKS: usize = 4;
/// Longest a downloading connection lives (a 2 GiB file at ~2 MB/s).
pub const DOWNLOAD_LIFETIME: Duration = Duration::from_secs(20 * 60);
/// Longest wait for a client to take the next chunk.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the HTTP server needs to serve recordings.
#[derive(Clone, Debug)]
pub struct Access {
    /// `<state.dir>/recordings`.
    pub dir: PathBuf,
    /// Tickets issued by the recorder.
    pub tickets: Arc<Tickets>,
}

/// A download that was admitted: the open file, which part of it to send
/// and its validator.
pub struct Download {
    /// The file's checked name.
    pub name: RecordingName,
    file: std::fs::File,
    /// The file's length when the request came.
    pub total: u64,
    /// What to send.
    pub part: Part,
    /// Strong validator (quoted).
    pub etag: String,
    /// The file's modification time (an HTTP date: whole seconds).
    pub last_modified: Option<HttpDate>,
}

/// Which part of the file a request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// All of it (200).
    Whole,
    /// Bytes `first..=last` (206).
    Range(u64, u64),
    /// Nothing: the range starts past the end (416).
    Unsatisfiable,
}

impl Download {
    /// Bytes the body carries.
    pub fn body_len(&self) -> u64 {
        match self.part {
            Part::Whole => self.total,
            Part::Range(a, b) => b - a + 1,
            Part::Unsatisfiable => 0,
        }
    }
}

/// What a range's `If-Range` may match: the file's tag, and its
/// `Last-Modified` date when that is strong.
#[derive(Clone, Copy, Debug)]
pub struct Validators<'a> {
    /// The `ETag` sent (quoted).
    pub etag: &'a str,
    /// The `Last-Modified` sent, if the file was last written more than a
    /// second before the request (RFC 9110 §8.8.2.2: a date is a strong
    /// validator only then; two writes within one second share a date).
    pub strong_date: Option<HttpDate>,
}

impl Validators<'_> {
    /// Whether an `If-Range` value names this version of the file. A date
    /// must match exactly (RFC 9110 §13.1.5), compared as a time, so any of
    /// HTTP's three date formats names it.
    fn matches(&self, if_range: &str) -> bool {
        if if_range == self.etag {
            return true;
        }
        self.strong_date
            .is_some_and(|ours| if_range.parse::<HttpDate>().is_ok_and(|d| d == ours))
    }
}

/// The part a `Range` header (with its `If-Range`, if any) asks of a file
/// of `total` bytes with validators `v`.
pub fn part_of(range: Option<&str>, if_range: Option<&str>, total: u64, v: Validators) -> Part {
    use http_range_header::RangeUnsatisfiableError as E;
    let Some(range) = range else {
        return Part::Whole;
    };
    // A Range whose If-Range is not this version of the file (an older tag,
    // a date that is not its own or not yet strong) gets the whole.
    if if_range.is_some_and(|i| !v.matches(i)) {
        return Part::Whole;
    }
    let Ok(parsed) = http_range_header::parse_range_header(range) else {
        return Part::Whole;
    };
    match parsed.validate(total) {
        Ok(r) if r.len() == 1 => Part::Range(*r[0].start(), *r[0].end()),
        Err(E::Unsatisfiable) => Part::Unsatisfiable,
        // Several ranges (no multipart answers here), an empty file, a
        // rejected header: the whole file.
        _ => Part::Whole,
    }
}

/// A strong validator for an open file: inode, length and modification
/// time (a recording that grows, or a new file under the same name, has
/// another).
fn etag_of(meta: &std::fs::Metadata, len: u64) -> String {
    format!(
        "\"{:x}-{:x}-{:x}.{:x}\"",
        meta.ino(),
        len,
        meta.mtime(),
        meta.mtime_nsec()
    )
}

/// Seconds since 1970 of 10000-01-01: HTTP dates have four-digit years.
const YEAR_10000: u64 = 253_402_300_800;

/// The file's modification time as an HTTP date, and whether it is a
/// strong validator at `now` (written more than a second before). None for
/// a time an HTTP date cannot carry (before 1970 or after 9999: `touch -d`
/// can set either, and `HttpDate::from` panics on them).
fn last_modified_of(meta: &std::fs::Metadata, now: SystemTime) -> Option<(HttpDate, bool)> {
    let mtime = meta.modified().ok()?;
    // Dated after now (the clock was set back since it was written): the
    // date of this answer instead, never later than its Date (RFC 9110
    // 8.8.2.1), and not a strong validator.
    let mtime = mtime.min(now);
    let since_1970 = mtime.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    if since_1970.as_secs() >= YEAR_10000 {
        return None;
    }
    let strong = now
        .duration_since(mtime)
        .is_ok_and(|age| age >= Duration::from_secs(1));
    Some((HttpDate::from(mtime), strong))
}

/// Why a download was refused: HTTP status and a line of text.
pub type Refusal = (hyper::StatusCode, &'static str);

/// The ticket code in a query string (`ticket=...`), if any.
fn ticket_of(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("ticket="))
        .filter(|t| t.len() <= 64)
}

impl Access {
    /// Admit a request from `peer` for `path` (`/recordings/<name>`) with
    /// `query`, and its `Range` and `If-Range` headers.
    pub fn admit(
        &self,
        peer: IpAddr,
        path: &str,
        query: Option<&str>,
        range: Option<&str>,
        if_range: Option<&str>,
    ) -> Result<Download, Refusal> {
        use hyper::StatusCode;
        let name = path.strip_prefix("/recordings/").unwrap_or("");
        let Ok(name) = RecordingName::parse(name) else {
            return Err((StatusCode::NOT_FOUND, "not found\n"));
        };
        let ok =
            ticket_of(query).is_some_and(|t| self.tickets.admits(t, &name, peer.to_canonical()));
        if !ok {
            return Err((
                StatusCode::FORBIDDEN,
                "a download needs a fresh ticket: send {\"type\":\"download_recording\"} over the WebSocket\n",
            ));
        }
        let not_found = (StatusCode::NOT_FOUND, "not found\n");
        let (name, mut file, total) =
            files::open(&self.dir, name.as_str()).map_err(|_| not_found)?;
        let meta = file.metadata().map_err(|_| not_found)?;
        let etag = etag_of(&meta, total);
        let modified = last_modified_of(&meta, SystemTime::now());
        let validators = Validators {
            etag: &etag,
            strong_date: modified.filter(|m| m.1).map(|m| m.0),
        };
        let part = part_of(range, if_range, total, validators);
        if let Part::Range(first, _) = part {
            file.seek(SeekFrom::Start(first)).map_err(|_| not_found)?;
        }
        Ok(Download {
            name,
            file,
            total,
            part,
            etag,
            last_modified: modified.map(|m| m.0),
        })
    }
}

/// How much of the `left` bytes to read next: at most [`CHUNK`]. (`left as
/// usize` would be `left` modulo 4 GiB on a 32-bit Pi: an empty read at
/// exactly 4 GiB left, taken for a file that shrank.)
fn chunk_len(left: u64) -> usize {
    usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK))
}

/// The open file was deleted (no name left): its space is freed once the
/// last descriptor closes. An `fstat`, cheap beside the 64 KiB read it
/// comes before.
fn deleted(file: &std::fs::File) -> bool {
    file.metadata().is_ok_and(|m| m.nlink() == 0)
}

impl Download {
    /// Start streaming the file on the current `LocalSet`; the body to
    /// answer with.
    pub fn stream(self) -> Channel<Bytes, std::io::Error> {
        let (mut tx, body) = Channel::<Bytes, std::io::Error>::new(CHANNEL_CHUNKS);
        let len = self.body_len();
        let Download { name, mut file, .. } = self;
        tokio::task::spawn_local(async move {
            let mut left = len;
            while left > 0 {
                if deleted(&file) {
                    // Its space is the operator's quota: a download kept
                    // open (for up to DOWNLOAD_LIFETIME) would hold it.
                    log::info!("http: download of {name} stopped with {left} bytes to go: the recording was deleted");
                    tx.abort(std::io::Error::other("the recording was deleted"));
                    return;
                }
                let mut buf = vec![0u8; chunk_len(left)];
                // A local file read of 64 KiB: short enough to do on the
                // server's thread.
                let n = match file.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.truncate(n);
                left -= n as u64;
                // No timeout of its own: a client that takes nothing for
                // STALL_TIMEOUT loses its connection (`serve`'s stall
                // watch, which allows for this process being stopped), and
                // the body with it, which ends this send.
                if tx.send_data(Bytes::from(buf)).await.is_err() {
                    log::debug!("http: download of {name} abandoned by the client");
                    return;
                }
            }
            if left > 0 {
                log::info!("http: download of {name} ended {left} bytes short (file shrank)");
                tx.abort(std::io::Error::other("the file shrank"));
            }
        });
        body
    }
}

#[cfg(test)]
mod tests {
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
}
