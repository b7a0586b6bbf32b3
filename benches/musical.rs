//! Cost per hop of the musical features: the broadband onset detector and
//! the beat tracker (1024-frame window, 512-frame hop at 48 kHz), and the
//! per-band onset detector per 256-frame block.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use phase4::config::Config;
use phase4::dsp::onset::{BandOnsets, FluxOnset};
use phase4::dsp::params::DspParams;
use phase4::dsp::tempo::BeatTracker;

const N_MAG: usize = 513;
const SR: f32 = 48_000.0;
const HOP_S: f32 = 512.0 / 48_000.0;

/// Magnitude frames of a 120 BPM pattern: a broadband hit every 47 hops on
/// a noisy bed, so the detector and the tracker take their busy paths.
fn frames() -> Vec<Vec<f32>> {
    let mut seed = 1u32;
    (0..512)
        .map(|h| {
            let hit = h % 47 == 0;
            (0..N_MAG)
                .map(|k| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let bed = 1e-3 * (seed as f32 / u32::MAX as f32);
                    bed + if hit {
                        0.05 / (1.0 + k as f32 / 50.0)
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let p = DspParams::from_config(&Config::default());
    let frames = frames();

    let mut flux = FluxOnset::new(N_MAG, SR, HOP_S);
    let mut i = 0;
    c.bench_function("flux_onset_per_hop", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(flux.process(black_box(&frames[i]), &p))
        })
    });

    // The tracker on a real ODF sequence, warmed up so it is locked.
    let mut flux = FluxOnset::new(N_MAG, SR, HOP_S);
    let odf: Vec<([f32; 4], [f32; 4], f32)> = frames
        .iter()
        .map(|m| {
            let o = flux.process(m, &p);
            (o.beat_groups, o.agree_groups, o.low_power)
        })
        .collect();
    let mut tracker = BeatTracker::new(HOP_S);
    for k in 0..2000 {
        let (g, a, low) = odf[k % odf.len()];
        tracker.process(&g, &a, low, -20.0, &p);
    }
    let mut j = 0;
    c.bench_function("beat_tracker_per_hop", |b| {
        b.iter(|| {
            j = (j + 1) % odf.len();
            let (g, a, low) = &odf[j];
            black_box(tracker.process(black_box(g), black_box(a), *low, -20.0, &p))
        })
    });

    let mut bands = BandOnsets::new(256.0 / SR);
    let mut k = 0u32;
    c.bench_function("band_onsets_per_block", |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            let v = if k % 94 < 3 { 0.9 } else { 0.1 };
            black_box(bands.process(black_box(&[v, v * 0.5, v * 0.3]), &p))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
