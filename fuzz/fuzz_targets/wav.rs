//! The WAV reader (`phase4 analyze FILE`, `--input FILE`): any bytes give a
//! header or a clear error, never a panic, and what is read is whole frames
//! of finite samples in [-1, 1].
#![no_main]

use libfuzzer_sys::fuzz_target;
use phase4::capture::wav::WavStream;

fuzz_target!(|data: &[u8]| {
    // First byte: which channel to pick (-1 = mix) and the block size.
    let Some((&sel, file)) = data.split_first() else {
        return;
    };
    let channel = (sel & 3) as i32 - 1;
    let block = 1 + (sel >> 2) as usize * 37;
    let Ok(mut s) = WavStream::new(file, block) else {
        return;
    };
    let h = s.header();
    assert!(h.channels >= 1 && h.sample_rate >= 1000);
    let mut out = vec![0.0f32; block];
    let mut frames = 0usize;
    loop {
        match s.read_mono(channel, &mut out) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                assert!(n <= block);
                assert!(out[..n].iter().all(|v| v.is_finite() && (-1.0..=1.0).contains(v)));
                frames += n;
            }
        }
    }
    assert!(frames * h.frame_bytes() <= file.len());
});
