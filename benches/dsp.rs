//! DSP cost per 256-frame block at 48 kHz, the live block size.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use phase4::config::Config;
use phase4::dsp::bands::BandsProcessor;
use phase4::dsp::biquad::BandPass;
use phase4::dsp::params::{DspParams, ParamsRx};
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
                black_box(sp.process(&input[j], &mut rx2).is_some())
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
