//! The tape: the last N seconds of the input, in the sample format the
//! recordings use, in one preallocated ring. It is the replay buffer (a save
//! copies its last N seconds to a file) and the recorder's buffer (a
//! recording follows its head and may fall up to the slack behind, so a
//! slow disk costs nothing until it is that far behind).
//!
//! Positions are absolute frame counts since the monitor started. A
//! segment is a stretch of one rate and one sample format; a device switch
//! to another rate or format starts a new one and forgets the old.
//!
//! Written by `p4-monitor`, read by `p4-record`, each holding the lock only
//! to copy (a block's worth in, at most a second's worth out).

use crate::config::RecordFormat;
use crate::stats::DeviceInfo;
use crate::types::Block;

/// How samples are stored (on the tape and in the WAV file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKind {
    /// 16-bit PCM.
    S16,
    /// 24-bit PCM.
    S24,
    /// 32-bit float.
    F32,
}

impl SampleKind {
    /// Bytes per sample.
    pub fn bytes(self) -> usize {
        match self {
            SampleKind::S16 => 2,
            SampleKind::S24 => 3,
            SampleKind::F32 => 4,
        }
    }

    /// Bits per sample.
    pub fn bits(self) -> u16 {
        match self {
            SampleKind::S16 => 16,
            SampleKind::S24 => 24,
            SampleKind::F32 => 32,
        }
    }

    /// The kind `format` asks for, for input from `device` with
    /// `audio.channel` = `channel`. `auto` keeps every sample the pipeline
    /// saw exactly: 16 or 24 bit when one 16- or 24-bit channel is captured
    /// (the pipeline's f32 holds those exactly), float otherwise (32-bit
    /// devices, float devices, a mix of several channels).
    pub fn choose(format: RecordFormat, device: &DeviceInfo, channel: i32) -> SampleKind {
        match format {
            RecordFormat::S16 => SampleKind::S16,
            RecordFormat::S24 => SampleKind::S24,
            RecordFormat::F32 => SampleKind::F32,
            RecordFormat::Auto => {
                let single = device.channels <= 1 || channel >= 0;
                match device.format.as_str() {
                    "S16_LE" if single => SampleKind::S16,
                    "S24_3LE" | "S24_LE" if single => SampleKind::S24,
                    _ => SampleKind::F32,
                }
            }
        }
    }

    /// Store `x` at `out[..self.bytes()]`, little endian.
    #[inline]
    pub fn encode(self, x: f32, out: &mut [u8]) {
        match self {
            SampleKind::S16 => {
                let v = (x * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
                out[..2].copy_from_slice(&v.to_le_bytes());
            }
            SampleKind::S24 => {
                let v = (x * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32;
                out[..3].copy_from_slice(&v.to_le_bytes()[..3]);
            }
            SampleKind::F32 => out[..4].copy_from_slice(&x.to_le_bytes()),
        }
    }

    /// The integer (or float bits as f32) stored at `b`.
    #[inline]
    pub fn decode_int(self, b: &[u8]) -> i32 {
        match self {
            SampleKind::S16 => i16::from_le_bytes([b[0], b[1]]) as i32,
            SampleKind::S24 => i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8,
            SampleKind::F32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        }
    }
}

/// A stretch of one rate and one sample format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Changes with every new segment.
    pub id: u64,
    /// Sample rate.
    pub rate: u32,
    /// Sample format.
    pub kind: SampleKind,
    /// Absolute frame at which it starts.
    pub start: u64,
}

/// Most bytes the tape holds, whatever the rate and format asked of it:
/// `record.replay-s` is seconds, and a 768 kHz float input would otherwise
/// take 3 MB of memory a second of replay (1.8 GB for 600 s). 64 MiB is
/// 699 s at 48 kHz 16-bit, 116 s at 192 kHz 24-bit, 21.8 s at 768 kHz float.
pub const MAX_TAPE_BYTES: usize = 64 << 20;

/// The ring.
pub struct Tape {
    /// Seconds it holds.
    seconds: f64,
    buf: Vec<u8>,
    /// Capacity in frames of the current segment's format.
    cap: u64,
    head: u64,
    seg: Option<Segment>,
    next_id: u64,
    /// A frame and its capture time (CLOCK_MONOTONIC ns), from the latest block.
    anchor: (u64, u64),
}

impl Tape {
    /// A tape that will hold `seconds` (the buffer is made by the first
    /// [`Tape::begin`]).
    pub fn new(seconds: f64) -> Self {
        Tape {
            seconds,
            buf: Vec::new(),
            cap: 0,
            head: 0,
            seg: None,
            next_id: 1,
            anchor: (0, 0),
        }
    }

    /// Seconds it holds at most: those asked for, or fewer where
    /// [`MAX_TAPE_BYTES`] holds fewer at the current segment's rate and
    /// format.
    pub fn capacity_s(&self) -> f64 {
        match self.seg {
            Some(s) if s.rate > 0 => (self.cap as f64 / s.rate as f64).min(self.seconds),
            _ => self.seconds,
        }
    }

    /// Start a segment of `rate` and `kind`. Allocates when the buffer's
    /// size in bytes changes (a device of another rate or format).
    pub fn begin(&mut self, rate: u32, kind: SampleKind) {
        let cap = ((self.seconds * rate as f64).ceil() as u64)
            .min((MAX_TAPE_BYTES / kind.bytes()) as u64);
        let bytes = cap as usize * kind.bytes();
        if self.buf.len() != bytes {
            // Free the old buffer before making the new one.
            self.buf = Vec::new();
            self.buf = vec![0u8; bytes];
        }
        self.cap = cap;
        self.seg = Some(Segment {
            id: self.next_id,
            rate,
            kind,
            start: self.head,
        });
        self.next_id += 1;
    }

    /// The current segment.
    pub fn segment(&self) -> Option<Segment> {
        self.seg
    }

    /// The frame the next block will be written at.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The oldest frame still held.
    pub fn oldest(&self) -> u64 {
        match self.seg {
            Some(s) => s.start.max(self.head.saturating_sub(self.cap)),
            None => self.head,
        }
    }

    /// Append a block (of the current segment's rate).
    pub fn append(&mut self, block: &Block) {
        let Some(seg) = self.seg else { return };
        if self.cap == 0 {
            return;
        }
        let bps = seg.kind.bytes();
        for &x in block.samples() {
            let at = (self.head % self.cap) as usize * bps;
            seg.kind.encode(x, &mut self.buf[at..at + bps]);
            self.head += 1;
        }
        // The block's time stamp is that of its last frame.
        self.anchor = (self.head - 1, block.t_capture_ns);
    }

    /// Capture time (CLOCK_MONOTONIC ns) of `frame` of the current segment,
    /// counted back from the latest block.
    pub fn time_of(&self, frame: u64) -> u64 {
        let rate = self.seg.map(|s| s.rate).unwrap_or(48_000).max(1) as f64;
        let back = self.anchor.0.saturating_sub(frame) as f64 / rate;
        self.anchor.1.saturating_sub((back * 1e9) as u64)
    }

    /// Copy frames from `from` (at least [`Tape::oldest`]) into `out`, as
    /// many as fit and exist; returns the number of frames.
    pub fn read(&self, from: u64, out: &mut [u8]) -> usize {
        let Some(seg) = self.seg else { return 0 };
        if from < self.oldest() || from >= self.head {
            return 0;
        }
        let bps = seg.kind.bytes();
        let n = ((self.head - from) as usize).min(out.len() / bps);
        let mut done = 0;
        while done < n {
            let at = ((from + done as u64) % self.cap) as usize;
            let run = (n - done).min(self.cap as usize - at);
            out[done * bps..(done + run) * bps]
                .copy_from_slice(&self.buf[at * bps..(at + run) * bps]);
            done += run;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tape_never_takes_more_than_its_byte_cap() {
        let mut t = Tape::new(605.0);
        t.begin(48_000, SampleKind::S16);
        assert_eq!(t.capacity_s(), 605.0);
        t.begin(768_000, SampleKind::F32);
        assert!(t.buf.len() <= MAX_TAPE_BYTES);
        assert!((t.capacity_s() - 21.845).abs() < 0.01, "{}", t.capacity_s());
    }

    fn block(rate: u32, values: &[f32], t: u64) -> Block {
        let mut b = Block::zeroed();
        b.sample_rate = rate;
        b.len = values.len() as u32;
        b.samples[..values.len()].copy_from_slice(values);
        b.t_capture_ns = t;
        b
    }

    #[test]
    fn sixteen_and_twentyfour_bit_samples_survive_exactly() {
        for (kind, scale) in [(SampleKind::S16, 32_768.0), (SampleKind::S24, 8_388_608.0)] {
            let max = scale as i32 - 1;
            for v in [-(scale as i32), -1, 0, 1, 12_345, max] {
                let x = v as f32 / scale;
                let mut b = [0u8; 4];
                kind.encode(x, &mut b);
                assert_eq!(kind.decode_int(&b), v, "{kind:?} {v}");
            }
        }
        let mut b = [0u8; 4];
        SampleKind::F32.encode(0.1, &mut b);
        assert_eq!(f32::from_bits(SampleKind::F32.decode_int(&b) as u32), 0.1);
    }

    #[test]
    fn auto_keeps_what_the_device_gives() {
        let dev = |format: &str, channels| DeviceInfo {
            format: format.into(),
            channels,
            ..Default::default()
        };
        let a = RecordFormat::Auto;
        assert_eq!(
            SampleKind::choose(a, &dev("S16_LE", 1), -1),
            SampleKind::S16
        );
        assert_eq!(SampleKind::choose(a, &dev("S16_LE", 2), 0), SampleKind::S16);
        assert_eq!(
            SampleKind::choose(a, &dev("S16_LE", 2), -1),
            SampleKind::F32
        );
        assert_eq!(
            SampleKind::choose(a, &dev("S24_3LE", 1), -1),
            SampleKind::S24
        );
        assert_eq!(
            SampleKind::choose(a, &dev("S32_LE", 1), -1),
            SampleKind::F32
        );
        assert_eq!(
            SampleKind::choose(RecordFormat::S24, &dev("S16_LE", 1), -1),
            SampleKind::S24
        );
    }

    #[test]
    fn the_ring_keeps_the_last_seconds_and_reads_across_the_wrap() {
        let mut t = Tape::new(1.0);
        t.begin(10, SampleKind::S16);
        for k in 0..5 {
            let v: Vec<f32> = (0..3).map(|i| (k * 3 + i) as f32 / 32_768.0).collect();
            t.append(&block(10, &v, 1_000_000_000 + k as u64));
        }
        assert_eq!(t.head(), 15);
        assert_eq!(t.oldest(), 5);
        let mut out = [0u8; 64];
        assert_eq!(t.read(4, &mut out), 0, "overwritten frames are not read");
        let n = t.read(5, &mut out);
        assert_eq!(n, 10);
        let got: Vec<i32> = (0..n)
            .map(|i| SampleKind::S16.decode_int(&out[2 * i..]))
            .collect();
        assert_eq!(got, (5..15).collect::<Vec<i32>>());
        // Time stamps count back from the latest block (10 frames per s).
        assert_eq!(t.time_of(14), 1_000_000_004);
        assert_eq!(t.time_of(4), 1_000_000_004 - 1_000_000_000);
    }

    #[test]
    fn a_new_segment_forgets_the_old_one() {
        let mut t = Tape::new(1.0);
        t.begin(10, SampleKind::S16);
        t.append(&block(10, &[0.0; 4], 0));
        let first = t.segment().unwrap();
        t.begin(20, SampleKind::F32);
        let second = t.segment().unwrap();
        assert_ne!(first.id, second.id);
        assert_eq!(t.oldest(), 4);
        assert_eq!(t.read(0, &mut [0u8; 16]), 0);
        t.append(&block(20, &[0.5; 4], 0));
        let mut out = [0u8; 16];
        assert_eq!(t.read(4, &mut out), 4);
        assert_eq!(f32::from_le_bytes(out[..4].try_into().unwrap()), 0.5);
    }
}
