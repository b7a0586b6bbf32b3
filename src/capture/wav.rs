//! WAV files: read whole for `phase4 analyze`, or played at real time as a
//! live source (demos, machines without a sound card).
//!
//! Pacing uses absolute deadlines on CLOCK_MONOTONIC: block n is released at
//! `start + (n+1)·block/sr`, so sleeping never accumulates drift.
//!
//! Real-time safety: the file is decoded to mono f32 once, when opened;
//! [`WavSource::read`] only copies from memory and sleeps.

use super::{CaptureError, ReadOutcome, Source};
use crate::stats::DeviceInfo;
use crate::types::Block;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A decoded WAV file.
#[derive(Clone, Debug)]
pub struct WavData {
    /// Mono samples in [-1, 1] (channels mixed, or one picked).
    pub samples: Vec<f32>,
    /// Sample rate.
    pub sample_rate: u32,
    /// Channels in the file.
    pub channels: u16,
    /// Sample format, e.g. "S16_LE".
    pub format: String,
}

/// Read a whole WAV file to mono (`channel < 0`: mix; else that channel).
pub fn read_wav(path: &Path, channel: i32) -> Result<WavData, CaptureError> {
    let err = |reason: String| CaptureError::Wav {
        path: path.display().to_string(),
        reason,
    };
    let reader = hound::WavReader::open(path).map_err(|e| err(describe_hound(e)))?;
    let spec = reader.spec();
    let ch = spec.channels as usize;
    if ch == 0 {
        return Err(err("the file declares 0 channels".into()));
    }
    if channel >= ch as i32 {
        return Err(err(format!(
            "audio.channel = {channel} but the file has {ch} channel(s)"
        )));
    }
    let (interleaved, format): (Vec<f32>, String) = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => (
            reader
                .into_samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(|e| err(describe_hound(e)))?,
            "FLOAT_LE".into(),
        ),
        (hound::SampleFormat::Int, bits @ (16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            (
                reader
                    .into_samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(|e| err(describe_hound(e)))?,
                format!("S{bits}_LE"),
            )
        }
        (f, bits) => {
            return Err(err(format!(
                "unsupported sample format: {bits}-bit {}; use 16, 24 or 32-bit integer or 32-bit float",
                if f == hound::SampleFormat::Float { "float" } else { "integer" }
            )))
        }
    };
    if interleaved.len() < ch {
        return Err(err("the file has no audio frames".into()));
    }
    let samples = interleaved
        .chunks_exact(ch)
        .map(|f| {
            if channel >= 0 {
                f[channel as usize]
            } else {
                f.iter().sum::<f32>() / ch as f32
            }
        })
        .map(|v| {
            if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        })
        .collect();
    Ok(WavData {
        samples,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        format,
    })
}

fn describe_hound(e: hound::Error) -> String {
    match e {
        hound::Error::FormatError(m) => format!("not a valid WAV file ({m})"),
        hound::Error::IoError(e) => e.to_string(),
        hound::Error::Unsupported => "unsupported WAV variant".into(),
        other => other.to_string(),
    }
}

/// A WAV file played at real time.
pub struct WavSource {
    path: String,
    data: WavData,
    block_frames: usize,
    looping: bool,
    pos: usize,
    start_ns: u64,
    blocks: u64,
    stop: Arc<AtomicBool>,
}

impl WavSource {
    /// Open and decode `path`.
    pub fn open(
        path: &Path,
        channel: i32,
        block_frames: usize,
        looping: bool,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, CaptureError> {
        let data = read_wav(path, channel)?;
        Ok(WavSource {
            path: path.display().to_string(),
            data,
            block_frames,
            looping,
            pos: 0,
            start_ns: 0,
            blocks: 0,
            stop,
        })
    }
}

impl Source for WavSource {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: self.path.clone(),
            format: self.data.format.clone(),
            access: "wav".into(),
            rate: self.data.sample_rate,
            channels: self.data.channels as u32,
            period: self.block_frames as u32,
            buffer: self.block_frames as u32,
            clocked: true,
        }
    }

    fn clocked(&self) -> bool {
        true
    }

    fn read(&mut self, block: &mut Block) -> Result<ReadOutcome, CaptureError> {
        if self.start_ns == 0 {
            self.start_ns = crate::rt::now_ns();
        }
        let n = self.block_frames;
        let total = self.data.samples.len();
        if self.pos >= total {
            if !self.looping {
                return Ok(ReadOutcome::End);
            }
            self.pos = 0;
        }
        let mut filled = 0;
        while filled < n {
            let take = (n - filled).min(total - self.pos);
            block.samples[filled..filled + take]
                .copy_from_slice(&self.data.samples[self.pos..self.pos + take]);
            filled += take;
            self.pos += take;
            if self.pos >= total {
                if !self.looping {
                    break;
                }
                self.pos = 0;
            }
        }
        block.samples[filled..n].iter_mut().for_each(|s| *s = 0.0);
        block.len = n as u32;
        block.sample_rate = self.data.sample_rate;
        self.blocks += 1;
        let deadline = self.start_ns
            + (self.blocks as u128 * n as u128 * 1_000_000_000 / self.data.sample_rate as u128)
                as u64;
        // Sleep in slices of at most 100 ms so a stop request is seen quickly.
        loop {
            let now = crate::rt::now_ns();
            if now >= deadline {
                break;
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(ReadOutcome::Stopped);
            }
            crate::rt::sleep_until_ns(deadline.min(now + 100_000_000));
        }
        block.t_capture_ns = crate::rt::now_ns();
        Ok(ReadOutcome::Block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, bits: u16, float: bool, frames: usize) {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..frames {
            let v = if i % 2 == 0 { 0.5 } else { -0.5 };
            if float {
                w.write_sample(v as f32).unwrap();
                w.write_sample(0.0f32).unwrap();
            } else {
                let s = (v * ((1i64 << (bits - 1)) as f64)) as i32;
                w.write_sample(s).unwrap();
                w.write_sample(0).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn reads_int_and_float_wavs_mixed_to_mono() {
        let dir = tempfile::tempdir().unwrap();
        for (bits, float) in [(16, false), (24, false), (32, false), (32, true)] {
            let p = dir.path().join(format!("t{bits}{float}.wav"));
            write_wav(&p, bits, float, 100);
            let d = read_wav(&p, -1).unwrap();
            assert_eq!(d.samples.len(), 100);
            assert!(
                (d.samples[0] - 0.25).abs() < 1e-4,
                "{bits} {float}: {}",
                d.samples[0]
            );
            let left = read_wav(&p, 0).unwrap();
            assert!((left.samples[1] + 0.5).abs() < 1e-4);
        }
    }

    #[test]
    fn bad_files_get_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let not_wav = dir.path().join("x.wav");
        std::fs::write(&not_wav, b"this is not a wav file at all").unwrap();
        let e = read_wav(&not_wav, -1).unwrap_err().to_string();
        assert!(e.contains("not a valid WAV"), "{e}");

        let empty = dir.path().join("empty.wav");
        write_wav(&empty, 16, false, 0);
        let e = read_wav(&empty, -1).unwrap_err().to_string();
        assert!(e.contains("no audio frames"), "{e}");

        let eight = dir.path().join("eight.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 8,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&eight, spec).unwrap();
        w.write_sample(3i8).unwrap();
        w.finalize().unwrap();
        let e = read_wav(&eight, -1).unwrap_err().to_string();
        assert!(e.contains("8-bit"), "{e}");

        let e = read_wav(&dir.path().join("missing.wav"), -1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.wav"), "{e}");
    }
}
