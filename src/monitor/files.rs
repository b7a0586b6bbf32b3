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
mod tests {
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
}
