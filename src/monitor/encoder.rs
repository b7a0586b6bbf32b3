//! The captured mono signal as Opus, once per preset in use.
//!
//! Blocks of any length are gathered into frames of `monitor.frame-ms`;
//! each complete frame is encoded once for every preset someone listens to
//! (the broadcaster shares each packet among that preset's listeners). Opus
//! takes 8, 12, 16, 24 and 48 kHz; any other capture rate (44.1, 96 kHz...)
//! is resampled to 48 kHz first with rubato's FFT resampler. Encoders are
//! made when a preset gets its first listener and dropped with its last
//! one; with no listener nothing is gathered.
//!
//! Runs on `p4-monitor` (not a real-time thread). The steady state does not
//! allocate: buffers are sized when the rate changes.

use super::packet::{AudioPacket, MAX_PACKET};
use super::Preset;
use crate::types::Block;
use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Resampler, SincInterpolationParameters, WindowFunction,
};
use std::time::Instant;

/// Most a frame time anchor moves back per block, ns (see `push`).
const SLEW_NS: u64 = 500_000;

/// Rates libopus encodes from directly.
const OPUS_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// Why a stream could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// libopus refused the settings.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// rubato refused the rates.
    #[error("resampler {from} Hz -> 48000 Hz: {reason}")]
    Resampler {
        /// Capture rate.
        from: u32,
        /// What rubato said.
        reason: String,
    },
}

struct Resample {
    /// rubato's FFT resampler where the rates' ratio is a small fraction
    /// (44.1 → 48 kHz: 147/160), its sinc resampler where it is not.
    fft: Box<dyn Resampler<f32>>,
    /// Delay of the resampler, in ns of output time.
    delay_ns: u64,
    /// Input frames the resampler has taken beyond what its output so far
    /// stands for (`taken − given · in_rate / 48000`). The FFT resampler
    /// takes whole chunks (147 frames at 11 025 Hz for 640 out), so a
    /// frame's first output sample stands for input this far before
    /// `pending_t0`; stamps taken at `pending_t0` alone stepped 13.3 and
    /// 26.7 ms instead of 20 at 11 025 Hz and repeated at 47 952 Hz.
    ahead_in: f64,
}

/// Frames of one capture stream, encoded for the presets in use.
pub struct OpusStreams {
    frame_ms: u32,
    complexity: i32,
    in_rate: u32,
    enc_rate: u32,
    /// Frame length at `enc_rate`.
    frame: usize,
    resample: Option<Resample>,
    /// Input not yet encoded, at `in_rate`.
    pending: Vec<f32>,
    /// Capture time of `pending[0]`.
    pending_t0: u64,
    /// One frame at `enc_rate` (resampler output).
    out: Vec<f32>,
    encoders: [Option<opus::Encoder>; 4],
    seq: [u32; 4],
    packet: AudioPacket,
    /// ns spent encoding since start.
    pub encode_ns: u64,
}

impl OpusStreams {
    /// Streams of `frame_ms` (10 or 20) at libopus `complexity` (0-10).
    pub fn new(frame_ms: u32, complexity: u32) -> Self {
        OpusStreams {
            frame_ms,
            complexity: complexity.min(10) as i32,
            in_rate: 0,
            enc_rate: 0,
            frame: 0,
            resample: None,
            pending: Vec::new(),
            pending_t0: 0,
            out: Vec::new(),
            encoders: [None, None, None, None],
            seq: [0; 4],
            packet: AudioPacket {
                preset: Preset::Medium,
                seq: 0,
                t_capture_ns: 0,
                frame_48k: 0,
                rate: 0,
                len: 0,
                data: [0; MAX_PACKET],
            },
            encode_ns: 0,
        }
    }

    /// The rate the encoders run at (0 before the first block).
    pub fn encoder_rate(&self) -> u32 {
        self.enc_rate
    }

    /// Set up for capture at `rate` (allocates; only when the rate changes).
    fn configure(&mut self, rate: u32) -> Result<(), EncoderError> {
        self.in_rate = rate;
        self.encoders = [None, None, None, None];
        if OPUS_RATES.contains(&rate) {
            self.enc_rate = rate;
            self.resample = None;
        } else {
            self.enc_rate = 48_000;
            let frame48 = (48 * self.frame_ms) as usize;
            let err = |e: &dyn std::fmt::Display| EncoderError::Resampler {
                from: rate,
                reason: e.to_string(),
            };
            // The FFT resampler works in chunks of `rate / gcd(rate,
            // 48000)` frames: 147 at 44.1 kHz, but all 44 101 at 44 101 Hz
            // (an odd WAV file or device), a second of input per packet,
            // more than `pending` holds: the stream stayed silent. The
            // sinc resampler takes any ratio, frame by frame. Which one is
            // decided before either is made: an FFT resampler of a
            // second's length is not made only to be dropped (at
            // 767 999 Hz that took 0.23 s, in which the capture thread's
            // blocks for the tape were lost, and 33-61 MiB that were never
            // given back).
            let fft = if fft_chunks_fit(rate) {
                Some(
                    Fft::<f32>::new(rate as usize, 48_000, frame48, 1, FixedSync::Output)
                        .map_err(|e| err(&e))?,
                )
            } else {
                None
            };
            let fft: Box<dyn Resampler<f32>> = if let Some(fft) =
                fft.filter(|f| f.input_frames_max() <= rate as usize / 10)
            {
                Box::new(fft)
            } else {
                let sinc = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2);
                Box::new(
                    Async::<f32>::new_sinc(
                        48_000.0 / rate as f64,
                        1.0,
                        &sinc,
                        frame48,
                        1,
                        FixedAsync::Output,
                    )
                    .map_err(|e| err(&e))?,
                )
            };
            let delay_ns = fft.output_delay() as u64 * 1_000_000_000 / 48_000;
            self.resample = Some(Resample {
                fft,
                delay_ns,
                ahead_in: 0.0,
            });
        }
        self.frame = (self.enc_rate / 1000 * self.frame_ms) as usize;
        // Room for a frame's worth of input plus the largest block.
        let need = self
            .resample
            .as_ref()
            .map_or(0, |r| r.fft.input_frames_max());
        let cap = (rate as usize / 10).max(need) + crate::types::MAX_BLOCK_FRAMES;
        self.pending = Vec::with_capacity(cap);
        self.pending_t0 = 0;
        self.out = vec![0.0; self.frame];
        Ok(())
    }

    /// Make and drop encoders so that exactly the presets in `wanted` have one.
    fn sync_encoders(&mut self, wanted: u8) -> Result<(), EncoderError> {
        for p in Preset::ALL {
            let slot = &mut self.encoders[p as usize];
            match (wanted & p.bit() != 0, slot.is_some()) {
                (true, false) => {
                    let mut e = opus::Encoder::new(
                        self.enc_rate,
                        opus::Channels::Mono,
                        opus::Application::Audio,
                    )?;
                    e.set_bitrate(opus::Bitrate::Bits(p.bitrate()))?;
                    e.set_complexity(self.complexity)?;
                    e.set_vbr(true)?;
                    e.set_signal(opus::Signal::Music)?;
                    *slot = Some(e);
                }
                (false, true) => *slot = None,
                _ => {}
            }
        }
        Ok(())
    }

    /// Take one captured block; call `emit` for every packet completed.
    pub fn push(
        &mut self,
        block: &Block,
        wanted: u8,
        emit: &mut dyn FnMut(&AudioPacket),
    ) -> Result<(), EncoderError> {
        if block.sample_rate == 0 || block.len == 0 {
            return Ok(());
        }
        if block.sample_rate != self.in_rate {
            self.configure(block.sample_rate)?;
        }
        self.sync_encoders(wanted)?;
        if wanted == 0 {
            self.pending.clear();
            self.pending_t0 = 0;
            return Ok(());
        }
        let ns_per_frame = 1e9 / self.in_rate as f64;
        let t_first = block
            .t_capture_ns
            .saturating_sub(((block.len - 1) as f64 * ns_per_frame) as u64);
        // Frame times follow the sample count, anchored on the earliest
        // stamp seen: a stamp is taken after its samples were captured, so a
        // late one (a paced source that woke up late) says nothing and is
        // ignored; an earlier one than expected pulls the anchor back,
        // slewed by at most SLEW_NS per block so that stamps never step
        // back (an anchor taken on a late block, clock drift); one more than
        // two frames later than expected is a gap (an xrun, a dropped block)
        // and re-anchors forward.
        let frame_ns = u64::from(self.frame_ms) * 1_000_000;
        let implied = t_first.saturating_sub((self.pending.len() as f64 * ns_per_frame) as u64);
        if self.pending_t0 == 0 || implied > self.pending_t0 + 2 * frame_ns {
            self.pending_t0 = implied;
        } else if implied < self.pending_t0 {
            self.pending_t0 -= (self.pending_t0 - implied).min(SLEW_NS);
        }
        let room = self.pending.capacity() - self.pending.len();
        let samples = block.samples();
        if samples.len() > room {
            // Cannot happen while frames are taken as they complete; never
            // grow the buffer for it.
            self.pending.clear();
            self.pending_t0 = t_first;
        }
        self.pending.extend_from_slice(samples);
        self.encode_ready(emit)
    }

    /// Encode every complete frame in `pending`.
    fn encode_ready(&mut self, emit: &mut dyn FnMut(&AudioPacket)) -> Result<(), EncoderError> {
        loop {
            let ns_per_in = 1e9 / self.in_rate.max(1) as f64;
            let (consumed, back_ns) = match &mut self.resample {
                None => {
                    if self.pending.len() < self.frame {
                        return Ok(());
                    }
                    self.out.copy_from_slice(&self.pending[..self.frame]);
                    (self.frame, 0)
                }
                Some(r) => {
                    let need = r.fft.input_frames_next();
                    if self.pending.len() < need {
                        return Ok(());
                    }
                    let input =
                        InterleavedSlice::new(&self.pending[..need], 1, need).map_err(|e| {
                            EncoderError::Resampler {
                                from: self.in_rate,
                                reason: e.to_string(),
                            }
                        })?;
                    let frame = self.out.len();
                    let mut output = InterleavedSlice::new_mut(&mut self.out[..], 1, frame)
                        .map_err(|e| EncoderError::Resampler {
                            from: self.in_rate,
                            reason: e.to_string(),
                        })?;
                    let (used, _) = r
                        .fft
                        .process_into_buffer(&input, &mut output, None)
                        .map_err(|e| EncoderError::Resampler {
                            from: self.in_rate,
                            reason: e.to_string(),
                        })?;
                    // Where this frame's output starts, in input before
                    // `pending_t0`: what was taken ahead before this call.
                    let back_ns = r.delay_ns + (r.ahead_in.max(0.0) * ns_per_in) as u64;
                    r.ahead_in += used as f64 - frame as f64 * self.in_rate as f64 / 48_000.0;
                    (used, back_ns)
                }
            };
            let t_frame = self.pending_t0.saturating_sub(back_ns);
            self.encode_frame(t_frame, emit)?;
            self.pending.drain(..consumed);
            self.pending_t0 += (consumed as f64 * 1e9 / self.in_rate as f64) as u64;
        }
    }

    fn encode_frame(
        &mut self,
        t_capture_ns: u64,
        emit: &mut dyn FnMut(&AudioPacket),
    ) -> Result<(), EncoderError> {
        for p in Preset::ALL {
            let Some(enc) = self.encoders[p as usize].as_mut() else {
                continue;
            };
            let t0 = Instant::now();
            let n = enc.encode_float(&self.out, &mut self.packet.data)?;
            self.encode_ns += t0.elapsed().as_nanos() as u64;
            let pk = &mut self.packet;
            pk.preset = p;
            pk.seq = self.seq[p as usize];
            pk.t_capture_ns = t_capture_ns;
            pk.frame_48k = (48 * self.frame_ms) as u16;
            pk.rate = self.enc_rate;
            pk.len = n as u16;
            self.seq[p as usize] = self.seq[p as usize].wrapping_add(1);
            emit(&self.packet);
        }
        Ok(())
    }
}

/// Whether rubato's FFT resampler from `rate` to 48 kHz works in chunks of
/// at most a tenth of a second of input: its chunks are multiples of
/// `rate / gcd(rate, 48000)` frames.
fn fft_chunks_fit(rate: u32) -> bool {
    rate / gcd(rate, 48_000) <= rate / 10
}

/// Greatest common divisor.
fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone_blocks(rate: u32, hz: f32, seconds: f32, block: usize) -> Vec<Block> {
        let n = (rate as f32 * seconds) as usize;
        let mut out = Vec::new();
        let mut pos = 0;
        while pos + block <= n {
            let mut b = Block::zeroed();
            b.sample_rate = rate;
            b.len = block as u32;
            for i in 0..block {
                let t = (pos + i) as f32 / rate as f32;
                b.samples[i] = 0.5 * (2.0 * std::f32::consts::PI * hz * t).sin();
            }
            b.t_capture_ns = ((pos + block - 1) as f64 * 1e9 / rate as f64) as u64 + 1_000_000_000;
            out.push(b);
            pos += block;
        }
        out
    }

    /// Decodes with libopus's decoder (the same library, but the other half
    /// of it; the end-to-end tests use independent decoders) and returns the
    /// strongest frequency by zero crossings.
    fn decoded_tone(packets: &[Vec<u8>]) -> f32 {
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = Vec::new();
        let mut buf = [0f32; 5760];
        for p in packets {
            let n = dec.decode_float(p, &mut buf, false).unwrap();
            pcm.extend_from_slice(&buf[..n]);
        }
        let tail = &pcm[pcm.len() / 2..];
        let crossings = tail
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        crossings as f32 * 48_000.0 / tail.len() as f32
    }

    #[test]
    fn every_preset_in_use_gets_contiguous_packets_of_one_frame() {
        let mut s = OpusStreams::new(20, 5);
        let wanted = Preset::Low.bit() | Preset::Ultra.bit();
        let mut got: Vec<(Preset, u32, u64, Vec<u8>)> = Vec::new();
        for b in tone_blocks(48_000, 440.0, 1.0, 240) {
            s.push(&b, wanted, &mut |p| {
                got.push((p.preset, p.seq, p.t_capture_ns, p.opus().to_vec()))
            })
            .unwrap();
        }
        for preset in [Preset::Low, Preset::Ultra] {
            let seqs: Vec<u32> = got.iter().filter(|g| g.0 == preset).map(|g| g.1).collect();
            assert_eq!(seqs.len(), 50, "{preset:?}");
            assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
        }
        assert!(got.iter().all(|g| g.0 != Preset::Medium));
        // Frames are 20 ms apart in capture time.
        let t: Vec<u64> = got
            .iter()
            .filter(|g| g.0 == Preset::Low)
            .map(|g| g.2)
            .collect();
        assert!(t
            .windows(2)
            .all(|w| (w[1] - w[0]).abs_diff(20_000_000) < 1_000));
        let ultra: Vec<Vec<u8>> = got
            .iter()
            .filter(|g| g.0 == Preset::Ultra)
            .map(|g| g.3.clone())
            .collect();
        let low: usize = got
            .iter()
            .filter(|g| g.0 == Preset::Low)
            .map(|g| g.3.len())
            .sum();
        let high: usize = ultra.iter().map(|p| p.len()).sum();
        assert!(high > 4 * low, "ultra {high} bytes vs low {low}");
        assert!((decoded_tone(&ultra) - 440.0).abs() < 5.0);
    }

    #[test]
    fn a_rate_opus_does_not_take_is_resampled_to_48k() {
        let mut s = OpusStreams::new(20, 5);
        let mut got = Vec::new();
        for b in tone_blocks(44_100, 1000.0, 1.0, 441) {
            s.push(&b, Preset::High.bit(), &mut |p| {
                assert_eq!(p.rate, 48_000);
                got.push(p.opus().to_vec())
            })
            .unwrap();
        }
        assert_eq!(s.encoder_rate(), 48_000);
        assert!((48..=50).contains(&got.len()), "{}", got.len());
        assert!((decoded_tone(&got) - 1000.0).abs() < 5.0);
    }

    #[test]
    fn any_rate_is_resampled_not_only_small_fractions_of_48k() {
        // 44 101 Hz reduces to 44101/48000: rubato's FFT resampler would
        // want all 44 101 frames at once (the stream stayed silent).
        for (rate, block) in [
            (44_101, 256),
            (47_999, 256),
            (7_999, 64),
            (96_000, 1024),
            (767_999, 2048),
        ] {
            let mut s = OpusStreams::new(20, 5);
            let mut got = Vec::new();
            let mut t = Vec::new();
            for b in tone_blocks(rate, 1000.0, 1.0, block) {
                s.push(&b, Preset::High.bit(), &mut |p| {
                    got.push(p.opus().to_vec());
                    t.push(p.t_capture_ns);
                })
                .unwrap();
            }
            assert!(
                (45..=50).contains(&got.len()),
                "{rate} Hz: {} packets",
                got.len()
            );
            assert!((decoded_tone(&got) - 1000.0).abs() < 5.0, "{rate} Hz");
            assert!(t.windows(2).all(|w| w[1] > w[0]), "{rate} Hz");
        }
    }

    #[test]
    fn nobody_listening_costs_no_encoding() {
        let mut s = OpusStreams::new(20, 5);
        let mut n = 0;
        for b in tone_blocks(48_000, 440.0, 0.5, 256) {
            s.push(&b, 0, &mut |_| n += 1).unwrap();
        }
        assert_eq!(n, 0);
        assert_eq!(s.encode_ns, 0);
        assert!(s.pending.is_empty());
    }

    /// Tester n's F3: the FFT resampler was made before the choice, an
    /// FFT of a second's length at 767 999 Hz (0.23 s and 33-61 MiB, the
    /// capture's blocks for the tape lost meanwhile). The choice is now
    /// made from the rates alone; it agrees with what rubato makes.
    #[test]
    fn the_resampler_is_chosen_before_either_is_made() {
        for rate in [44_101, 47_999, 7_999, 767_999, 384_001, 1_001] {
            assert!(!fft_chunks_fit(rate), "{rate}");
        }
        for rate in [
            8_000, 11_025, 22_050, 32_000, 44_100, 47_952, 88_200, 96_000, 768_000,
        ] {
            assert!(fft_chunks_fit(rate), "{rate}");
        }
        let frame48 = 960;
        for rate in (1_000..60_000)
            .step_by(331)
            .chain([44_100, 47_952, 11_025, 176_400])
        {
            if OPUS_RATES.contains(&rate) {
                continue;
            }
            let fft =
                Fft::<f32>::new(rate as usize, 48_000, frame48, 1, FixedSync::Output).unwrap();
            assert_eq!(
                fft_chunks_fit(rate),
                fft.input_frames_max() <= rate as usize / 10,
                "{rate} Hz: rubato's chunk is {} frames",
                fft.input_frames_max()
            );
        }
    }

    /// Tester n's F5: on the FFT path, whose input chunks do not match a
    /// frame, stamps stepped 13.3/26.7 ms at 11 025 Hz and repeated at
    /// 47 952 Hz. Every rate's stamps now step by the frame (20 ms) within
    /// a tenth of a millisecond once the stream runs.
    #[test]
    fn frame_stamps_step_by_the_frame_at_every_rate() {
        for (rate, block) in [
            (11_025, 256),
            (47_952, 256),
            (44_100, 256),
            (22_050, 128),
            (44_101, 256),
            (8_000, 64),
            (96_000, 1024),
        ] {
            let mut s = OpusStreams::new(20, 5);
            let mut t = Vec::new();
            for b in tone_blocks(rate, 1000.0, 1.0, block) {
                s.push(&b, Preset::Low.bit(), &mut |p| t.push(p.t_capture_ns))
                    .unwrap();
            }
            let steps: Vec<i64> = t.windows(2).map(|w| w[1] as i64 - w[0] as i64).collect();
            assert!(
                steps[1..].iter().all(|d| (d - 20_000_000).abs() <= 100_000),
                "{rate} Hz: steps {:?}",
                steps
            );
        }
    }
}
