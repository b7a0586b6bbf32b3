//! One WAV file being written by `p4-record` (a recording or a saved
//! replay buffer): created next to nothing else (`O_NOFOLLOW`, never over
//! an existing file), named with the capture time of its first sample, its
//! header brought up to date every [`CHECKPOINT`] so a power cut leaves a
//! readable file.

use super::files::{self, Kind, RecordingName};
use super::tape::{SampleKind, Segment};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
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
    /// The file's name.
    pub(super) name: RecordingName,
    kind: SampleKind,
    /// Its sample rate.
    pub(super) rate: u32,
    /// Frames written.
    pub(super) frames: u64,
    /// Bytes in the file: its header and the samples written (what the
    /// quota and the listing count).
    pub(super) bytes: u64,
    last_flush: Instant,
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
            Ok((wav, probe.metadata()?.len()))
        });
        let (wav, header) = header.map_err(|e| {
            let _ = std::fs::remove_file(dir.join(name.as_str()));
            format!("cannot write {name}: {e}")
        })?;
        Ok(Writer {
            wav,
            name,
            kind: seg.kind,
            rate: seg.rate,
            frames: 0,
            bytes: header,
            last_flush: Instant::now(),
        })
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
        }
        Ok(())
    }

    pub(super) fn seconds(&self) -> f64 {
        self.frames as f64 / self.rate.max(1) as f64
    }

    pub(super) fn finish(self) -> Result<RecordingName, String> {
        let name = self.name;
        self.wav
            .finalize()
            .map_err(|e| format!("closing {name} failed: {e}"))?;
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the quota counts is what lands on disk: `bytes` is the file's
    /// length at every step, and no header is larger than [`HEADER_MAX`]
    /// (a recording stopped by the quota once left a file 68 bytes over
    /// it: the header was not counted).
    #[test]
    fn bytes_is_the_files_length_header_included() {
        let d = tempfile::tempdir().unwrap();
        for (i, kind) in [SampleKind::S16, SampleKind::S24, SampleKind::F32]
            .into_iter()
            .enumerate()
        {
            let seg = Segment {
                id: i as u64,
                rate: 48_000,
                kind,
                start: 0,
            };
            let mut w = Writer::create(d.path(), Kind::Recording, seg, 0).unwrap();
            let path = d.path().join(w.name.as_str());
            let header = std::fs::metadata(&path).unwrap().len();
            assert_eq!(w.bytes, header, "{kind:?}");
            assert!((44..=HEADER_MAX).contains(&header), "{kind:?}: {header}");
            let mut tape = vec![0u8; 1000 * kind.bytes()];
            for (j, s) in tape.chunks_exact_mut(kind.bytes()).enumerate() {
                kind.encode((j as f32 * 0.01).sin() * 0.5, s);
            }
            w.write(&tape, 1000).unwrap();
            w.write(&tape, 321).unwrap();
            let bytes = w.bytes;
            assert_eq!(bytes, header + 1321 * kind.bytes() as u64, "{kind:?}");
            w.finish().unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes, "{kind:?}");
        }
    }
}
