//! A WAV file played at real time: the live source behind `--input`.
//!
//! A reader thread (`p4-wavread`, normal priority) decodes the file with
//! [`super::wav::WavStream`] into a ring of about a second of mono samples;
//! the capture thread only pops from that ring and sleeps to the next
//! block's deadline. Pacing uses absolute deadlines on CLOCK_MONOTONIC: block
//! n is released at `start + (n+1)·block/sr`, so sleeping never accumulates
//! drift. Memory stays the same whatever the file's length.
//!
//! Real-time safety: [`WavSource::read`] only pops from a wait-free ring and
//! sleeps; disk I/O happens on the reader thread.

use super::wav::{open_stream, FormatNow, Input, WavHeader, WavStream};
use super::{CaptureError, ReadOutcome, Source};
use crate::stats::DeviceInfo;
use crate::types::Block;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the WAV reader thread is doing.
const READING: u8 = 0;
const DONE: u8 = 1;
const FAILED: u8 = 2;
/// A looped file with no frames left to play: emptied or truncated while
/// playing, or it cannot be rewound. A fault, not the input's end: a
/// looped input never ends by design (it used to stop the service with
/// exit status 0, which systemd does not restart).
const LOOP_LOST: u8 = 3;
/// The file now says another format than the one playing (overwritten in
/// place) or its header no longer reads: reopened, as a device that went
/// away is, so that the new file plays at its own rate.
const CHANGED: u8 = 4;

/// Frames the reader decodes at a time.
const CHUNK: usize = 1024;

/// Longest the reader sleeps at once while the ring is full (it notices
/// `quit` within this).
const REFILL_SLICE: Duration = Duration::from_millis(100);
/// Longest one read waits for a reader that is behind before it returns
/// without a block (so the capture thread beats).
const WAIT_SLICE_NS: u64 = 100_000_000;
/// How late a block may be before pacing goes on from now instead of
/// catching up.
const MAX_LATE_NS: u64 = 100_000_000;

/// A WAV file played at real time.
pub struct WavSource {
    path: String,
    header: WavHeader,
    block_frames: usize,
    ring: HeapCons<f32>,
    reader_state: Arc<AtomicU8>,
    /// Tells the reader thread to quit (when this source is dropped).
    quit: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    start_ns: u64,
    blocks: u64,
    /// Samples of the current block already taken (a read that waited
    /// returned [`ReadOutcome::Waiting`] before the block was whole).
    filled: usize,
    ended: bool,
}

impl WavSource {
    /// Open `path` and start decoding it on a reader thread. Waits for the
    /// header (a FIFO's writer may take a while), calling `beat` every 50 ms
    /// and giving up when `stop` is set.
    pub fn open(
        path: &Path,
        channel: i32,
        block_frames: usize,
        looping: bool,
        stop: Arc<AtomicBool>,
        beat: &dyn Fn(),
    ) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let err = |reason: String| CaptureError::Wav {
            path: name.clone(),
            reason,
        };
        let quit = Arc::new(AtomicBool::new(false));
        let state = Arc::new(AtomicU8::new(READING));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (p, q, st, path_buf) = (
            stop.clone(),
            quit.clone(),
            state.clone(),
            path.to_path_buf(),
        );
        std::thread::Builder::new()
            .stack_size(crate::rt::THREAD_STACK)
            .name("p4-wavread".into())
            .spawn(move || reader_thread(&path_buf, channel, looping, p, q, st, tx))
            // Not the input's fault (a limit on threads, for a moment):
            // a runtime failure, which the service manager may retry.
            .map_err(|e| CaptureError::WavIo {
                path: name.clone(),
                reason: format!("cannot start its reader thread: {e}"),
            })?;
        let (header, ring) = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(v)) => break v,
                Ok(Err(e)) => return Err(e),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if stop.load(Ordering::Relaxed) {
                        quit.store(true, Ordering::Relaxed);
                        return Err(err("stopped while waiting for the input".into()));
                    }
                    beat();
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(CaptureError::WavIo {
                        path: name,
                        reason: "its reader thread ended".into(),
                    })
                }
            }
        };
        Ok(WavSource {
            path: name,
            header,
            block_frames,
            ring,
            reader_state: state,
            quit,
            stop,
            start_ns: 0,
            blocks: 0,
            filled: 0,
            ended: false,
        })
    }
}

impl Drop for WavSource {
    fn drop(&mut self) {
        // The reader notices within 100 ms and ends by itself: it is never
        // joined, so a stuck disk cannot hold up a device switch or a stop.
        self.quit.store(true, Ordering::Relaxed);
    }
}

type Opened = Result<(WavHeader, HeapCons<f32>), CaptureError>;
type Stream = WavStream<std::io::BufReader<Input>>;

/// Decodes the file into the ring until the end (or forever, looping).
fn reader_thread(
    path: &Path,
    channel: i32,
    looping: bool,
    stop: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    state: Arc<AtomicU8>,
    opened: std::sync::mpsc::SyncSender<Opened>,
) {
    let mut chunk = vec![0.0f32; CHUNK];
    let (mut s, first) = match start_reading(path, channel, looping, &quit, &mut chunk) {
        Ok(started) => started,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    let h = s.header();
    // About a second of audio, read ahead.
    let cap = (h.sample_rate as usize).clamp(4 * CHUNK, 1 << 20);
    let (mut prod, cons) = HeapRb::<f32>::new(cap).split();
    prod.push_slice(&chunk[..first]);
    if opened.send(Ok((h, cons))).is_err() {
        return;
    }
    let quitting = || quit.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
    let end = fill(
        &mut s, channel, looping, &mut prod, &mut chunk, first, &quitting,
    );
    if let Some(end) = end {
        state.store(end, Ordering::Release);
    }
}

/// Open the file and read its first frames into `chunk`, so that
/// everything wrong with it (a channel it lacks, a FIFO asked to loop, no
/// audio at all) is an open error. Returns the stream and how many frames
/// are in `chunk`.
fn start_reading(
    path: &Path,
    channel: i32,
    looping: bool,
    quit: &Arc<AtomicBool>,
    chunk: &mut [f32],
) -> Result<(Stream, usize), CaptureError> {
    let err = |reason: String| CaptureError::Wav {
        path: path.display().to_string(),
        reason,
    };
    let mut s = open_stream(path, CHUNK, quit.clone())?;
    let h = s.header();
    if channel >= h.channels as i32 {
        return Err(err(format!(
            "audio.channel = {channel} but the file has {} channel(s)",
            h.channels
        )));
    }
    if looping && !s.reader.get_ref().seekable() {
        return Err(err(
            "a FIFO cannot be looped (--loop / audio.loop-input needs a regular file)".into(),
        ));
    }
    match s.read_mono(channel, chunk) {
        Ok(0) => Err(err("the file has no audio frames".into())),
        Ok(n) => Ok((s, n)),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Keep the ring topped up until the file ends (`DONE`), a read fails
/// (`FAILED`) or the source is dropped or stopping (`None`). `pass_frames`:
/// frames of this pass read so far (a looped file without any is done).
fn fill(
    s: &mut Stream,
    channel: i32,
    looping: bool,
    prod: &mut HeapProd<f32>,
    chunk: &mut [f32],
    mut pass_frames: usize,
    quitting: &dyn Fn() -> bool,
) -> Option<u8> {
    let cap = prod.capacity().get();
    let rate = s.header().sample_rate.max(1) as f64;
    // A looped file of at most a chunk is played from memory once read
    // whole: a seek and a read per pass of a one-frame file at 768 kHz
    // kept this thread at two thirds of a core. `tiny` holds the pass
    // while it fits; `from_memory` is the position in it once playing.
    let mut tiny: Vec<f32> = Vec::with_capacity(if looping { CHUNK } else { 0 });
    if looping && pass_frames <= CHUNK {
        tiny.extend_from_slice(&chunk[..pass_frames]);
    }
    let mut from_memory: Option<usize> = None;
    // The file's size and time when last looked at: a regular file written
    // to while it plays (overwritten in place) is read as its header now
    // says, or reopened if that is another format (tester aa W1: the first
    // header was kept for ever, and a file of another format played as
    // noise).
    let mut stamp = s.stamp();
    loop {
        if quitting() {
            return None;
        }
        let now = s.stamp();
        if now != stamp {
            let moved = match s.settled_format(quitting) {
                FormatNow::Same => false,
                FormatNow::Moved => true,
                FormatNow::Other => return Some(CHANGED),
                // Emptied: a fault for a looped file, the end otherwise.
                FormatNow::Unreadable => return Some(if looping { LOOP_LOST } else { DONE }),
            };
            stamp = s.stamp();
            // What memory holds may be the old audio, and data that starts
            // elsewhere is read from its new start: the pass starts again.
            tiny.clear();
            if from_memory.take().is_some() || moved {
                if s.rewind_reading_header().is_err() {
                    return Some(if looping { LOOP_LOST } else { FAILED });
                }
                pass_frames = 0;
            }
        }
        if prod.vacant_len() < CHUNK {
            // Full: wait until half the ring has played, then refill it in
            // one go, so this thread wakes a few times a second rather than
            // once per chunk (every wake-up is a context switch the whole
            // process pays for). Slices of at most 100 ms keep `quit` seen.
            let frames = (cap / 2).saturating_sub(prod.vacant_len());
            let wait = Duration::from_secs_f64(frames as f64 / rate);
            std::thread::sleep(wait.clamp(Duration::from_millis(10), REFILL_SLICE));
            if prod.vacant_len() < cap / 2 {
                continue;
            }
        }
        if let Some(pos) = from_memory.as_mut() {
            for x in chunk.iter_mut() {
                *x = tiny[*pos];
                *pos = (*pos + 1) % tiny.len();
            }
            prod.push_slice(chunk);
            continue;
        }
        match s.read_mono(channel, chunk) {
            Ok(0) if !looping => return Some(DONE),
            Ok(0) => {
                if pass_frames == 0 {
                    // A header and no audio behind it yet (a recorder
                    // writing into the file: review ae AE1) is given
                    // `REWRITE_WAIT` to grow; one that does not was emptied.
                    if !s.grows_within(stamp, quitting) {
                        return Some(LOOP_LOST);
                    }
                }
                // The end of a pass, or of what a growing file had: read
                // from the start again (the read that found nothing took
                // the end of the data for the end of the input).
                match s.settled_format(quitting) {
                    FormatNow::Same | FormatNow::Moved => {}
                    FormatNow::Other => return Some(CHANGED),
                    FormatNow::Unreadable => return Some(LOOP_LOST),
                }
                if s.rewind_reading_header().is_err() {
                    return Some(LOOP_LOST);
                }
                stamp = s.stamp();
                if pass_frames > 0 && tiny.len() == pass_frames {
                    from_memory = Some(0);
                } else {
                    tiny.clear();
                }
                pass_frames = 0;
            }
            Ok(n) => {
                if looping && tiny.len() == pass_frames && pass_frames + n <= CHUNK {
                    tiny.extend_from_slice(&chunk[..n]);
                }
                pass_frames += n;
                prod.push_slice(&chunk[..n]);
            }
            Err(_) if quitting() => return None,
            Err(_) => return Some(FAILED),
        }
    }
}

impl Source for WavSource {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: self.path.clone(),
            format: super::alsa::format_name(self.header.format).into(),
            access: "wav".into(),
            rate: self.header.sample_rate,
            channels: self.header.channels as u32,
            period: self.block_frames as u32,
            buffer: self.block_frames as u32,
            clocked: true,
            hw: Vec::new(),
        }
    }

    fn clocked(&self) -> bool {
        true
    }

    fn read(&mut self, block: &mut Block) -> Result<ReadOutcome, CaptureError> {
        if self.ended {
            return Ok(ReadOutcome::End);
        }
        if self.start_ns == 0 {
            self.start_ns = crate::rt::now_ns();
        }
        let n = self.block_frames;
        let sr = self.header.sample_rate as u128;
        let period_ns = |blocks: u64| (blocks as u128 * n as u128 * 1_000_000_000 / sr) as u64;
        if self.filled == 0 {
            self.blocks += 1;
        }
        let mut deadline = self.start_ns + period_ns(self.blocks);
        let mut filled = self.filled;
        // Take the block; if the reader is behind (a slow disk, a FIFO whose
        // writer is slower than real time), wait for it: 1 ms steps up to a
        // little past the deadline, then 10 ms steps. A wait longer than
        // WAIT_SLICE returns without a block (the capture thread beats and
        // asks again, keeping what this block has so far), so a FIFO whose
        // writer pauses keeps the watchdog fed and wakes 100 times a
        // second, not 1000.
        let waited_from = crate::rt::now_ns();
        loop {
            filled += self.ring.pop_slice(&mut block.samples[filled..n]);
            if filled == n {
                break;
            }
            match self.reader_state.load(Ordering::Acquire) {
                READING => {}
                FAILED => {
                    return Err(CaptureError::WavIo {
                        path: self.path.clone(),
                        reason: "reading the file failed".into(),
                    })
                }
                LOOP_LOST => {
                    return Err(CaptureError::WavIo {
                        path: self.path.clone(),
                        reason: "the looped file has no audio left to play (emptied or truncated while playing?)".into(),
                    })
                }
                CHANGED => {
                    return Err(CaptureError::Gone {
                        device: self.path.clone(),
                        reason: "the file changed format while it played (overwritten in place?): reopening it".into(),
                    })
                }
                _ => {
                    // Everything the reader pushed is in the ring by now.
                    filled += self.ring.pop_slice(&mut block.samples[filled..n]);
                    self.filled = 0;
                    if filled == 0 {
                        return Ok(ReadOutcome::End);
                    }
                    self.ended = self.ring.is_empty();
                    break;
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(ReadOutcome::Stopped);
            }
            let now = crate::rt::now_ns();
            if now.saturating_sub(waited_from) >= WAIT_SLICE_NS {
                self.filled = filled;
                return Ok(ReadOutcome::Waiting);
            }
            let step = if now < deadline + 20_000_000 { 1 } else { 10 };
            std::thread::sleep(Duration::from_millis(step));
        }
        self.filled = 0;
        // Far behind (the writer paused, the process was stopped): go on
        // from now instead of sending the backlog in a burst.
        let now = crate::rt::now_ns();
        if now > deadline + MAX_LATE_NS {
            self.start_ns += now - deadline;
            deadline = now;
        }
        block.samples[filled..n].iter_mut().for_each(|s| *s = 0.0);
        block.len = n as u32;
        block.sample_rate = self.header.sample_rate;
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
mod tests;
