//! DSP cost per 256-frame block at 48 kHz, the live block size, and of the
//! per-hop loops written for the vectoriser (`src/dsp/lanes.rs`), each in
//! the build the dispatcher picks on this CPU (`_simd`: AVX2 on x86-64 where
//! present) and in the portable build (`_portable`).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use phase4::config::Config;
use phase4::dsp::bands::BandsProcessor;
use phase4::dsp::biquad::BandPass;
use phase4::dsp::lanes;
use phase4::dsp::logbins::LogBinMap;
use phase4::dsp::params::{DspParams, ParamsRx};
use phase4::dsp::postprocess::PostProcessor;
use phase4::dsp::spectral;
use phase4::dsp::spectrum::SpectrumProcessor;
use phase4::types::Block;

fn noisy_block(seed: &mut u32, pos: u64) -> Block {
    let mut b = Block::zeroed();
    b.len = 256;
    b.sample_rate = 48_000;
    b.frame_pos = pos;
    for (i, s) in b.samples[..256].iter_mut().enumerate() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 17;
        *seed ^= *seed << 5;
        let t = (pos + i as u64) as f32 / 48_000.0;
        *s = 0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
            + 0.1 * (*seed as f32 / u32::MAX as f32 - 0.5);
    }
    b
}

fn blocks() -> Vec<Block> {
    let mut seed = 7;
    (0..64).map(|i| noisy_block(&mut seed, i * 256)).collect()
}

fn bench(c: &mut Criterion) {
    let mut cfg = Config::default();
    cfg.fft.enabled = true;
    let p = DspParams::from_config(&cfg);
    let input = blocks();

    let mut bp = BandPass::new(4, 250.0, 4000.0, 48_000.0);
    let mut out = [0.0f32; 256];
    c.bench_function("bandpass_order4_256", |b| {
        b.iter(|| bp.process(black_box(&input[0].samples[..256]), &mut out))
    });

    let mut bands = BandsProcessor::new(48_000, 256, 1024, &p);
    let mut rx = ParamsRx::fixed(p);
    let mut i = 0;
    c.bench_function("bands_worker_block_256", |b| {
        b.iter(|| {
            i = (i + 1) % input.len();
            black_box(bands.process(&input[i], &mut rx))
        })
    });

    for (name, fft_on) in [
        ("spectrum_worker_block_256_fft_on", true),
        ("spectrum_worker_block_256_fft_off", false),
    ] {
        let mut c2 = cfg.clone();
        c2.fft.enabled = fft_on;
        let p2 = DspParams::from_config(&c2);
        let mut sp = SpectrumProcessor::new(48_000, 1024, 512, &p2);
        let mut rx2 = ParamsRx::fixed(p2);
        let mut j = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                j = (j + 1) % input.len();
                let mut frames = 0;
                sp.process(&input[j], &mut rx2, &mut |_| frames += 1);
                black_box(frames)
            })
        });
    }
}

/// One hop's worth of inputs: a 1024-sample window, a 513-bin power
/// spectrum with a tone and a slope, and its log-bin dB.
fn hop_inputs() -> (Vec<f32>, Vec<f32>) {
    let mut seed = 11;
    let window: Vec<f32> = (0..4)
        .flat_map(|i| noisy_block(&mut seed, i * 256).samples[..256].to_vec())
        .collect();
    let power: Vec<f32> = (0..513)
        .map(|k| 1e-3 / (1.0 + k as f32) + if k == 5 { 0.04 } else { 0.0 })
        .collect();
    (window, power)
}

fn bench_vectorised(c: &mut Criterion) {
    let mut cfg = Config::default();
    cfg.fft.enabled = true;
    let p = DspParams::from_config(&cfg);
    let (window, power) = hop_inputs();
    let hann: Vec<f32> = (0..1024)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / 1023.0).cos())
        .collect();
    let map = LogBinMap::new(513, 48_000.0, 128, 30.0);
    let (mut sums, mut db) = (vec![0.0f32; 1024], vec![0.0f32; 1024]);
    map.reduce(&power, &mut sums, &mut db);
    let mut post = PostProcessor::new(512.0 / 48_000.0);
    post.configure(&p, &map, true);
    let mut out = vec![0.0f32; 1024];

    for (suffix, portable) in [("simd", false), ("portable", true)] {
        lanes::set_portable_only(portable);
        c.bench_function(&format!("sum_sq_peak_256_{suffix}"), |b| {
            b.iter(|| lanes::sum_sq_peak(black_box(&window[..256]), 0.0))
        });
        c.bench_function(&format!("window_sums_1024_{suffix}"), |b| {
            b.iter(|| lanes::window_sums(&mut out, black_box(&window), &hann, 0.0))
        });
        c.bench_function(&format!("spectral_shape_513_{suffix}"), |b| {
            b.iter(|| spectral::shape(black_box(&power), 46.875))
        });
        c.bench_function(&format!("postprocess_hop_128_bins_{suffix}"), |b| {
            b.iter(|| post.process(black_box(&db[..128]), &mut out[..128]))
        });
    }
    lanes::set_portable_only(false);
    c.bench_function("logbins_reduce_513", |b| {
        b.iter(|| map.reduce(black_box(&power), &mut sums, &mut db))
    });
}

criterion_group!(benches, bench, bench_vectorised);
criterion_main!(benches);
