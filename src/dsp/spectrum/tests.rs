use super::*;
use crate::config::Config;

/// Feed 400 blocks of `signal(frame index)` at 48 kHz / 256; the
/// processor and its last frame.
fn feed(cfg: &Config, mut signal: impl FnMut(u64) -> f32) -> (SpectrumProcessor, SpectrumFrame) {
    let p = DspParams::from_config(cfg);
    let mut sp = SpectrumProcessor::new(48_000, 1024, 512, &p);
    let mut rx = ParamsRx::fixed(p);
    let mut block = Block::zeroed();
    block.len = 256;
    block.sample_rate = 48_000;
    let mut last = SpectrumFrame::zeroed();
    for b in 0..400u64 {
        block.frame_pos = b * 256;
        for (i, s) in block.samples[..256].iter_mut().enumerate() {
            *s = signal(b * 256 + i as u64);
        }
        sp.process(&block, &mut rx, &mut |f| last = *f);
    }
    (sp, last)
}

fn run(freq: f32, raw: bool) -> (SpectrumProcessor, SpectrumFrame) {
    let mut cfg = Config::default();
    cfg.fft.enabled = true;
    cfg.fft.send_raw_db = raw;
    feed(&cfg, |n| {
        0.5 * (2.0 * std::f32::consts::PI * freq * n as f32 / 48_000.0).sin()
    })
}

#[test]
fn a_tone_peaks_in_the_log_bin_that_contains_it() {
    for freq in [100.0, 440.0, 2000.0, 8000.0] {
        let (sp, f) = run(freq, true);
        // The tone's energy sits in its nearest rfft bin, so the peak is
        // the log bin that rfft bin falls into; that is the tone's own
        // log bin, or its neighbour when the tone is near a bin edge or
        // the log bins are narrower than rfft bins (low frequencies).
        let nearest = (freq / (48_000.0 / 1024.0)).round() as usize;
        let expected = sp.bin_map().bin_of_rfft(nearest).unwrap();
        let own = sp.bin_map().bin_of_hz(freq).unwrap();
        assert!(
            expected.abs_diff(own) <= 2,
            "{freq} Hz: {expected} vs {own}"
        );
        let (argmax, _) = f
            .bins()
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        assert_eq!(argmax, expected, "{freq} Hz");
    }
}

#[test]
fn raw_db_of_a_sine_reads_its_rms_squared_in_its_bin() {
    // 0.5 amplitude: RMS² = 0.125 → −9.03 dB, spread over the rfft bins of
    // its log bin and its Hann main lobe; the peak bin is within 6 dB.
    let (sp, f) = run(3000.0, true);
    let j = sp.bin_map().bin_of_hz(3000.0).unwrap();
    assert!(f.bins()[j] < -9.0 && f.bins()[j] > -16.0, "{}", f.bins()[j]);
}

#[test]
fn processed_stream_is_in_unit_range_and_tone_stands_out() {
    let (sp, f) = run(2000.0, false);
    assert!(f.bins().iter().all(|v| (0.0..=1.0).contains(v)));
    let j = sp.bin_map().bin_of_hz(2000.0).unwrap();
    let median = {
        let mut v = f.bins().to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    assert!(
        f.bins()[j] > median + 0.3,
        "{} vs median {median}",
        f.bins()[j]
    );
}

#[test]
fn white_noise_is_flat_and_centred() {
    let mut seed = 0x2545_f491u32;
    let (_, last) = feed(&Config::default(), |_| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed as f32 / u32::MAX as f32 - 0.5) * 0.5
    });
    assert!(last.flatness > 0.9, "{}", last.flatness);
    // Flat power up to Nyquist: centroid near 12 kHz, rolloff near 20.4 kHz.
    assert!(
        (last.centroid_hz - 12_000.0).abs() < 600.0,
        "{}",
        last.centroid_hz
    );
    assert!(
        (last.rolloff_hz - 20_400.0).abs() < 600.0,
        "{}",
        last.rolloff_hz
    );
}

#[test]
fn spectral_shape_of_a_sine() {
    let (_, f) = run(2000.0, true);
    assert!((f.centroid_hz - 2000.0).abs() < 100.0, "{}", f.centroid_hz);
    assert!(f.flatness < 0.01, "{}", f.flatness);
}
