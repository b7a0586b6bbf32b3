//! One WAV file being written by `p4-record` (a recording or a saved
//! replay buffer): created next to nothing else (`O_NOFOLLOW`, never over
//! an existing file), named with the capture time of its first sample, its
//! header brought up to date every [`CHECKPOINT`] so a power cut leaves a
//! readable file.

use super::files::{self, Kind, RecordingName};
use super::tape::{SampleKind, Segment};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the header is rewritten.
pub const CHECKPOINT: Duration = Duration::from_secs(1);

/// The largest header a new file gets: hound writes 44 bytes for 16-bit
/// PCM and 68 (`WAVE_FORMAT_EXTENSIBLE`) for 24-bit and float. The quota
/// counts it for a file that does not exist yet; an open file counts its
/// own, measured ([`Writer::bytes`]).
pub const HEADER_MAX: u64 = 68;

/// An open WAV file being written.
pub(super) struct Writer {
    wav: hound::WavWriter<BufWriter<File>>,
    /// The file's name, and its path.
    pub(super) name: RecordingName,
    path: PathBuf,
    /// The header's length.
    header: u64,
    kind: SampleKind,
    /// Its sample rate.
    pub(super) rate: u32,
    /// Frames written.
    pub(super) frames: u64,
    /// Bytes in the file: its header and the samples written (what the
    /// quota and the listing count).
    pub(super) bytes: u64,
    last_flush: Instant,
    /// The file itself, to ask at each checkpoint whether it still has a
    /// name (tester ah AH3: deleted while it recorded, by `rm` or another
    /// phase4, it went on into the unlinked inode and said "done").
    probe: File,
}

impl Writer {
    pub(super) fn create(
        dir: &Path,
        kind: Kind,
        seg: Segment,
        first_capture_ns: u64,
    ) -> Result<Writer, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let wall = files::wall_clock_ns(first_capture_ns);
        let name = RecordingName::for_capture(kind, wall, |n| dir.join(n).exists());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(name.as_str()))
            .map_err(|e| format!("cannot create {name}: {e}"))?;
        crate::service::safe_fs::adopt(&file, dir);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: seg.rate,
            bits_per_sample: seg.kind.bits(),
            sample_format: match seg.kind {
                SampleKind::F32 => hound::SampleFormat::Float,
                _ => hound::SampleFormat::Int,
            },
        };
        // The header on disk now, measured through our own descriptor: the
        // quota counts whole files. A file that cannot take even its header
        // (a full disk) is removed rather than listed empty.
        let header = file.try_clone().and_then(|probe| {
            let mut wav = hound::WavWriter::new(BufWriter::with_capacity(64 * 1024, file), spec)
                .map_err(std::io::Error::other)?;
            wav.flush().map_err(std::io::Error::other)?;
            let len = probe.metadata()?.len();
            Ok((wav, len, probe))
        });
        let (wav, header, probe) = header.map_err(|e| {
            let _ = std::fs::remove_file(dir.join(name.as_str()));
            format!("cannot write {name}: {e}")
        })?;
        Ok(Writer {
            wav,
            path: dir.join(name.as_str()),
            header,
            name,
            kind: seg.kind,
            rate: seg.rate,
            frames: 0,
            bytes: header,
            last_flush: Instant::now(),
            probe,
        })
    }

    /// An error when the file has no name left: whatever is written from
    /// now on is lost when it is closed.
    fn still_named(&self) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        match self.probe.metadata() {
            Ok(m) if m.nlink() == 0 => Err(format!(
                "{} was deleted while it recorded; what it held is lost",
                self.name
            )),
            _ => Ok(()),
        }
    }

    /// Append `n` frames stored as tape bytes.
    pub(super) fn write(&mut self, bytes: &[u8], n: usize) -> Result<(), String> {
        let bps = self.kind.bytes();
        let err = |e: hound::Error| format!("writing {} failed: {e}", self.name);
        for s in bytes[..n * bps].chunks_exact(bps) {
            let v = self.kind.decode_int(s);
            match self.kind {
                SampleKind::S16 => self.wav.write_sample(v as i16),
                SampleKind::S24 => self.wav.write_sample(v),
                SampleKind::F32 => self.wav.write_sample(f32::from_bits(v as u32)),
            }
            .map_err(err)?;
        }
        self.frames += n as u64;
        self.bytes += (n * bps) as u64;
        if self.last_flush.elapsed() >= CHECKPOINT {
            self.last_flush = Instant::now();
            self.wav.flush().map_err(err)?;
            self.still_named()?;
        }
        Ok(())
    }

    pub(super) fn seconds(&self) -> f64 {
        self.frames as f64 / self.rate.max(1) as f64
    }

    /// Close the file with its header up to date. When that fails (a full
    /// disk: the samples still buffered cannot be written, and hound's
    /// header update flushes them first), the header is made to count the
    /// whole frames that did reach the disk ([`count_what_is_on_disk`]).
    pub(super) fn finish(self) -> Result<RecordingName, String> {
        // Deleted since the last checkpoint: not "done".
        let gone = self.still_named();
        let Writer {
            wav,
            name,
            path,
            header,
            kind,
            ..
        } = self;
        let Err(e) = wav.finalize() else {
            return gone.map(|()| name);
        };
        gone?;
        let kept = count_what_is_on_disk(&path, header, kind.bytes() as u64)
            .map(|frames| format!("its header counts the {frames} frames on disk"))
            .unwrap_or_else(|e| format!("its header could not be brought up to date: {e}"));
        Err(format!("closing {name} failed: {e}; {kept}"))
    }
}

/// Make the header of the WAV at `path` (a header of `header` bytes as
/// hound writes it: RIFF size at byte 4, the data chunk's size in its last
/// four bytes, nothing after the data) count every whole frame of
/// `frame_bytes` in the file, cutting a partly written last frame.
///
/// hound brings the header up to date at each [`CHECKPOINT`]; after a write
/// failed (a full disk) the samples written since are on disk but not
/// counted, and a player stops at the last checkpoint (up to a second
/// early). Both fields are overwritten in place, which needs no free
/// space. Returns the frames now counted.
fn count_what_is_on_disk(path: &Path, header: u64, frame_bytes: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let len = f.metadata()?.len();
    if header < 44 || len < header || frame_bytes == 0 {
        return Err(std::io::Error::other("not a header this writer made"));
    }
    let data = (len - header) / frame_bytes * frame_bytes;
    let riff = u32::try_from(header + data - 8).map_err(std::io::Error::other)?;
    f.set_len(header + data)?;
    f.write_all_at(&riff.to_le_bytes(), 4)?;
    f.write_all_at(&(data as u32).to_le_bytes(), header - 4)?;
    f.sync_data()?;
    Ok(data / frame_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For each sample format: a new recording in `dir` and `frames` frames
    /// of a sine in that format's tape bytes.
    fn every_format(dir: &Path, frames: usize) -> Vec<(SampleKind, Writer, Vec<u8>)> {
        [SampleKind::S16, SampleKind::S24, SampleKind::F32]
            .into_iter()
            .enumerate()
            .map(|(i, kind)| {
                let seg = Segment {
                    id: i as u64,
                    rate: 48_000,
                    kind,
                    start: 0,
                };
                let w = Writer::create(dir, Kind::Recording, seg, 0).unwrap();
                let mut tape = vec![0u8; frames * kind.bytes()];
                for (j, s) in tape.chunks_exact_mut(kind.bytes()).enumerate() {
                    kind.encode((j as f32 * 0.01).sin() * 0.5, s);
                }
                (kind, w, tape)
            })
            .collect()
    }

    /// Samples that reached the disk after the last checkpoint (the state a
    /// full disk leaves) are counted by the header afterwards, and a partly
    /// written last frame is cut, for every sample format.
    #[test]
    fn the_header_is_made_to_count_the_frames_on_disk() {
        let d = tempfile::tempdir().unwrap();
        for (kind, mut w, tape) in every_format(d.path(), 1500) {
            let (path, header) = (w.path.clone(), w.header);
            let bps = kind.bytes();
            w.write(&tape[..1000 * bps], 1000).unwrap();
            w.finish().unwrap();
            // 500 frames more and part of one, not counted by the header.
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut f, &tape[1000 * bps..]).unwrap();
            std::io::Write::write_all(&mut f, &tape[..bps - 1]).unwrap();
            drop(f);
            assert_eq!(hound::WavReader::open(&path).unwrap().duration(), 1000);

            assert_eq!(
                count_what_is_on_disk(&path, header, bps as u64).unwrap(),
                1500
            );
            let r = hound::WavReader::open(&path).unwrap();
            assert_eq!(r.duration(), 1500, "{kind:?}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                header + 1500 * bps as u64
            );
            let raw = std::fs::read(&path).unwrap();
            assert_eq!(&raw[header as usize..], &tape[..], "{kind:?}: the samples");
            let riff = u32::from_le_bytes(raw[4..8].try_into().unwrap()) as usize;
            assert_eq!(riff, raw.len() - 8, "{kind:?}");
        }
        // A file that is not one of ours is left alone.
        let p = d.path().join("short.wav");
        std::fs::write(&p, b"RIFF").unwrap();
        assert!(count_what_is_on_disk(&p, 44, 2).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"RIFF");
    }

    /// What the quota counts is what lands on disk: `bytes` is the file's
    /// length at every step, and no header is larger than [`HEADER_MAX`]
    /// (a recording stopped by the quota once left a file 68 bytes over
    /// it: the header was not counted).
    #[test]
    fn bytes_is_the_files_length_header_included() {
        let d = tempfile::tempdir().unwrap();
        for (kind, mut w, tape) in every_format(d.path(), 1000) {
            let path = d.path().join(w.name.as_str());
            let header = std::fs::metadata(&path).unwrap().len();
            assert_eq!(w.bytes, header, "{kind:?}");
            assert!((44..=HEADER_MAX).contains(&header), "{kind:?}: {header}");
            w.write(&tape, 1000).unwrap();
            w.write(&tape, 321).unwrap();
            let bytes = w.bytes;
            assert_eq!(bytes, header + 1321 * kind.bytes() as u64, "{kind:?}");
            w.finish().unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes, "{kind:?}");
        }
    }

    /// A file deleted while it records stops at the next checkpoint with
    /// an error, and one deleted since the last checkpoint is not closed
    /// as done either: its samples would all be lost without a word.
    #[test]
    fn a_file_deleted_while_it_records_is_an_error_not_done() {
        let d = tempfile::tempdir().unwrap();
        let mut made = every_format(d.path(), 1000).into_iter();
        let (_, mut w, tape) = made.next().unwrap();
        w.write(&tape, 1000).unwrap();
        std::fs::remove_file(d.path().join(w.name.as_str())).unwrap();
        w.last_flush = Instant::now() - CHECKPOINT;
        let e = w.write(&tape, 1000).unwrap_err();
        assert!(e.contains("was deleted while it recorded"), "{e}");

        let (_, mut w, tape) = made.next().unwrap();
        w.write(&tape, 1000).unwrap();
        std::fs::remove_file(d.path().join(w.name.as_str())).unwrap();
        let e = w.finish().unwrap_err();
        assert!(e.contains("was deleted while it recorded"), "{e}");

        // Still named: done.
        let (_, mut w, tape) = made.next().unwrap();
        w.last_flush = Instant::now() - CHECKPOINT;
        w.write(&tape, 1000).unwrap();
        w.finish().unwrap();
    }
}
