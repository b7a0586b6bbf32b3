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
mod tests;
