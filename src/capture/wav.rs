//! WAV files, streamed from disk: read block by block for `phase4 analyze`
//! and for the live WAV input ([`super::wav_source`]).
//!
//! Nothing holds more than a block or two of a file: memory does not grow
//! with its length. The header is parsed here ([`parse_header`], bounded and
//! fuzzed) rather than by `hound`, which needs the data length up front and
//! so refuses the WAVs that recorders write to a pipe (length 0 or
//! 0xFFFFFFFF: "until the end"). Samples are converted by the same code as
//! ALSA's ([`super::convert::to_mono`]).
//!
//! The input may be a regular file or a FIFO (`mkfifo`, `/dev/stdin` when it
//! is a pipe). A FIFO is read as it comes; it cannot be looped.
//!
//! Not used on a real-time thread: reading blocks on the disk or the pipe.

use super::convert::{bytes_per_sample, to_mono};
use super::CaptureError;
use crate::config::SampleFormat;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lowest sample rate accepted from a file.
pub const MIN_RATE: u32 = 1000;
/// Highest sample rate accepted from a file.
pub const MAX_RATE: u32 = 768_000;
/// Most channels accepted from a file.
pub const MAX_CHANNELS: u16 = 64;
/// Most header bytes (chunks before the audio data) read before giving up.
pub const MAX_HEADER_BYTES: u64 = 64 << 20;
/// How long a file whose header does not read (caught half rewritten), or
/// that has a header and no audio yet, is given to change before it counts
/// as emptied.
pub const REWRITE_WAIT: Duration = Duration::from_secs(1);

/// What a WAV header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavHeader {
    /// Sample format of the data (as ALSA names it).
    pub format: SampleFormat,
    /// Channels.
    pub channels: u16,
    /// Frames per second.
    pub sample_rate: u32,
    /// Bytes of audio data; `None` when the header does not say (a WAV
    /// written to a pipe): the data then runs to the end of the input.
    pub data_bytes: Option<u64>,
}

impl WavHeader {
    /// Whether `other` is read the same way (format, channels, rate).
    pub fn same_format(&self, other: &WavHeader) -> bool {
        (self.format, self.channels, self.sample_rate)
            == (other.format, other.channels, other.sample_rate)
    }

    /// Bytes per frame.
    pub fn frame_bytes(&self) -> usize {
        bytes_per_sample(self.format) * self.channels as usize
    }
}

/// Reads exactly `buf.len()` bytes, counting them against `budget`.
fn read_exact_counted<R: Read>(r: &mut R, buf: &mut [u8], budget: &mut u64) -> Result<(), String> {
    if (buf.len() as u64) > *budget {
        return Err(format!(
            "no audio data within the first {} MiB",
            MAX_HEADER_BYTES >> 20
        ));
    }
    *budget -= buf.len() as u64;
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => "not a valid WAV file (it ends inside the header)".into(),
        _ => e.to_string(),
    })
}

/// Skips `n` bytes by reading them (works on a pipe).
fn skip<R: Read>(r: &mut R, n: u64, budget: &mut u64) -> Result<(), String> {
    if n > *budget {
        return Err(format!(
            "no audio data within the first {} MiB",
            MAX_HEADER_BYTES >> 20
        ));
    }
    *budget -= n;
    let got = io::copy(&mut r.take(n), &mut io::sink()).map_err(|e| e.to_string())?;
    if got < n {
        return Err("not a valid WAV file (it ends inside the header)".into());
    }
    Ok(())
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The sample format of a `fmt ` chunk's body.
fn parse_fmt(body: &[u8]) -> Result<(SampleFormat, u16, u32), String> {
    const PCM: u16 = 1;
    const FLOAT: u16 = 3;
    const EXTENSIBLE: u16 = 0xfffe;
    let mut tag = le16(&body[0..]);
    let channels = le16(&body[2..]);
    let rate = le32(&body[4..]);
    let block_align = le16(&body[12..]) as usize;
    let bits = le16(&body[14..]);
    let extensible = tag == EXTENSIBLE;
    if extensible {
        // cbSize, valid bits, channel mask, then the sub-format GUID whose
        // first two bytes are the real format tag.
        if body.len() < 40 {
            return Err("not a valid WAV file (short WAVE_FORMAT_EXTENSIBLE)".into());
        }
        tag = le16(&body[24..]);
    }
    if channels == 0 {
        return Err("the file declares 0 channels".into());
    }
    if channels > MAX_CHANNELS {
        return Err(format!(
            "the file declares {channels} channels; at most {MAX_CHANNELS} are supported"
        ));
    }
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(format!(
            "the file declares a sample rate of {rate} Hz; {MIN_RATE} to {MAX_RATE} Hz are supported"
        ));
    }
    let container = block_align / channels as usize;
    if container * channels as usize != block_align || container == 0 {
        return Err(format!(
            "not a valid WAV file (block align {block_align} for {channels} channel(s))"
        ));
    }
    if bits == 0 || bits as usize > 8 * container {
        return Err(format!(
            "not a valid WAV file ({bits} bits in {container}-byte samples)"
        ));
    }
    let unsupported = |what: String| {
        Err(format!(
            "unsupported sample format: {what}; use 16, 24 or 32-bit integer or 32-bit float"
        ))
    };
    // A WAV container wider than the valid bits is left-justified (24 bits
    // in 32 read as 32-bit), so the container alone decides the format;
    // except for plain PCM declaring 24 bits in 4-byte samples, which no
    // spec makes (that is WAVE_FORMAT_EXTENSIBLE's job) and `arecord -f
    // S24_LE` writes: ALSA's S24_LE, right-justified (read as 32-bit it
    // was 48 dB too quiet).
    let format = match (tag, container) {
        (PCM, 2) => SampleFormat::S16Le,
        (PCM, 3) => SampleFormat::S24_3Le,
        (PCM, 4) if !extensible && bits == 24 => SampleFormat::S24Le,
        (PCM, 4) => SampleFormat::S32Le,
        (PCM, c) => return unsupported(format!("{}-bit integer", 8 * c)),
        (FLOAT, 4) => SampleFormat::FloatLe,
        (FLOAT, c) => return unsupported(format!("{}-bit float", 8 * c)),
        (t, _) => {
            return unsupported(format!(
                "compressed or unknown encoding (format tag {t:#06x})"
            ))
        }
    };
    Ok((format, channels, rate))
}

/// Parse a WAV header from `r`, leaving it at the first byte of audio data.
/// Accepts RIFF and RF64, PCM and IEEE float, plain and extensible, skips
/// unknown chunks (word-aligned), and reads at most [`MAX_HEADER_BYTES`].
pub fn parse_header<R: Read>(r: &mut R) -> Result<WavHeader, String> {
    let mut budget = MAX_HEADER_BYTES;
    let mut riff = [0u8; 12];
    read_exact_counted(r, &mut riff, &mut budget).map_err(|e| {
        if e.contains("ends inside") {
            "not a valid WAV file (too short)".to_string()
        } else {
            e
        }
    })?;
    if !(&riff[0..4] == b"RIFF" || &riff[0..4] == b"RF64") || &riff[8..12] != b"WAVE" {
        return Err(if &riff[0..4] == b"RIFX" {
            "big-endian WAV (RIFX) is not supported".into()
        } else {
            "not a valid WAV file (no RIFF/WAVE header)".into()
        });
    }
    let rf64 = &riff[0..4] == b"RF64";
    let mut fmt: Option<(SampleFormat, u16, u32)> = None;
    // RF64's real data size (its `data` chunk says 0xFFFFFFFF).
    let mut ds64_data: Option<u64> = None;
    loop {
        let mut head = [0u8; 8];
        read_exact_counted(r, &mut head, &mut budget).map_err(|e| {
            if e.contains("ends inside") {
                "not a valid WAV file (no data chunk)".to_string()
            } else {
                e
            }
        })?;
        let len = le32(&head[4..]) as u64;
        match &head[0..4] {
            b"fmt " => {
                if !(16..=1024).contains(&len) {
                    return Err(format!("not a valid WAV file (fmt chunk of {len} bytes)"));
                }
                let mut body = [0u8; 1024];
                read_exact_counted(r, &mut body[..len as usize], &mut budget)?;
                skip(r, len & 1, &mut budget)?;
                fmt = Some(parse_fmt(&body[..len as usize])?);
            }
            b"ds64" if rf64 => {
                // riffSize, dataSize, sampleCount (64-bit each), a table.
                if len < 16 {
                    return Err(format!("not a valid RF64 file (ds64 chunk of {len} bytes)"));
                }
                let mut sizes = [0u8; 16];
                read_exact_counted(r, &mut sizes, &mut budget)?;
                skip(r, len - 16 + (len & 1), &mut budget)?;
                let mut data = [0u8; 8];
                data.copy_from_slice(&sizes[8..]);
                ds64_data = Some(u64::from_le_bytes(data));
            }
            b"data" => {
                let Some((format, channels, sample_rate)) = fmt else {
                    return Err("not a valid WAV file (data before the fmt chunk)".into());
                };
                let data_bytes = match (len, ds64_data) {
                    // RF64: the size is in ds64 (chunks after the audio,
                    // LIST or bext, must not be played as samples).
                    (0xffff_ffff, Some(n)) if n > 0 => Some(n),
                    // Streaming writers put 0 or 0xFFFFFFFF here: read to
                    // the end.
                    (0 | 0xffff_ffff, _) => None,
                    (n, _) => Some(n),
                };
                return Ok(WavHeader {
                    format,
                    channels,
                    sample_rate,
                    data_bytes,
                });
            }
            _ => skip(r, len + (len & 1), &mut budget)?,
        }
    }
}

/// An input file: a regular file, or a FIFO read without ever blocking for
/// long (so a reader waiting for a writer still sees `stop`).
pub enum Input {
    /// A regular file (seekable: can loop).
    File(File),
    /// A FIFO or pipe, opened non-blocking.
    Fifo {
        /// The pipe.
        file: File,
        /// Gives up waiting for the writer when set.
        stop: Arc<AtomicBool>,
    },
}

impl Input {
    /// Open `path`: a regular file or a FIFO; anything else is refused.
    pub fn open(path: &Path, stop: Arc<AtomicBool>) -> Result<Self, String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        let kind = meta.file_type();
        if kind.is_file() {
            return File::open(path).map(Input::File).map_err(|e| e.to_string());
        }
        if kind.is_fifo() {
            // Non-blocking: opening a FIFO for reading would otherwise wait
            // in open(2) for a writer, deaf to stop.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(|e| e.to_string())?;
            return Ok(Input::Fifo { file, stop });
        }
        Err("not a regular file or a FIFO".into())
    }

    /// Whether the input can be rewound (for `--loop`).
    pub fn seekable(&self) -> bool {
        matches!(self, Input::File(_))
    }

    /// What changes when a regular file is written to: its size and
    /// modification time (`None` for a FIFO, or when `fstat` fails).
    pub fn stamp(&self) -> Option<(u64, i64, i64)> {
        use std::os::unix::fs::MetadataExt;
        match self {
            Input::File(f) => f
                .metadata()
                .ok()
                .map(|m| (m.size(), m.mtime(), m.mtime_nsec())),
            Input::Fifo { .. } => None,
        }
    }
}

/// Wait up to 100 ms for a FIFO; true when it hung up (writer gone).
fn wait_fifo(file: &File) -> bool {
    let mut fd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut fd, 1, 100) };
    // Before any writer came, Linux reports neither POLLIN nor POLLHUP: the
    // wait continues. After the last writer left, POLLHUP without POLLIN.
    r > 0 && fd.revents & libc::POLLHUP != 0 && fd.revents & libc::POLLIN == 0
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::File(f) => f.read(buf),
            Input::Fifo { file, stop } => loop {
                if buf.is_empty() {
                    return Ok(0);
                }
                match file.read(buf) {
                    Ok(n) if n > 0 => return Ok(n),
                    // 0: no writer yet, or the writer is gone.
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                if stop.load(Ordering::Relaxed) {
                    // Not `Interrupted`: `read_exact` would retry that.
                    return Err(io::Error::other("stopped"));
                }
                if wait_fifo(file) {
                    return Ok(0);
                }
            },
        }
    }
}

/// What a file's header says, read again while it plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatNow {
    /// The header the stream plays, unchanged.
    Same,
    /// The format the stream plays, but its data starts elsewhere or has
    /// another length (rewritten with other chunks before the data): read
    /// on from the old position, the frames would be cut in the wrong
    /// place (review ae AE2: the other channel of a stereo file).
    Moved,
    /// Another format (rate, channels or sample format).
    Other,
    /// No header (emptied, or caught half rewritten), or it cannot be read.
    Unreadable,
}

/// A WAV stream: the header, then whole frames on demand.
pub struct WavStream<R> {
    header: WavHeader,
    pub(super) reader: R,
    /// Audio bytes still to read (`None`: to the end of the input).
    remaining: Option<u64>,
    /// Where the audio data starts (0 for a FIFO).
    data_start: u64,
    bytes: Vec<u8>,
}

impl<R: Read> WavStream<R> {
    /// Parse the header from `reader`; blocks of up to `max_frames` frames
    /// can then be read.
    pub fn new(mut reader: R, max_frames: usize) -> Result<Self, String> {
        let header = parse_header(&mut reader)?;
        Ok(WavStream {
            remaining: header.data_bytes,
            data_start: 0,
            bytes: vec![0; max_frames.max(1) * header.frame_bytes()],
            header,
            reader,
        })
    }

    /// What the header says.
    pub fn header(&self) -> WavHeader {
        self.header
    }

    /// Read up to `out.len()` frames (at most `max_frames`), mixed to mono
    /// (`channel < 0`) or one channel picked, into `out`. Returns the frames
    /// read; 0 at the end of the data. A partial frame at the very end of a
    /// truncated file is dropped.
    pub fn read_mono(&mut self, channel: i32, out: &mut [f32]) -> io::Result<usize> {
        let fb = self.header.frame_bytes();
        let mut want = out.len().min(self.bytes.len() / fb) * fb;
        if let Some(rem) = self.remaining {
            // Compared as u64: an RF64 data size past 4 GiB (its ds64) taken
            // `as usize` on a 32-bit Pi would be cut to its low 32 bits.
            let rem = rem / fb as u64 * fb as u64;
            if rem < want as u64 {
                want = rem as usize;
            }
        }
        let mut got = 0;
        while got < want {
            match self.reader.read(&mut self.bytes[got..want]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let frames = got / fb;
        if let Some(rem) = self.remaining.as_mut() {
            *rem -= got as u64;
        }
        if got < want {
            // The input ended early: nothing more will come.
            self.remaining = Some(0);
        }
        Ok(to_mono(
            &self.bytes[..frames * fb],
            self.header.format,
            self.header.channels as usize,
            channel,
            out,
        ))
    }
}

impl<R: Read + Seek> WavStream<R> {
    /// Go back to the first frame, reading the header again: a file
    /// overwritten in place (`cp new.wav loop.wav` keeps its inode, so the
    /// open file sees the new bytes) plays on from its own header, its new
    /// length and where its data now starts. Fails, leaving the stream
    /// somewhere not worth keeping, when the header no longer reads or says
    /// another format: its bytes would be played as the old format.
    pub fn rewind_reading_header(&mut self) -> Result<(), String> {
        self.reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| e.to_string())?;
        let now = parse_header(&mut self.reader)?;
        if !now.same_format(&self.header) {
            return Err(format!(
                "now {} Hz, {} channel(s), {:?}",
                now.sample_rate, now.channels, now.format
            ));
        }
        self.data_start = self.reader.stream_position().map_err(|e| e.to_string())?;
        self.remaining = now.data_bytes;
        self.header = now;
        Ok(())
    }

    /// What the header says now, read again (the stream is left where it
    /// was).
    pub fn format_now(&mut self) -> FormatNow {
        let Ok(here) = self.reader.stream_position() else {
            return FormatNow::Unreadable;
        };
        let now = match self.reader.seek(SeekFrom::Start(0)) {
            Ok(_) => match parse_header(&mut self.reader) {
                Ok(h) if !h.same_format(&self.header) => FormatNow::Other,
                Ok(h) => match self.reader.stream_position() {
                    Ok(start) if (h, start) == (self.header, self.data_start) => FormatNow::Same,
                    Ok(_) => FormatNow::Moved,
                    Err(_) => FormatNow::Unreadable,
                },
                Err(_) => FormatNow::Unreadable,
            },
            Err(_) => FormatNow::Unreadable,
        };
        match self.reader.seek(SeekFrom::Start(here)) {
            Ok(_) => now,
            Err(_) => FormatNow::Unreadable,
        }
    }
}

/// A file played through a buffer: its change detection, on the WAV
/// reader thread.
impl WavStream<io::BufReader<Input>> {
    /// What changes when the file is written to ([`Input::stamp`]).
    pub fn stamp(&self) -> Option<(u64, i64, i64)> {
        self.reader.get_ref().stamp()
    }

    /// Whether the file changes (grows) within [`REWRITE_WAIT`] of its last
    /// look, `stamp`.
    pub fn grows_within(
        &self,
        stamp: Option<(u64, i64, i64)>,
        quitting: &dyn Fn() -> bool,
    ) -> bool {
        let until = Instant::now() + REWRITE_WAIT;
        while !quitting() && Instant::now() < until {
            if self.stamp() != stamp {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// The file's format once its header reads: a file being rewritten
    /// (`cp` truncates it, then writes) is given up to [`REWRITE_WAIT`] to
    /// have a header again; one that still has none was emptied.
    pub fn settled_format(&mut self, quitting: &dyn Fn() -> bool) -> FormatNow {
        let until = Instant::now() + REWRITE_WAIT;
        loop {
            let now = self.format_now();
            if now != FormatNow::Unreadable || quitting() || Instant::now() >= until {
                return now;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Seek for Input {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match self {
            Input::File(f) => f.seek(pos),
            Input::Fifo { .. } => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a FIFO cannot be rewound",
            )),
        }
    }
}

/// Open `path` as a WAV stream read through a 64 KiB buffer.
pub fn open_stream(
    path: &Path,
    max_frames: usize,
    stop: Arc<AtomicBool>,
) -> Result<WavStream<io::BufReader<Input>>, CaptureError> {
    let err = |reason: String| CaptureError::Wav {
        path: path.display().to_string(),
        reason,
    };
    let input = Input::open(path, stop).map_err(|reason| {
        // No descriptor left: a fault of the moment, not of the file.
        match crate::service::out_of_descriptors() {
            Some(e) => CaptureError::WavIo {
                path: path.display().to_string(),
                reason: format!("{reason} (out of file descriptors: {e})"),
            },
            None => err(reason),
        }
    })?;
    let mut s =
        WavStream::new(io::BufReader::with_capacity(64 << 10, input), max_frames).map_err(err)?;
    if s.reader.get_ref().seekable() {
        s.data_start = s.reader.stream_position().map_err(|e| err(e.to_string()))?;
    }
    Ok(s)
}

/// Whether `path` can be used as the WAV input with `channel` (for
/// `--check-config` and the start-up check): a regular file is opened and
/// its header and first frame read; a FIFO is accepted as it is (reading
/// would take its stream away). The error says why not.
pub fn check_input(path: &Path, channel: i32) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot open the WAV file: {e}"))?;
    if meta.file_type().is_fifo() {
        return Ok(());
    }
    let never = Arc::new(AtomicBool::new(false));
    let mut s = open_stream(path, 1, never).map_err(|e| match e {
        CaptureError::Wav { reason, .. } => reason,
        other => other.to_string(),
    })?;
    let h = s.header();
    if channel >= h.channels as i32 {
        return Err(format!(
            "audio.channel = {channel} but the file has {} channel(s)",
            h.channels
        ));
    }
    let mut one = [0.0f32; 1];
    match s.read_mono(-1, &mut one) {
        Ok(0) => Err("the file has no audio frames".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
