//! `phase4 analyze`: run the live DSP on a WAV file as fast as possible and
//! write every feature frame and event with its stream time.
//!
//! The file is streamed block by block (a FIFO works too): memory does not
//! grow with its length.
//!
//! The processors are exactly those the live workers run
//! ([`BandsProcessor`], [`SpectrumProcessor`]), fed with the same blocks the
//! capture thread would produce, so offline output is what the live path
//! computes.
//!
//! Lines (JSON Lines; CSV has the same fields as columns):
//! - `{"type":"bands","t",low,mid,high,low_raw,mid_raw,high_raw,rms_dbfs,peak_dbfs,silent}` per block
//! - `{"type":"spectral","t",centroid_hz,flatness,rolloff_hz,flux,bpm,confidence,phase,locked[,bins]}` per hop
//!   (`bins` with `--bins`, which turns the FFT on for the run)
//! - `{"type":"onset","t","band":"low"|"mid"|"high"}` per band onset
//! - `{"type":"onset","t","band":"broadband","strength"}` per broadband onset
//! - `{"type":"beat","t",index,bpm,confidence}` per beat
//! - `{"type":"silence","t",silent}` when the silence state changes
//!
//! `t` is seconds from the start of the file: the block's first frame for
//! bands, the end of the analysis window for spectral frames, and the event
//! time itself for onsets and beats (window end minus the detector's lag).

use crate::capture::wav::{open_stream, Input, WavStream};
use crate::config::Config;
use crate::dsp::bands::BandsProcessor;
use crate::dsp::params::{DspParams, ParamsRx};
use crate::dsp::spectrum::SpectrumProcessor;
use crate::types::{onset_bits, BandsFrame, Block, SpectrumFrame, BAND_NAMES};
use anyhow::Context;
use std::io::Write;
use std::path::Path;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated with a header.
    Csv,
}

/// What an analysis did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// Seconds of audio analysed.
    pub audio_s: f64,
    /// Wall seconds spent (reading and decoding included).
    pub wall_s: f64,
    /// Blocks processed.
    pub blocks: u64,
    /// Broadband onsets found.
    pub onsets: u64,
    /// Beats found.
    pub beats: u64,
}

const CSV_HEADER: &str = "type,t,low,mid,high,low_raw,mid_raw,high_raw,rms_dbfs,peak_dbfs,silent,centroid_hz,flatness,rolloff_hz,flux,bpm,confidence,phase,locked,band,strength,index\n";

/// A small line writer with fast float formatting.
struct Line<'a> {
    buf: &'a mut Vec<u8>,
    format: Format,
    first: bool,
}

impl<'a> Line<'a> {
    fn new(buf: &'a mut Vec<u8>, format: Format, kind: &str) -> Self {
        match format {
            Format::Jsonl => {
                buf.extend_from_slice(b"{\"type\":\"");
                buf.extend_from_slice(kind.as_bytes());
                buf.push(b'"');
            }
            Format::Csv => buf.extend_from_slice(kind.as_bytes()),
        }
        Line {
            buf,
            format,
            first: false,
        }
    }

    fn key(&mut self, k: &str) {
        if self.format == Format::Jsonl {
            self.buf.extend_from_slice(b",\"");
            self.buf.extend_from_slice(k.as_bytes());
            self.buf.extend_from_slice(b"\":");
        } else {
            self.buf.push(b',');
        }
        self.first = false;
    }

    /// A number in its shortest exact form; JSON `null` (CSV: empty) when
    /// not finite.
    fn num<F: ryu::Float>(&mut self, k: &str, v: F, finite: bool) -> &mut Self {
        self.key(k);
        if finite {
            let mut b = ryu::Buffer::new();
            self.buf.extend_from_slice(b.format_finite(v).as_bytes());
        } else if self.format == Format::Jsonl {
            self.buf.extend_from_slice(b"null");
        }
        self
    }

    fn f(&mut self, k: &str, v: f64) -> &mut Self {
        self.num(k, v, v.is_finite())
    }

    fn f32(&mut self, k: &str, v: f32) -> &mut Self {
        self.num(k, v, v.is_finite())
    }

    fn b(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.buf
            .extend_from_slice(if v { b"true" } else { b"false" });
        self
    }

    fn s(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        if self.format == Format::Jsonl {
            self.buf.push(b'"');
            self.buf.extend_from_slice(v.as_bytes());
            self.buf.push(b'"');
        } else {
            self.buf.extend_from_slice(v.as_bytes());
        }
        self
    }

    fn u(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        // Writing into a Vec cannot fail.
        let _ = write!(self.buf, "{v}");
        self
    }

    /// CSV: skip columns.
    fn skip(&mut self, n: usize) -> &mut Self {
        if self.format == Format::Csv {
            for _ in 0..n {
                self.buf.push(b',');
            }
        }
        self
    }

    fn end(&mut self) {
        if self.format == Format::Jsonl {
            self.buf.push(b'}');
        }
        self.buf.push(b'\n');
    }
}

fn write_bands(buf: &mut Vec<u8>, fmt: Format, f: &BandsFrame) {
    let mut l = Line::new(buf, fmt, "bands");
    l.f("t", f.time_s)
        .f32("low", f.lmh[0])
        .f32("mid", f.lmh[1])
        .f32("high", f.lmh[2])
        .f32("low_raw", f.lmh_raw[0])
        .f32("mid_raw", f.lmh_raw[1])
        .f32("high_raw", f.lmh_raw[2])
        .f32("rms_dbfs", f.rms_dbfs)
        .f32("peak_dbfs", f.peak_dbfs)
        .b("silent", f.silent)
        .skip(11)
        .end();
    for (k, bit) in [onset_bits::LOW, onset_bits::MID, onset_bits::HIGH]
        .iter()
        .enumerate()
    {
        if f.band_onsets & bit != 0 {
            let mut l = Line::new(buf, fmt, "onset");
            l.f("t", f.time_s)
                .skip(17)
                .s("band", BAND_NAMES[k])
                .skip(2)
                .end();
        }
    }
}

/// A spectrum frame's lines: `spectral` once per spectrum hop (not for a
/// frame that only carries an event found between two hops), then its
/// broadband onset and its beat.
fn write_spectrum(buf: &mut Vec<u8>, fmt: Format, f: &SpectrumFrame, bins: bool) {
    if !f.events_only {
        write_hop(buf, fmt, f, bins);
    }
    let t = f.tempo;
    if f.onset {
        let mut l = Line::new(buf, fmt, "onset");
        l.f("t", (f.time_s - f.onset_lag_s as f64).max(0.0))
            .skip(17)
            .s("band", "broadband")
            .f32("strength", f.onset_strength)
            .skip(1)
            .end();
    }
    if t.beat {
        let mut l = Line::new(buf, fmt, "beat");
        l.f("t", (f.time_s - t.beat_lag_s as f64).max(0.0))
            .skip(13)
            .f32("bpm", t.bpm)
            .f32("confidence", t.confidence)
            .skip(4)
            .u("index", t.beat_index as u64)
            .end();
    }
}

/// The `spectral` line of a spectrum hop.
fn write_hop(buf: &mut Vec<u8>, fmt: Format, f: &SpectrumFrame, bins: bool) {
    let t = f.tempo;
    let mut l = Line::new(buf, fmt, "spectral");
    l.f("t", f.time_s)
        .skip(9)
        .f32("centroid_hz", f.centroid_hz)
        .f32("flatness", f.flatness)
        .f32("rolloff_hz", f.rolloff_hz)
        .f32("flux", f.flux)
        .f32("bpm", if t.locked { t.bpm } else { 0.0 })
        .f32("confidence", t.confidence)
        .f32("phase", t.phase)
        .b("locked", t.locked)
        .skip(3);
    if bins && f.has_bins && fmt == Format::Jsonl {
        l.key("bins");
        l.buf.push(b'[');
        for (i, v) in f.bins().iter().enumerate() {
            if i > 0 {
                l.buf.push(b',');
            }
            let mut b = ryu::Buffer::new();
            l.buf.extend_from_slice(b.format(*v).as_bytes());
        }
        l.buf.push(b']');
    }
    l.end();
}

fn write_silence(buf: &mut Vec<u8>, fmt: Format, f: &BandsFrame) {
    let mut l = Line::new(buf, fmt, "silence");
    l.f("t", f.time_s)
        .skip(8)
        .b("silent", f.silent)
        .skip(11)
        .end();
}

/// Open `path` for reading `block_frames` at a time, refusing a channel
/// the file does not have.
fn open_input(
    path: &Path,
    block_frames: usize,
    channel: i32,
) -> anyhow::Result<WavStream<std::io::BufReader<Input>>> {
    let never = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let wav = open_stream(path, block_frames, never)?;
    let channels = wav.header().channels;
    if channel >= channels as i32 {
        anyhow::bail!(
            "cannot use WAV input {}: audio.channel = {channel} but the file has {channels} channel(s)",
            path.display(),
        );
    }
    Ok(wav)
}

/// A write to the output failed: the error keeps its kind (a broken pipe
/// is the reader's choice, not a failure) and says what was being written.
fn output_error(e: std::io::Error) -> anyhow::Error {
    let kind = e.kind();
    anyhow::Error::new(std::io::Error::new(
        kind,
        format!("writing the analysis to standard output: {e}"),
    ))
}

/// Analyse `path` with `config`'s DSP settings, writing to `out`. With
/// `bins`, spectral lines carry the log spectrum too (JSON Lines only; it is
/// computed whenever `fft.enabled`, but 128 numbers per hop dominate the
/// output, so printing them is asked for explicitly).
pub fn analyze(
    path: &Path,
    config: &Config,
    format: Format,
    bins: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Summary> {
    let block_frames = config.audio.block_frames as usize;
    let channel = config.audio.channel;
    let mut wav = open_input(path, block_frames, channel)?;
    let sr = wav.header().sample_rate;
    let p = DspParams::from_config(config);
    let mut bands = BandsProcessor::new(sr, block_frames, config.fft.window_frames as usize, &p);
    let mut spectrum = SpectrumProcessor::new(
        sr,
        config.fft.window_frames as usize,
        config.fft.hop_frames as usize,
        &p,
    );
    let mut rx_b = ParamsRx::fixed(p);
    let mut rx_s = ParamsRx::fixed(p);
    let mut block = Box::new(Block::zeroed());
    block.sample_rate = sr;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    if format == Format::Csv {
        buf.extend_from_slice(CSV_HEADER.as_bytes());
    }
    let mut summary = Summary::default();
    let mut last_silent = false;
    let t0 = std::time::Instant::now();
    let mut frames = 0u64;
    for i in 0u64.. {
        let n = wav
            .read_mono(channel, &mut block.samples[..block_frames])
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        block.seq = i;
        block.frame_pos = frames;
        block.len = n as u32;
        frames += n as u64;
        let bf = bands.process(&block, &mut rx_b);
        write_bands(&mut buf, format, &bf);
        if bf.silent != last_silent {
            last_silent = bf.silent;
            write_silence(&mut buf, format, &bf);
        }
        spectrum.process(&block, &mut rx_s, &mut |sf| {
            summary.onsets += sf.onset as u64;
            summary.beats += sf.tempo.beat as u64;
            write_spectrum(&mut buf, format, sf, bins);
        });
        summary.blocks += 1;
        if buf.len() > (1 << 20) - 65_536 {
            out.write_all(&buf).map_err(output_error)?;
            buf.clear();
        }
    }
    if frames == 0 {
        anyhow::bail!(
            "cannot use WAV input {}: the file has no audio frames",
            path.display()
        );
    }
    out.write_all(&buf).map_err(output_error)?;
    out.flush().map_err(output_error)?;
    summary.wall_s = t0.elapsed().as_secs_f64();
    summary.audio_s = frames as f64 / sr as f64;
    Ok(summary)
}
