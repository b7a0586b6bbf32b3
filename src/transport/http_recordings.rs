//! Recording downloads over HTTP: `GET /recordings/<name>?ticket=<code>`.
//!
//! A page cannot put the control token in a plain download link (and the
//! token never goes into a URL, where proxies and histories keep it), so an
//! authorized WebSocket client asks for a download (`download_recording`)
//! and gets a ticket good for one file for a minute
//! ([`crate::monitor::files::Tickets`]). Without a live ticket for exactly
//! that name the answer is 403, whoever asks (loopback too). The name must
//! parse as a name phase4 makes and be a regular file in the recordings
//! folder (never a symlink), so a request can never name another file.
//!
//! The file is streamed in [`CHUNK`] pieces through a small bounded
//! channel, so a download holds [`CHANNEL_CHUNKS`] chunks of memory, never
//! the file; a connection that is downloading lives up to
//! [`DOWNLOAD_LIFETIME`] instead of the UI's short connection lifetime. A
//! file still being recorded is sent up to the length it had when the
//! request came.

use crate::monitor::files::{self, RecordingName, Tickets};
use bytes::Bytes;
use http_body_util::channel::Channel;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

/// A download that was admitted: the open file and its length.
pub struct Download {
    /// The file's checked name.
    pub name: RecordingName,
    file: std::fs::File,
    /// Bytes to send.
    pub len: u64,
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
    /// Admit a request for `path` (`/recordings/<name>`) with `query`.
    pub fn admit(&self, path: &str, query: Option<&str>) -> Result<Download, Refusal> {
        use hyper::StatusCode;
        let name = path.strip_prefix("/recordings/").unwrap_or("");
        let Ok(name) = RecordingName::parse(name) else {
            return Err((StatusCode::NOT_FOUND, "not found\n"));
        };
        let ok = ticket_of(query).is_some_and(|t| self.tickets.admits(t, &name));
        if !ok {
            return Err((
                StatusCode::FORBIDDEN,
                "a download needs a fresh ticket: send {\"type\":\"download_recording\"} over the WebSocket\n",
            ));
        }
        match files::open(&self.dir, name.as_str()) {
            Ok((name, file, len)) => Ok(Download { name, file, len }),
            Err(_) => Err((StatusCode::NOT_FOUND, "not found\n")),
        }
    }
}

impl Download {
    /// Start streaming the file on the current `LocalSet`; the body to
    /// answer with.
    pub fn stream(self) -> Channel<Bytes, std::io::Error> {
        let (mut tx, body) = Channel::<Bytes, std::io::Error>::new(CHANNEL_CHUNKS);
        let Download {
            name,
            mut file,
            len,
        } = self;
        tokio::task::spawn_local(async move {
            let mut left = len;
            while left > 0 {
                let mut buf = vec![0u8; CHUNK.min(left as usize)];
                // A local file read of 64 KiB: short enough to do on the
                // server's thread.
                let n = match file.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.truncate(n);
                left -= n as u64;
                let sent = tokio::time::timeout(STALL_TIMEOUT, tx.send_data(Bytes::from(buf)));
                if !matches!(sent.await, Ok(Ok(()))) {
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
    fn only_a_live_ticket_for_that_name_admits() {
        let d = tempfile::tempdir().unwrap();
        let a = "rec-2026-11-30T16-24-48.123Z.wav";
        let b = "rec-2026-11-30T16-24-49.123Z.wav";
        std::fs::write(d.path().join(a), b"RIFFaaaa").unwrap();
        std::fs::write(d.path().join(b), b"RIFFbbbb").unwrap();
        let access = Access {
            dir: d.path().into(),
            tickets: Arc::new(Tickets::default()),
        };
        let code = access
            .tickets
            .issue(&RecordingName::parse(a).unwrap())
            .unwrap();
        let q = format!("ticket={code}");
        let ok = access.admit(&format!("/recordings/{a}"), Some(&q)).ok();
        assert_eq!(ok.map(|d| d.len), Some(8));
        let status = |p: &str, q: Option<&str>| access.admit(p, q).err().map(|e| e.0.as_u16());
        assert_eq!(status(&format!("/recordings/{b}"), Some(&q)), Some(403));
        assert_eq!(status(&format!("/recordings/{a}"), None), Some(403));
        assert_eq!(
            status(&format!("/recordings/{a}"), Some("ticket=00")),
            Some(403)
        );
        assert_eq!(status("/recordings/../state.toml", Some(&q)), Some(404));
        assert_eq!(status("/recordings/", Some(&q)), Some(404));
    }
}
