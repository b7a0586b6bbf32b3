//! Interleaved device samples → mono f32 in [-1, 1].
//!
//! Real-time safety: pure loops over slices, no allocation.

use crate::config::SampleFormat;

/// Bytes per sample of a (concrete) format.
pub fn bytes_per_sample(f: SampleFormat) -> usize {
    match f {
        SampleFormat::S16Le => 2,
        SampleFormat::S24_3Le => 3,
        SampleFormat::S24Le | SampleFormat::S32Le | SampleFormat::FloatLe | SampleFormat::Auto => 4,
    }
}

/// One sample of each format from its little-endian bytes, scaled to
/// [-1, 1]. Each is `inline(always)` and handed to [`convert`] as a
/// closure, so the format is matched once per buffer, not once per sample.
#[inline(always)]
fn s16(b: [u8; 2]) -> f32 {
    i16::from_le_bytes(b) as f32 / 32_768.0
}

#[inline(always)]
fn s24_3(b: [u8; 3]) -> f32 {
    // Sign-extend 24 bits by placing them in the top of an i32.
    let v = i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8;
    v as f32 / 8_388_608.0
}

#[inline(always)]
fn s24_in_4(b: [u8; 4]) -> f32 {
    // 24 bits in the low three bytes of four; the top byte is padding
    // (zero or a sign copy, depending on the codec), so it is ignored
    // and the value sign-extended from bit 23.
    s24_3([b[0], b[1], b[2]])
}

#[inline(always)]
fn s32(b: [u8; 4]) -> f32 {
    i32::from_le_bytes(b) as f32 / 2_147_483_648.0
}

/// Float samples below this magnitude (−600 dBFS, 400 dB under a 32-bit
/// converter's last bit) read 0. Near the subnormal range (1.2e-38) they
/// are silence to the ear but not to the CPU: every filter state and
/// product of them is subnormal, computed in microcode on x86 (`analyze`
/// at 22.05 kHz: 1e-36 noise 730–870× real time, 1e-33 noise 980–1050×).
/// Integer formats never come near it.
const FLOAT_FLOOR: f32 = 1.0e-30;

/// A float sample, clamped to [-1, 1]; NaN, infinities and anything below
/// [`FLOAT_FLOOR`] read 0.
#[inline(always)]
fn float(b: [u8; 4]) -> f32 {
    flush(f32::from_le_bytes(b)).clamp(-1.0, 1.0)
}

/// `v`, or 0 when it is not finite or below [`FLOAT_FLOOR`] (also the mean
/// of a few tiny channels).
#[inline(always)]
fn flush(v: f32) -> f32 {
    if v.abs() >= FLOAT_FLOOR && v.is_finite() {
        v
    } else {
        0.0
    }
}

/// Convert interleaved `bytes` (whole frames of `channels` samples) into
/// `out`, mixing all channels (`channel < 0`) or picking one. Returns the
/// number of frames written (limited by `out.len()`).
pub fn to_mono(
    bytes: &[u8],
    format: SampleFormat,
    channels: usize,
    channel: i32,
    out: &mut [f32],
) -> usize {
    match format {
        SampleFormat::S16Le => convert(bytes, channels, channel, out, s16),
        SampleFormat::S24_3Le => convert(bytes, channels, channel, out, s24_3),
        SampleFormat::S24Le => convert(bytes, channels, channel, out, s24_in_4),
        SampleFormat::S32Le => convert(bytes, channels, channel, out, s32),
        SampleFormat::FloatLe | SampleFormat::Auto => convert(bytes, channels, channel, out, float),
    }
}

/// [`to_mono`] for one sample format of `N` bytes.
#[inline(always)]
fn convert<const N: usize>(
    bytes: &[u8],
    channels: usize,
    channel: i32,
    out: &mut [f32],
    sample: impl Fn([u8; N]) -> f32,
) -> usize {
    let channels = channels.max(1);
    let frame_bytes = N * channels;
    let frames = (bytes.len() / frame_bytes).min(out.len());
    let frames_in = bytes[..frames * frame_bytes].chunks_exact(frame_bytes);
    let at = |frame: &[u8], c: usize| {
        let mut b = [0u8; N];
        b.copy_from_slice(&frame[c * N..(c + 1) * N]);
        sample(b)
    };
    if channel >= 0 && (channel as usize) < channels {
        let c = channel as usize;
        for (o, frame) in out[..frames].iter_mut().zip(frames_in) {
            *o = at(frame, c);
        }
    } else if channels == 1 {
        // Chunks of the constant N bytes: the loop vectorises (runtime-sized
        // frames did not, and mono is the common case).
        for (o, b) in out[..frames].iter_mut().zip(bytes.chunks_exact(N)) {
            let mut a = [0u8; N];
            a.copy_from_slice(b);
            *o = sample(a);
        }
    } else {
        let scale = 1.0 / channels as f32;
        for (o, frame) in out[..frames].iter_mut().zip(frames_in) {
            let mut acc = 0.0;
            for c in 0..channels {
                acc += at(frame, c);
            }
            *o = flush(acc * scale);
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s16_full_scale_and_sign() {
        let bytes = [0x00, 0x80, 0xff, 0x7f];
        let mut out = [0.0; 2];
        assert_eq!(to_mono(&bytes, SampleFormat::S16Le, 1, -1, &mut out), 2);
        assert_eq!(out[0], -1.0);
        assert!((out[1] - 32_767.0 / 32_768.0).abs() < 1e-7);
    }

    #[test]
    fn s24_3le_is_sign_extended() {
        // −1 in 24 bit: ff ff ff; +0.5: 00 00 40.
        let bytes = [0xff, 0xff, 0xff, 0x00, 0x00, 0x40];
        let mut out = [0.0; 2];
        to_mono(&bytes, SampleFormat::S24_3Le, 1, -1, &mut out);
        assert!((out[0] + 1.0 / 8_388_608.0).abs() < 1e-9);
        assert_eq!(out[1], 0.5);
    }

    #[test]
    fn s24_le_uses_the_low_three_bytes_and_ignores_the_padding() {
        // -1 LSB with a zero top byte, with a sign-copy top byte, and +0.5
        // with garbage in the top byte: the padding never matters.
        let bytes = [
            0xff, 0xff, 0xff, 0x00, //
            0xff, 0xff, 0xff, 0xff, //
            0x00, 0x00, 0x40, 0x5a,
        ];
        let mut out = [0.0; 3];
        assert_eq!(to_mono(&bytes, SampleFormat::S24Le, 1, -1, &mut out), 3);
        assert!((out[0] + 1.0 / 8_388_608.0).abs() < 1e-9, "{}", out[0]);
        assert_eq!(out[0], out[1]);
        assert_eq!(out[2], 0.5);
        // Full scale negative.
        to_mono(
            &[0x00, 0x00, 0x80, 0x00],
            SampleFormat::S24Le,
            1,
            -1,
            &mut out,
        );
        assert_eq!(out[0], -1.0);
    }

    #[test]
    fn stereo_is_mixed_or_picked() {
        let mut bytes = Vec::new();
        for (l, r) in [(0.5f32, -0.5f32), (1.0, 0.0)] {
            bytes.extend_from_slice(&l.to_le_bytes());
            bytes.extend_from_slice(&r.to_le_bytes());
        }
        let mut out = [0.0; 2];
        to_mono(&bytes, SampleFormat::FloatLe, 2, -1, &mut out);
        assert_eq!(out, [0.0, 0.5]);
        to_mono(&bytes, SampleFormat::FloatLe, 2, 1, &mut out);
        assert_eq!(out, [-0.5, 0.0]);
    }

    #[test]
    fn s32_and_nan_float() {
        let mut out = [0.0; 1];
        to_mono(
            &i32::MIN.to_le_bytes(),
            SampleFormat::S32Le,
            1,
            -1,
            &mut out,
        );
        assert_eq!(out[0], -1.0);
        to_mono(
            &f32::NAN.to_le_bytes(),
            SampleFormat::FloatLe,
            1,
            -1,
            &mut out,
        );
        assert_eq!(out[0], 0.0);
    }

    #[test]
    fn floats_near_the_subnormal_range_read_zero_alone_and_mixed() {
        let tiny = f32::MIN_POSITIVE / 4.0;
        assert!(tiny > 0.0 && !tiny.is_normal());
        let mut out = [1.0; 4];
        let mut bytes = Vec::new();
        for v in [tiny, -tiny, 1.0e-31, -f32::MIN_POSITIVE] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        to_mono(&bytes, SampleFormat::FloatLe, 1, -1, &mut out);
        assert_eq!(out, [0.0; 4]);
        // Two channels above the floor whose mean is below it.
        let mut bytes = Vec::new();
        for v in [1.5e-30f32, -1.4e-30] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let mut out = [1.0; 1];
        to_mono(&bytes, SampleFormat::FloatLe, 2, -1, &mut out);
        assert_eq!(out[0], 0.0);
        // A quiet but real sample is kept, exactly.
        to_mono(
            &1.0e-9f32.to_le_bytes(),
            SampleFormat::FloatLe,
            1,
            -1,
            &mut out,
        );
        assert_eq!(out[0], 1.0e-9);
    }
}
