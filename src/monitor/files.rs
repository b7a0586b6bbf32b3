//! The recordings folder (`<state.dir>/recordings`): names, listing,
//! deleting and space (the download tickets are in [`super::tickets`]).
//!
//! A name from the network is never a path: it must parse as a name phase4
//! makes ([`RecordingName`]) and be in a fresh listing of the folder, which
//! holds only regular files (no symlinks, no subfolders). Names carry the
//! capture time of the file's first sample, in UTC:
//! `rec-2026-11-30T16-24-48.123Z.wav`, `replay-…wav`.

pub use super::tickets::{Tickets, MAX_TICKETS, TICKET_LIFETIME};
use std::path::{Path, PathBuf};

/// Folder inside the state directory.
pub const RECORDINGS_DIR: &str = "recordings";
/// Most files listed.
pub const MAX_LISTED: usize = 1000;

/// What a recording is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Started and stopped by hand.
    Recording,
    /// The replay buffer, saved.
    Replay,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Recording => "rec",
            Kind::Replay => "replay",
        }
    }

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Recording => "recording",
            Kind::Replay => "replay",
        }
    }
}

/// A file name phase4 makes. Only [`RecordingName::parse`] and
/// [`RecordingName::for_capture`] create one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordingName(String);

impl RecordingName {
    /// Check the syntax of `s`: `(rec|replay)-YYYY-MM-DDTHH-MM-SS.mmmZ[-N].wav`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            let shown: String = s.chars().take(80).collect();
            format!("{shown:?} is not a recording name")
        };
        let rest = s
            .strip_prefix("rec-")
            .or_else(|| s.strip_prefix("replay-"))
            .ok_or_else(bad)?;
        let rest = rest.strip_suffix(".wav").ok_or_else(bad)?;
        let (stamp, suffix) = match rest.get(24..) {
            Some("") => (rest, None),
            Some(tail) => (&rest[..24], Some(tail)),
            None => return Err(bad()),
        };
        // 2026-11-30T16-24-48.123Z
        const SHAPE: &[u8; 24] = b"dddd-dd-ddTdd-dd-dd.dddZ";
        let ok = stamp.len() == 24
            && stamp.bytes().zip(SHAPE.iter()).all(|(c, s)| match s {
                b'd' => c.is_ascii_digit(),
                _ => c == *s,
            });
        let suffix_ok = match suffix {
            None => true,
            Some(t) => {
                t.len() >= 2
                    && t.len() <= 4
                    && t.starts_with('-')
                    && t[1..].bytes().all(|c| c.is_ascii_digit())
            }
        };
        if ok && suffix_ok {
            Ok(RecordingName(s.to_string()))
        } else {
            Err(bad())
        }
    }

    /// A fresh name for a file whose first sample was captured at
    /// `wall_ns` (ns since the Unix epoch), not among the names `taken`.
    pub fn for_capture(kind: Kind, wall_ns: i128, taken: impl Fn(&str) -> bool) -> Self {
        let base = format!("{}-{}", kind.prefix(), utc_stamp(wall_ns));
        let mut name = format!("{base}.wav");
        let mut n = 2;
        while taken(&name) && n < 1000 {
            name = format!("{base}-{n}.wav");
            n += 1;
        }
        RecordingName(name)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Orders names by capture time, then by the `-N` of a clash: the
    /// stamp (fixed width, so text order is time order) and N.
    pub fn time_key(&self) -> (&str, u16) {
        let rest = self
            .0
            .strip_prefix("rec-")
            .or_else(|| self.0.strip_prefix("replay-"))
            .unwrap_or(&self.0);
        let rest = rest.strip_suffix(".wav").unwrap_or(rest);
        let stamp = rest.get(..24).unwrap_or(rest);
        let n = rest
            .get(25..)
            .and_then(|t| t.parse::<u16>().ok())
            .unwrap_or(1);
        (stamp, n)
    }

    /// What it is.
    pub fn kind(&self) -> Kind {
        if self.0.starts_with("replay-") {
            Kind::Replay
        } else {
            Kind::Recording
        }
    }
}

impl std::fmt::Display for RecordingName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `2026-11-30T16-24-48.123Z` for `wall_ns` since the epoch (UTC; colons
/// would not do in file names on every system a file is copied to).
pub fn utc_stamp(wall_ns: i128) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(wall_ns)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Wall-clock time (ns since the epoch) of a CLOCK_MONOTONIC time stamp.
pub fn wall_clock_ns(mono_ns: u64) -> i128 {
    let now_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let now_mono = crate::rt::now_ns() as i128;
    now_wall - (now_mono - mono_ns as i128)
}

/// One file in a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordingItem {
    /// Its name.
    pub name: RecordingName,
    /// Size on disk.
    pub bytes: u64,
    /// Length, from its header (0 when the header cannot be read).
    pub seconds: f64,
    /// Sample rate.
    pub sample_rate: u32,
    /// Bits per sample.
    pub bits: u16,
}

/// The folder's content.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    /// Newest first.
    pub items: Vec<RecordingItem>,
    /// Bytes of every recording (listed or not).
    pub total_bytes: u64,
    /// More files than [`MAX_LISTED`].
    pub truncated: bool,
}

/// Most directory entries read in one pass over the folder, phase4's or
/// not: a folder stuffed with other files costs a bounded scan.
pub const MAX_ENTRIES: usize = 100 * MAX_LISTED;

/// The recordings' names and sizes, and their total.
struct Scan {
    found: Vec<(RecordingName, u64)>,
    total_bytes: u64,
    /// Every entry was read (not more than [`MAX_ENTRIES`]).
    complete: bool,
}

fn scan(dir: &Path) -> Scan {
    let mut out = Scan {
        found: Vec::new(),
        total_bytes: 0,
        complete: true,
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for (i, e) in rd.flatten().enumerate() {
        if i >= MAX_ENTRIES {
            out.complete = false;
            break;
        }
        let Some(name) = e
            .file_name()
            .to_str()
            .and_then(|s| RecordingName::parse(s).ok())
        else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        out.total_bytes += meta.len();
        out.found.push((name, meta.len()));
    }
    out
}

/// The bytes every recording in `dir` takes, for the quota. An error when
/// the folder holds more than [`MAX_ENTRIES`] entries: the sum could not
/// be counted, and a quota checked against part of it would not hold.
pub fn usage(dir: &Path) -> Result<u64, String> {
    let s = scan(dir);
    if s.complete {
        Ok(s.total_bytes)
    } else {
        Err(format!(
            "the recordings folder {} holds more than {MAX_ENTRIES} entries, so its size cannot be counted against record.max-total-mb; move files out of it",
            dir.display()
        ))
    }
}

/// List the recordings in `dir` (regular files with phase4's names only),
/// newest first by the capture time in their names (a `replay-` and a
/// `rec-` name sort by time, not by their prefixes).
pub fn list(dir: &Path) -> Listing {
    let Scan {
        mut found,
        total_bytes,
        complete,
    } = scan(dir);
    found.sort_by(|a, b| b.0.time_key().cmp(&a.0.time_key()));
    let mut out = Listing {
        items: Vec::new(),
        total_bytes,
        truncated: found.len() > MAX_LISTED || !complete,
    };
    for (name, bytes) in found.into_iter().take(MAX_LISTED) {
        let (seconds, sample_rate, bits) = header_info(&dir.join(name.as_str()));
        out.items.push(RecordingItem {
            name,
            bytes,
            seconds,
            sample_rate,
            bits,
        });
    }
    out
}

/// Most RIFF chunks looked at before giving up on a header.
const MAX_CHUNKS: usize = 16;

/// Length, rate and bits from a WAV header, or zeros. Reads at most
/// [`MAX_CHUNKS`] chunk headers and the `fmt ` chunk's first 16 bytes, and
/// seeks over every other chunk: a general WAV reader (hound) reads through
/// chunks it skips, and a crafted file with a 4 GiB chunk before `fmt `
/// (sparse: no space on disk) kept a core busy for seconds per listing.
fn header_info(path: &Path) -> (f64, u32, u16) {
    use std::io::{Read, Seek, SeekFrom};
    // Listed as a regular file a moment ago; swapped for a FIFO since, it
    // must not hang the recorder.
    let Ok(mut f) = crate::service::safe_fs::open_regular(path) else {
        return (0.0, 0, 0);
    };
    let mut riff = [0u8; 12];
    if f.read_exact(&mut riff).is_err() || &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return (0.0, 0, 0);
    }
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut fmt: Option<(u32, u16, u16)> = None; // rate, block align, bits
    for _ in 0..MAX_CHUNKS {
        let mut head = [0u8; 8];
        if f.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32_at(&head, 4) as u64;
        match &head[0..4] {
            b"fmt " if len >= 16 => {
                let mut b = [0u8; 16];
                if f.read_exact(&mut b).is_err() {
                    break;
                }
                fmt = Some((u32_at(&b, 4), u16_at(&b, 12), u16_at(&b, 14)));
                if f.seek(SeekFrom::Current((len - 16 + (len & 1)) as i64))
                    .is_err()
                {
                    break;
                }
            }
            b"data" => {
                let Some((rate, align, bits)) = fmt else {
                    break;
                };
                if rate == 0 || align == 0 {
                    break;
                }
                let secs = (len / align as u64) as f64 / rate as f64;
                return (secs, rate, bits);
            }
            _ => {
                if f.seek(SeekFrom::Current((len + (len & 1)) as i64)).is_err() {
                    break;
                }
            }
        }
    }
    (0.0, 0, 0)
}

/// The file `name` (from the network) names, if phase4 listed it: its
/// checked name, path and size.
pub fn find(dir: &Path, name: &str) -> Result<(RecordingName, PathBuf, u64), String> {
    let wanted = RecordingName::parse(name)?;
    let path = dir.join(wanted.as_str());
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => Ok((wanted, path, m.len())),
        _ => Err(format!("no recording named {wanted}")),
    }
}

/// Open a listed recording for reading: never through a symlink, and
/// never waiting on a FIFO swapped in after [`find`] looked (the type is
/// checked again on the open descriptor).
pub fn open(dir: &Path, name: &str) -> Result<(RecordingName, std::fs::File, u64), String> {
    let (name, path, _) = find(dir, name)?;
    let f = crate::service::safe_fs::open_regular(&path)
        .map_err(|e| format!("cannot open {name}: {e}"))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    Ok((name, f, len))
}

/// Free bytes for an unprivileged writer on the file system of `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::ffi::OsStrExt;
        // statvfs64: a 32-bit Pi's statvfs has 32-bit block counts and
        // fails (EOVERFLOW) on a file system of 16 TiB or more (a big USB
        // disk, a network mount reporting a petabyte).
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: an all-zero statvfs64 is a valid value of that plain C
        // struct.
        let mut s: libc::statvfs64 = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is NUL-terminated and outlives the call; `s` is a
        // valid, writable statvfs64.
        if unsafe { libc::statvfs64(path.as_ptr(), &mut s) } != 0 {
            return None;
        }
        Some((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let s = nix::sys::statvfs::statvfs(dir).ok()?;
        Some((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
    }
}

#[cfg(test)]
mod tests;
