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

#[inline(always)]
fn sample_at(bytes: &[u8], f: SampleFormat) -> f32 {
    match f {
        SampleFormat::S16Le => i16::from_le_bytes([bytes[0], bytes[1]]) as f32 / 32_768.0,
        SampleFormat::S24_3Le => {
            // Sign-extend 24 bits by placing them in the top of an i32.
            let v = i32::from_le_bytes([0, bytes[0], bytes[1], bytes[2]]) >> 8;
            v as f32 / 8_388_608.0
        }
        SampleFormat::S24Le => {
            // 24 bits in the low three bytes of four; the top byte is padding
            // (zero or a sign copy, depending on the codec), so it is ignored
            // and the value sign-extended from bit 23.
            let v = i32::from_le_bytes([0, bytes[0], bytes[1], bytes[2]]) >> 8;
            v as f32 / 8_388_608.0
        }
        SampleFormat::S32Le => {
            i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as f32 / 2_147_483_648.0
        }
        SampleFormat::FloatLe | SampleFormat::Auto => {
            let v = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        }
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
    let bps = bytes_per_sample(format);
    let frame_bytes = bps * channels.max(1);
    let frames = (bytes.len() / frame_bytes).min(out.len());
    if channel >= 0 && (channel as usize) < channels {
        let off = channel as usize * bps;
        for (i, o) in out[..frames].iter_mut().enumerate() {
            let s = i * frame_bytes + off;
            *o = sample_at(&bytes[s..s + bps], format);
        }
    } else {
        let scale = 1.0 / channels.max(1) as f32;
        for (i, o) in out[..frames].iter_mut().enumerate() {
            let frame = &bytes[i * frame_bytes..(i + 1) * frame_bytes];
            let mut acc = 0.0;
            for c in 0..channels {
                acc += sample_at(&frame[c * bps..(c + 1) * bps], format);
            }
            *o = acc * scale;
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
}
