//! Capture from an ALSA PCM through alsa-lib.
//!
//! The PCM is opened non-blocking inside the capture thread. Access is mmap
//! (`snd_pcm_mmap_begin/commit` through the `alsa` crate's `IO::mmap`; the
//! crate's `direct` module is avoided because it does not work on ARM) with
//! a fallback to `snd_pcm_readi` when the device refuses mmap. Formats:
//! FLOAT_LE, S32_LE, S24_LE, S24_3LE, S16_LE (the first the device accepts,
//! or the one configured).
//!
//! The read loop works in whole blocks, and a block is one period: the
//! period is negotiated to the block size and `avail_min` is one block, so
//! the kernel wakes the thread once per period. Frames are only taken when
//! a whole block is available; with fewer, the thread polls the PCM's
//! descriptors together with the stop eventfd. Taking the partial frames a
//! driver that reports its position finely (snd-dummy, USB) shows between
//! interrupts would leave the read pointer off the period boundary, and the
//! next interrupt would then find less than `avail_min` and not wake the
//! thread: one wake-up per two periods, blocks in pairs.
//!
//! Other states: **recover** (EPIPE overrun → prepare + start; ESTRPIPE
//! suspend → resume, else prepare) and **gone** (ENODEV and friends: the
//! caller closes and reopens with backoff). A poll that returns while a
//! block is still short (a spurious wake-up, or an ioplug device such as
//! `pulse` whose poll is always ready) sleeps for the missing frames before
//! polling again, so the thread never spins.
//!
//! Whether the PCM has a clock is read from its plugin chain (see
//! [`has_clock`]), never from its name.
//!
//! Real-time safety: buffers and poll descriptors are allocated when the
//! device is opened; [`AlsaSource::read`] neither allocates nor locks.

use super::chain::{card_id, describe, hardware, has_clock};
use super::convert::{bytes_per_sample, to_mono};
use super::{CaptureError, ReadOutcome, Source};
use crate::config::{AccessMode, AudioConfig, SampleFormat};
use crate::stats::{DeviceInfo, HwDevice};
use crate::types::Block;
use alsa::pcm::{Access, Format, HwParams, State, TstampType, PCM};
use alsa::poll::Descriptors;
use alsa::{Direction, ValueOr};
use std::os::fd::RawFd;

/// Formats tried in this order when `audio.format = "auto"`.
const AUTO_FORMATS: [SampleFormat; 5] = [
    SampleFormat::FloatLe,
    SampleFormat::S32Le,
    SampleFormat::S24Le,
    SampleFormat::S24_3Le,
    SampleFormat::S16Le,
];

fn alsa_format(f: SampleFormat) -> Format {
    match f {
        SampleFormat::S16Le => Format::S16LE,
        SampleFormat::S24_3Le => Format::S243LE,
        SampleFormat::S24Le => Format::S24LE,
        SampleFormat::S32Le => Format::S32LE,
        SampleFormat::FloatLe | SampleFormat::Auto => Format::FloatLE,
    }
}

/// The name of a format as ALSA writes it.
pub fn format_name(f: SampleFormat) -> &'static str {
    match f {
        SampleFormat::S16Le => "S16_LE",
        SampleFormat::S24_3Le => "S24_3LE",
        SampleFormat::S24Le => "S24_LE",
        SampleFormat::S32Le => "S32_LE",
        SampleFormat::FloatLe => "FLOAT_LE",
        SampleFormat::Auto => "auto",
    }
}

/// Errors that only mean "nothing yet".
fn is_transient(e: &alsa::Error) -> bool {
    matches!(e.errno(), libc::EAGAIN | libc::EINTR)
}

/// What was negotiated with the device.
#[derive(Clone, Copy, Debug)]
struct Negotiated {
    format: SampleFormat,
    channels: u32,
    rate: u32,
    period: u32,
    buffer: u32,
    mmap: bool,
}

/// An open ALSA capture PCM.
pub struct AlsaSource {
    name: String,
    pcm: PCM,
    neg: Negotiated,
    channel: i32,
    block_frames: usize,
    frame_bytes: usize,
    clocked: bool,
    fds: Vec<libc::pollfd>,
    bytes: Vec<u8>,
    timeout_ms: i32,
    /// The last poll returned but the block was still short.
    woke_short: bool,
    /// When the last block was read (or the device opened).
    last_block_ns: u64,
    /// When the read loop last ran ([`Self::note_awake`]).
    awake_ns: u64,
    /// Whether a block was read since the open.
    flowing: bool,
    /// The cards' devices the PCM runs on ([`hardware`]).
    hw: Vec<HwDevice>,
}

/// A clocked device that says it runs and has delivered nothing for this
/// long (or [`STALL_BLOCKS`] blocks, if longer) is given up on and opened
/// again: a sound server that was killed, restarted or stopped (JACK's
/// client keeps the PCM "running" with no data, for good). Well within the
/// systemd watchdog's 5 s, so capture recovers before the service is
/// restarted.
const STALL_NS: u64 = 2_000_000_000;
/// The same before the first block after an open: PulseAudio's first
/// period can take up to 2 s.
const FIRST_BLOCK_NS: u64 = 4_000_000_000;
const STALL_BLOCKS: u64 = 8;
/// The read loop not running for this long means the process was
/// stopped meanwhile ([`AlsaSource::note_awake`]).
const FROZEN_NS: u64 = 1_000_000_000;

fn open_err(device: &str, reason: impl ToString) -> CaptureError {
    CaptureError::Open {
        device: device.to_string(),
        reason: reason.to_string(),
    }
}

fn configure(
    pcm: &PCM,
    cfg: &AudioConfig,
    mmap: bool,
    name: &str,
) -> Result<Negotiated, CaptureError> {
    let e = |what: &str, err: alsa::Error| open_err(name, format!("{what}: {err}"));
    let hwp = HwParams::any(pcm).map_err(|err| e("no hardware parameters", err))?;
    let access = if mmap {
        Access::MMapInterleaved
    } else {
        Access::RWInterleaved
    };
    hwp.set_access(access).map_err(|err| {
        e(
            if mmap {
                "mmap access refused"
            } else {
                "read access refused"
            },
            err,
        )
    })?;
    let candidates: &[SampleFormat] = if cfg.format == SampleFormat::Auto {
        &AUTO_FORMATS
    } else {
        std::slice::from_ref(&cfg.format)
    };
    let format = candidates
        .iter()
        .copied()
        .find(|f| hwp.test_format(alsa_format(*f)).is_ok())
        .ok_or_else(|| {
            open_err(
                name,
                format!(
                    "none of the formats {:?} is supported",
                    candidates
                        .iter()
                        .map(|f| format_name(*f))
                        .collect::<Vec<_>>()
                ),
            )
        })?;
    hwp.set_format(alsa_format(format))
        .map_err(|err| e("format", err))?;
    let channels = if cfg.channels == 0 {
        let max = hwp.get_channels_max().unwrap_or(2);
        hwp.set_channels_near(max.min(2))
            .map_err(|err| e("channels", err))?
    } else {
        hwp.set_channels(cfg.channels)
            .map_err(|err| e(&format!("{} channels", cfg.channels), err))?;
        cfg.channels
    };
    let rate = hwp
        .set_rate_near(cfg.sample_rate_hz, ValueOr::Nearest)
        .map_err(|err| e(&format!("rate {}", cfg.sample_rate_hz), err))?;
    let period = hwp
        .set_period_size_near(cfg.block_frames as alsa::pcm::Frames, ValueOr::Nearest)
        .map_err(|err| e("period size", err))?;
    let buffer = hwp
        .set_buffer_size_near((cfg.block_frames * cfg.periods.max(2)) as alsa::pcm::Frames)
        .map_err(|err| e("buffer size", err))?;
    pcm.hw_params(&hwp).map_err(|err| e("hw_params", err))?;
    Ok(Negotiated {
        format,
        channels,
        rate,
        period: period as u32,
        buffer: buffer as u32,
        mmap,
    })
}

impl AlsaSource {
    /// Open `cfg.device` for capture and start it. `stop_fd` is an eventfd
    /// that becomes readable when the thread must stop.
    pub fn open(cfg: &AudioConfig, stop_fd: RawFd) -> Result<Self, CaptureError> {
        let name = cfg.device.clone();
        let try_open = |mmap: bool| -> Result<(PCM, Negotiated), CaptureError> {
            // PCM::new panics on a NUL byte; the configuration's checks
            // refuse one, and this keeps the thread alive if one gets by.
            let c_name = std::ffi::CString::new(name.as_str())
                .map_err(|_| open_err(&name, "the name contains a NUL byte"))?;
            let pcm =
                PCM::open(&c_name, Direction::Capture, true).map_err(|e| open_err(&name, e))?;
            let neg = configure(&pcm, cfg, mmap, &name)?;
            Ok((pcm, neg))
        };
        let (pcm, neg) = match cfg.access {
            AccessMode::Mmap => try_open(true)?,
            AccessMode::Rw => try_open(false)?,
            AccessMode::Auto => match try_open(true) {
                Ok(v) => v,
                Err(_) => try_open(false)?,
            },
        };
        if neg.channels > 0 && cfg.channel >= neg.channels as i32 {
            return Err(open_err(
                &name,
                format!(
                    "audio.channel = {} but the device opened with {} channel(s)",
                    cfg.channel, neg.channels
                ),
            ));
        }
        // Wake once per block (a period), with time stamps from the
        // monotonic clock when the device gives them.
        if let Ok(swp) = pcm.sw_params_current() {
            let _ = swp.set_avail_min(cfg.block_frames as alsa::pcm::Frames);
            let _ = swp.set_tstamp_mode(true);
            let _ = swp.set_tstamp_type(TstampType::Monotonic);
            let _ = pcm.sw_params(&swp);
        }
        let dump = describe(&pcm);
        let clocked = has_clock(&dump);
        let mut fds = vec![libc::pollfd {
            fd: stop_fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        fds.extend(
            pcm.get()
                .map_err(|e| open_err(&name, format!("poll descriptors: {e}")))?,
        );
        pcm.prepare()
            .map_err(|e| open_err(&name, format!("prepare: {e}")))?;
        pcm.start()
            .map_err(|e| open_err(&name, format!("start: {e}")))?;
        let frame_bytes = bytes_per_sample(neg.format) * neg.channels as usize;
        let block_ms = (cfg.block_frames as f64 * 1000.0 / neg.rate as f64).ceil() as i32;
        Ok(AlsaSource {
            name,
            pcm,
            neg,
            channel: cfg.channel,
            block_frames: cfg.block_frames as usize,
            frame_bytes,
            clocked,
            fds,
            bytes: vec![0; frame_bytes * cfg.block_frames as usize],
            timeout_ms: (4 * block_ms).max(20),
            woke_short: false,
            last_block_ns: crate::rt::now_ns(),
            awake_ns: crate::rt::now_ns(),
            flowing: false,
            hw: hardware(&dump)
                .into_iter()
                .map(|h| HwDevice {
                    id: card_id(h.card),
                    ..h
                })
                .collect(),
        })
    }

    /// Sample rate as opened.
    pub fn rate(&self) -> u32 {
        self.neg.rate
    }

    /// Whether mmap access is in use.
    pub fn is_mmap(&self) -> bool {
        self.neg.mmap
    }

    fn gone(&self, e: impl ToString) -> CaptureError {
        CaptureError::Gone {
            device: self.name.clone(),
            reason: e.to_string(),
        }
    }

    /// Recover from an error returned by alsa-lib.
    fn recover(&mut self, err: alsa::Error) -> Result<ReadOutcome, CaptureError> {
        // Restarted after an overrun or a suspend (also what a stopped
        // process finds when it runs again): the silence is timed from
        // the restart, with the first block's allowance.
        self.last_block_ns = crate::rt::now_ns();
        self.flowing = false;
        match err.errno() {
            libc::EPIPE => {
                self.restart().map_err(|e| self.gone(e))?;
                Ok(ReadOutcome::Xrun)
            }
            libc::ESTRPIPE => {
                for _ in 0..100 {
                    match self.pcm.resume() {
                        Ok(()) => return Ok(ReadOutcome::Suspend),
                        Err(e) if e.errno() == libc::EAGAIN => {
                            std::thread::sleep(std::time::Duration::from_millis(10))
                        }
                        Err(_) => break,
                    }
                }
                self.restart().map_err(|e| self.gone(e))?;
                Ok(ReadOutcome::Suspend)
            }
            _ => Err(self.gone(err)),
        }
    }

    fn restart(&self) -> alsa::Result<()> {
        self.pcm.prepare()?;
        self.pcm.start()
    }

    /// Wait for frames or the stop event. Returns false when stopping.
    fn wait(&mut self) -> Result<bool, alsa::Error> {
        for f in self.fds.iter_mut() {
            f.revents = 0;
        }
        // SAFETY: `fds` is a valid, initialised array of pollfd of the given length.
        let r = unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                self.timeout_ms,
            )
        };
        if r < 0 {
            return Ok(true); // EINTR: just try again
        }
        if self.fds[0].revents & libc::POLLIN != 0 {
            return Ok(false);
        }
        if r == 0 {
            // Nothing for several periods: ask the state, which reports a
            // disconnected or broken device.
            match self.pcm.state() {
                State::Disconnected => return Err(alsa::Error::new("snd_pcm_state", libc::ENODEV)),
                State::XRun => return Err(alsa::Error::new("snd_pcm_state", libc::EPIPE)),
                State::Suspended => return Err(alsa::Error::new("snd_pcm_state", libc::ESTRPIPE)),
                State::Prepared | State::Setup => {
                    let _ = self.pcm.start();
                }
                _ => {}
            }
            return Ok(true);
        }
        let flags = self.pcm.revents(&self.fds[1..])?;
        if flags.contains(alsa::poll::Flags::ERR) {
            match self.pcm.state() {
                State::XRun => return Err(alsa::Error::new("poll", libc::EPIPE)),
                State::Suspended => return Err(alsa::Error::new("poll", libc::ESTRPIPE)),
                State::Disconnected => return Err(alsa::Error::new("poll", libc::ENODEV)),
                _ => {}
            }
        }
        Ok(true)
    }

    /// Notes that the read loop runs now. It never pauses for long (its
    /// polls time out after a few blocks, its sleeps after 20 ms): a gap
    /// of [`FROZEN_NS`] beyond the poll's timeout means this process was not running (SIGSTOP, a
    /// frozen cgroup, a paused VM, a debugger). The device did not stop
    /// meanwhile: its silence is timed from now. (A 3 s SIGSTOP made a
    /// healthy device look stalled and reopened it.) Returns the time now.
    fn note_awake(&mut self) -> u64 {
        let now = crate::rt::now_ns();
        // A poll may take its whole timeout (a second and more with large
        // blocks at a low rate): only what goes beyond it counts.
        let frozen = self.timeout_ms.max(0) as u64 * 1_000_000 + FROZEN_NS;
        if now.saturating_sub(self.awake_ns) > frozen {
            self.last_block_ns = now;
        }
        self.awake_ns = now;
        now
    }

    /// The device as gone when it has stalled ([`Self::stalled`]).
    fn check_stall(&mut self) -> Result<(), CaptureError> {
        let now = self.note_awake();
        match self.stalled(now) {
            Some(quiet_ns) => Err(self.gone(format!(
                "it says it runs but delivered nothing for {:.1} s",
                quiet_ns as f64 / 1e9
            ))),
            None => Ok(()),
        }
    }

    /// How long a clocked device has delivered no block, when that is longer
    /// than [`STALL_NS`] ([`FIRST_BLOCK_NS`] after an open). A device
    /// without a clock delivers as fast as it is read, or nothing (a file
    /// at its end): never stalled. `now`: the monotonic clock now.
    fn stalled(&self, now: u64) -> Option<u64> {
        if !self.clocked {
            return None;
        }
        let ns = |frames: usize| frames as u64 * 1_000_000_000 / self.neg.rate.max(1) as u64;
        let limit = if self.flowing {
            STALL_NS
        } else {
            FIRST_BLOCK_NS
        };
        // A device delivers a period at a time: one whose period is longer
        // than the limit (JACK at 4 kHz with 8192-frame periods: 2.05 s)
        // was reopened after every period.
        let limit = limit
            .max(STALL_BLOCKS * ns(self.block_frames))
            .max(2 * ns(self.neg.period as usize));
        let quiet = now.saturating_sub(self.last_block_ns);
        (quiet > limit).then_some(quiet)
    }

    /// Sleep for the time `missing` frames take to arrive (bounded), after a
    /// wake-up that did not bring a whole block.
    fn sleep_for(&self, missing: usize) {
        let ns = missing as u64 * 1_000_000_000 / self.neg.rate.max(1) as u64;
        std::thread::sleep(std::time::Duration::from_nanos(
            ns.clamp(100_000, 20_000_000),
        ));
    }

    /// Copy up to `want` frames into `out` (mono). Returns frames read.
    fn take(&mut self, want: usize, out: &mut [f32]) -> alsa::Result<usize> {
        let (format, channels, channel, fb) = (
            self.neg.format,
            self.neg.channels as usize,
            self.channel,
            self.frame_bytes,
        );
        if self.neg.mmap {
            let io = self.pcm.io_bytes();
            io.mmap(want, |buf| {
                let frames = (buf.len() / fb).min(want);
                to_mono(&buf[..frames * fb], format, channels, channel, out)
            })
        } else {
            let io = self.pcm.io_bytes();
            let got = io.readi(&mut self.bytes[..want * fb])?;
            Ok(to_mono(
                &self.bytes[..got * fb],
                format,
                channels,
                channel,
                out,
            ))
        }
    }

    /// Capture time of the newest frame taken, from the device time stamp
    /// when there is one, else `now` (the monotonic clock); frames still
    /// waiting in the buffer were captured after it.
    fn stamp(&self, now: u64) -> u64 {
        if !self.clocked {
            return now;
        }
        let Ok(status) = self.pcm.status() else {
            return now;
        };
        let ts = status.get_htstamp();
        let waiting = status.get_avail().max(0) as u64;
        let behind = waiting * 1_000_000_000 / self.neg.rate.max(1) as u64;
        let t = if ts.tv_sec > 0 {
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        } else {
            now
        };
        // Never in the future, never absurdly old (a bogus stamp).
        t.min(now)
            .saturating_sub(behind)
            .max(now.saturating_sub(1_000_000_000))
    }
}

impl Source for AlsaSource {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: self.name.clone(),
            format: format_name(self.neg.format).into(),
            access: if self.neg.mmap { "mmap" } else { "rw" }.into(),
            rate: self.neg.rate,
            channels: self.neg.channels,
            period: self.neg.period,
            buffer: self.neg.buffer,
            clocked: self.clocked,
            hw: self.hw.clone(),
        }
    }

    fn clocked(&self) -> bool {
        self.clocked
    }

    fn read(&mut self, block: &mut Block) -> Result<ReadOutcome, CaptureError> {
        let n = self.block_frames;
        self.note_awake();
        // Wait until a whole block is there; never take part of one.
        loop {
            let avail = match self.pcm.avail() {
                Ok(a) => a.max(0) as usize,
                Err(e) if is_transient(&e) => 0,
                Err(e) => return self.recover(e),
            };
            if avail >= n {
                self.woke_short = false;
                break;
            }
            if self.woke_short {
                // The last poll said ready but the block is still short:
                // do not poll again at once (that would spin).
                self.sleep_for(n - avail);
            }
            match self.wait() {
                Ok(true) => self.woke_short = true,
                Ok(false) => return Ok(ReadOutcome::Stopped),
                Err(e) => return self.recover(e),
            }
            self.check_stall()?;
        }
        // mmap hands out contiguous areas: a block that wraps around the end
        // of the ring buffer comes in two parts.
        let mut filled = 0;
        while filled < n {
            match self.take(n - filled, &mut block.samples[filled..n]) {
                Ok(got) if got > 0 => {
                    filled += got;
                    continue;
                }
                Ok(_) => {}
                Err(e) if is_transient(&e) => {}
                Err(e) => return self.recover(e),
            }
            // A plugin that said "available" and then had nothing: wait as
            // for a short block instead of retrying at once.
            self.sleep_for(n - filled);
            match self.wait() {
                Ok(true) => {}
                Ok(false) => return Ok(ReadOutcome::Stopped),
                Err(e) => return self.recover(e),
            }
            self.check_stall()?;
        }
        block.len = n as u32;
        block.sample_rate = self.neg.rate;
        let now = crate::rt::now_ns();
        block.t_capture_ns = self.stamp(now);
        self.last_block_ns = now;
        self.flowing = true;
        Ok(ReadOutcome::Block)
    }
}
