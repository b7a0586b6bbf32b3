//! Tests of the beat tracker against analytic inputs: click trains at known
//! tempi, a tempo step, silence.

use super::*;
use crate::dsp::onset::tests::{clicks, noise, params, spectra, HOP, SR, WIN};
use crate::dsp::onset::FluxOnset;

struct Run {
    /// (time s, state) per hop.
    states: Vec<(f64, TempoState)>,
    /// Beat times (s).
    beats: Vec<f64>,
}

fn track(x: &[f32], p: &DspParams) -> Run {
    let hop_s = HOP as f32 / SR;
    let mut flux = FluxOnset::new(WIN / 2 + 1, SR, hop_s);
    let mut tr = BeatTracker::new(hop_s);
    let mut states = Vec::new();
    let mut beats = Vec::new();
    for (t, mag, db) in spectra(x) {
        let o = flux.process(&mag, p);
        let s = tr.process(&o.beat_groups, &o.agree_groups, o.low_power, db, p);
        if s.beat {
            beats.push(t - s.beat_lag_s as f64);
        }
        states.push((t, s));
    }
    Run { states, beats }
}

fn click_times(bpm: f64, from: f64, to: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut t = from;
    while t < to {
        v.push(t);
        t += 60.0 / bpm;
    }
    v
}

fn nearest(ts: &[f64], t: f64) -> f64 {
    ts.iter()
        .map(|c| (c - t).abs())
        .fold(f64::INFINITY, f64::min)
}

fn first_lock(r: &Run) -> Option<f64> {
    r.states.iter().find(|(_, s)| s.locked).map(|(t, _)| *t)
}

#[test]
fn click_trains_give_their_tempo_and_beats_on_the_clicks() {
    for bpm in [82.0, 120.0, 174.0] {
        let times = click_times(bpm, 0.5, 20.0);
        let r = track(&clicks(&times, 20.0), &params());
        let lock = first_lock(&r).unwrap_or_else(|| panic!("{bpm}: never locked"));
        assert!(lock < 5.0, "{bpm}: locked at {lock}");
        let (_, last) = r.states.last().unwrap();
        assert!(
            (last.bpm as f64 / bpm - 1.0).abs() < 0.02,
            "{bpm}: {}",
            last.bpm
        );
        assert!(
            last.confidence > 0.6,
            "{bpm}: confidence {}",
            last.confidence
        );
        let late: Vec<f64> = r.beats.iter().copied().filter(|&b| b > 8.0).collect();
        assert!(
            late.len() as f64 >= (12.0 - 0.5) * bpm / 60.0 - 2.0,
            "{bpm}: {late:?}"
        );
        for b in &late {
            assert!(nearest(&times, *b) < 0.025, "{bpm}: beat at {b}");
        }
        // Beat indices count emitted beats.
        assert_eq!(last.beat_index as usize, r.beats.len());
    }
}

#[test]
fn tempo_outside_the_range_is_folded_into_it() {
    // 60 BPM clicks are reported as 120 in 75–180.
    let times = click_times(60.0, 0.5, 20.0);
    let mut p = params();
    p.min_bpm = 75.0;
    p.max_bpm = 180.0;
    let r = track(&clicks(&times, 20.0), &p);
    let (_, last) = r.states.last().unwrap();
    assert!(last.locked);
    assert!((last.bpm / 120.0 - 1.0).abs() < 0.02, "{}", last.bpm);
}

#[test]
fn a_tempo_step_is_followed() {
    let mut times = click_times(100.0, 0.5, 15.0);
    let t_step = *times.last().unwrap() + 0.6;
    times.extend(click_times(130.0, t_step, 30.0));
    let r = track(&clicks(&times, 30.0), &params());
    let after: Vec<&(f64, TempoState)> = r.states.iter().filter(|(t, _)| *t > t_step).collect();
    let ok_from = after
        .iter()
        .position(|(_, s)| s.locked && (s.bpm / 130.0 - 1.0).abs() < 0.03)
        .map(|i| after[i].0 - t_step);
    let follow = ok_from.expect("never followed the step");
    assert!(follow < 5.0, "followed after {follow} s");
    let (_, last) = r.states.last().unwrap();
    assert!((last.bpm / 130.0 - 1.0).abs() < 0.02, "{}", last.bpm);
    for b in r.beats.iter().filter(|&&b| b > t_step + 6.0) {
        assert!(nearest(&times, *b) < 0.03, "beat at {b}");
    }
}

#[test]
fn silence_unlocks_within_two_seconds() {
    let times = click_times(120.0, 0.5, 12.0);
    let mut x = clicks(&times, 12.0);
    x.extend(std::iter::repeat_n(0.0, (4.0 * SR) as usize));
    let p = params();
    let r = track(&x, &p);
    let at = |t: f64| r.states.iter().find(|(ts, _)| *ts >= t).unwrap().1;
    assert!(at(11.9).locked);
    // The last click ends ~12.0 s; the window then holds silence.
    let unlocked = r
        .states
        .iter()
        .find(|(t, s)| *t > 12.0 && !s.locked)
        .map(|(t, _)| *t)
        .expect("never unlocked");
    assert!(
        unlocked - 12.0 <= p.silence_hold_s as f64 + 0.05,
        "{unlocked}"
    );
    assert_eq!(at(15.9).bpm, 0.0);
    assert!(!r.beats.iter().any(|&b| b > 14.1));
}

#[test]
fn noise_claims_no_tempo() {
    let x: Vec<f32> = noise((15.0 * SR) as usize, 11)
        .iter()
        .map(|v| 0.2 * v)
        .collect();
    let r = track(&x, &params());
    assert!(first_lock(&r).is_none());
    assert!(r.beats.is_empty());
    assert!(r.states.iter().all(|(_, s)| s.bpm == 0.0));
}

#[test]
fn no_beat_is_lost_at_the_claim() {
    // On clean clicks the first beat reported is the click that completed
    // the claim, or the first one after it: a claim on a beat's agreement
    // (one beat lifts confidence far above the threshold) reports that
    // beat itself, a few hops late with its true time in `beat_lag_s`,
    // not the beat after it; a claim from the held confidence comes
    // between beats and the next click is the first beat.
    let mut on_a_beat = 0;
    for bpm in [100.0, 110.0, 120.0] {
        let times = click_times(bpm, 0.5, 8.0);
        let r = track(&clicks(&times, 8.0), &params());
        let (t, s) = r
            .states
            .iter()
            .find(|(_, s)| s.locked)
            .unwrap_or_else(|| panic!("{bpm}: never locked"));
        let first = *r.beats.first().unwrap_or_else(|| panic!("{bpm}: no beat"));
        assert!(
            nearest(&times, first) < 0.025,
            "{bpm}: first beat at {first:.3}"
        );
        if s.beat {
            on_a_beat += 1;
            assert!(
                s.beat_lag_s < 0.1,
                "{bpm}: reported {} s late",
                s.beat_lag_s
            );
            assert_eq!(first, t - s.beat_lag_s as f64, "{bpm}");
        } else {
            let next = times.iter().copied().find(|&c| c > *t - 0.025);
            assert_eq!(
                times.iter().position(|&c| (c - first).abs() < 0.025),
                next.and_then(|n| times.iter().position(|&c| c == n)),
                "{bpm}: claim at {t:.3}, first beat {first:.3}"
            );
        }
    }
    // The claim on a beat's agreement is what makes the first beats of
    // clean material come early; it must still happen.
    assert!(on_a_beat >= 1, "no claim on a beat's agreement");
}

#[test]
fn phase_runs_from_zero_to_one_between_beats() {
    let times = click_times(120.0, 0.5, 12.0);
    let r = track(&clicks(&times, 12.0), &params());
    let locked: Vec<&(f64, TempoState)> = r.states.iter().filter(|(_, s)| s.locked).collect();
    assert!(!locked.is_empty());
    for w in locked.windows(4) {
        let (a, b) = (w[0].1, w[1].1);
        assert!((0.0..1.0).contains(&b.phase));
        // The phase wraps on the beat: the beat event comes at most the
        // signal's delay (two hops) later, back-dated by it.
        if !w.iter().any(|(_, s)| s.beat) {
            assert!(b.phase >= a.phase - 1e-4, "{} -> {}", a.phase, b.phase);
        }
    }
}

#[test]
fn tracker_survives_garbage() {
    let p = params();
    let mut tr = BeatTracker::new(HOP as f32 / SR);
    for v in [f32::NAN, f32::INFINITY, -1.0, 1.0e30, 0.0] {
        for _ in 0..500 {
            let s = tr.process(&[v; 4], &[v; 4], v, -20.0, &p);
            assert!(s.confidence.is_finite() && s.phase.is_finite() && s.bpm.is_finite());
        }
    }
    let s = tr.process(&[0.0; 4], &[0.0; 4], 0.0, f32::NAN, &p);
    assert!(s.bpm.is_finite());
    tr.reset();
    assert_eq!(
        tr.process(&[0.0; 4], &[0.0; 4], 0.0, -20.0, &p),
        TempoState::default()
    );
}

/// Four on the floor: a kick (60 Hz, 150 ms, with a short click) on every
/// beat and an open hat
/// (high-passed noise, 120 ms) on every off-beat that is stronger in the
/// ODF than the kick.
fn four_on_the_floor(bpm: f64, dur_s: f64) -> (Vec<f32>, Vec<f64>) {
    let n = (dur_s * SR as f64) as usize;
    let mut x = vec![0.0f32; n];
    let kicks = click_times(bpm, 0.5, dur_s - 0.5);
    let hat_src = noise(6000, 11);
    let click = noise(240, 5);
    for &t in &kicks {
        let i0 = (t * SR as f64).round() as usize;
        for k in 0..7200 {
            let s = k as f32 / SR;
            if i0 + k < n {
                x[i0 + k] +=
                    0.3 * (2.0 * std::f32::consts::PI * 60.0 * s).sin() * (-s / 0.06).exp();
            }
        }
        for (k, c) in click.iter().enumerate() {
            if i0 + k < n {
                x[i0 + k] += 0.2 * c * (-(k as f32) / 48.0).exp();
            }
        }
        let h0 = ((t + 30.0 / bpm) * SR as f64).round() as usize;
        for k in 1..hat_src.len() {
            if h0 + k < n {
                x[h0 + k] += 0.5 * (hat_src[k] - hat_src[k - 1]) * (-(k as f32) / 1500.0).exp();
            }
        }
    }
    (x, kicks)
}

#[test]
fn beats_fall_on_the_kick_not_on_a_louder_off_beat_hat() {
    let bpm = 124.0;
    let (x, kicks) = four_on_the_floor(bpm, 24.0);
    let p = params();
    let half = 30.0 / bpm;
    let hats: Vec<f64> = kicks.iter().map(|k| k + half).collect();
    // The input shows the difficulty: summed over all bands, the flux is
    // larger at the hats than at the kicks.
    let mut flux = FluxOnset::new(WIN / 2 + 1, SR, HOP as f32 / SR);
    let (mut at_kick, mut at_hat) = (0.0f32, 0.0f32);
    for (t, mag, _) in spectra(&x) {
        let o = flux.process(&mag, &p);
        let t = t - ODF_PEAK_LAG_S as f64;
        if nearest(&kicks, t) < 0.012 {
            at_kick = at_kick.max(o.odf);
        }
        if nearest(&hats, t) < 0.012 {
            at_hat = at_hat.max(o.odf);
        }
    }
    assert!(at_hat > at_kick, "hat {at_hat} kick {at_kick}");
    let r = track(&x, &p);
    let late: Vec<f64> = r.beats.iter().copied().filter(|&b| b > 10.0).collect();
    assert!(late.len() as f64 >= 12.0 * bpm / 60.0 - 2.0, "{late:?}");
    let on_kick = late.iter().filter(|&&b| nearest(&kicks, b) < 0.05).count();
    assert!(on_kick as f64 > 0.9 * late.len() as f64, "beats {late:?}");
}

/// The state filter alone, fed an analytic likelihood: r = 8 every 47 hops
/// (≈ 120 BPM at 10.67 ms hops), 1 elsewhere.
#[test]
fn state_filter_locks_onto_a_periodic_likelihood() {
    let hop_s = HOP as f32 / SR;
    let mut st = dbn::BeatStates::new(hop_s);
    st.set_range(55.0, 215.0);
    let mut beats = Vec::new();
    let mut last_phase = 0.0;
    for t in 0..1500u32 {
        let r = if t % 47 == 10 { 8.0 } else { 1.0 };
        st.step(r);
        // A beat where the phase wraps, dated back by the phase.
        let phase = st.phase();
        if last_phase - phase > 0.5 {
            beats.push(t as f32 - phase * st.best_period() as f32);
        }
        last_phase = phase;
    }
    let (bpm, mass) = st.tempo();
    let want = 60.0 / (47.0 * hop_s);
    assert!((bpm / want - 1.0).abs() < 0.02, "{bpm} vs {want}");
    assert!(mass > 0.5, "{mass}");
    // After the first few periods, one beat per pulse, on the pulse
    // (within a hop and a half: the phase is a centroid, and a hop either
    // way is the filter's resolution).
    let late: Vec<f32> = beats.into_iter().filter(|&b| b > 300.0).collect();
    assert!(late.len() >= (1500 - 300) / 47 - 1, "{late:?}");
    assert!(
        late.iter()
            .all(|b| ((b - 10.0).rem_euclid(47.0) + 1.5) % 47.0 < 3.0),
        "{late:?}"
    );
}

#[test]
fn state_filter_tracks_only_its_range() {
    let hop_s = HOP as f32 / SR;
    let mut st = dbn::BeatStates::new(hop_s);
    // A 240 BPM pulse (period 23.4 hops) in a 75–180 range: its half.
    st.set_range(75.0, 180.0);
    let mut next = 0.0f32;
    for t in 0..2000u32 {
        let r = if (t as f32 - next).abs() < 0.5 {
            next += 60.0 / (240.0 * hop_s);
            8.0
        } else {
            1.0
        };
        st.step(r);
    }
    let (bpm, _) = st.tempo();
    assert!((bpm / 120.0 - 1.0).abs() < 0.03, "{bpm}");
}

/// Two tempo hypotheses with the given belief, each a narrow peak.
fn two_peaks(a: (f32, f32), b: (f32, f32)) -> impl Fn(f32) -> f32 {
    move |bpm| {
        let peak =
            |(centre, mass): (f32, f32)| mass * (-(bpm / centre - 1.0).powi(2) / 1.0e-3).exp();
        peak(a) + peak(b) + 1.0e-6
    }
}

#[test]
fn claimed_tempo_yields_to_a_slower_rival_only_with_clear_evidence() {
    let hop_s = HOP as f32 / SR;
    let near = |got: f32, want: f32| (got / want - 1.0).abs() < 0.03;
    let settle = |st: &mut dbn::BeatStates| {
        for _ in 0..(1.2 / hop_s) as usize {
            st.report_for(two_peaks((120.0, 1.0), (80.0, 0.5)));
        }
    };
    let mut st = dbn::BeatStates::new(hop_s);
    st.hold = true;
    settle(&mut st);
    // A slower rival with 1.3x the belief does not take over; with 2x it
    // does once it has kept the lead for two beats of 120 BPM (1 s), and a
    // break in the lead starts the count again.
    let t = st.report_for(two_peaks((120.0, 1.0), (80.0, 1.3)));
    assert!(near(t, 120.0), "held 120 BPM, got {t}");
    let beat = (0.5 / hop_s).round() as usize;
    let lead = |st: &mut dbn::BeatStates, hops: usize| {
        (0..hops).fold(0.0, |_, _| {
            st.report_for(two_peaks((120.0, 1.0), (80.0, 2.0)))
        })
    };
    let t = lead(&mut st, beat);
    assert!(near(t, 120.0), "held 120 BPM after a beat's lead, got {t}");
    st.report_for(two_peaks((120.0, 1.0), (80.0, 1.3)));
    let t = lead(&mut st, 2 * beat - 4);
    assert!(near(t, 120.0), "a broken lead counts again, got {t}");
    let t = lead(&mut st, 8);
    assert!(near(t, 80.0), "gave way to 80 BPM after two beats, got {t}");
    // With five times the belief (the music has changed) at once.
    let mut st = dbn::BeatStates::new(hop_s);
    st.hold = true;
    settle(&mut st);
    let t = st.report_for(two_peaks((120.0, 1.0), (80.0, 6.0)));
    assert!(near(t, 80.0), "gave way to a 6x rival at once, got {t}");
    // A faster rival takes over as soon as it is the most probable.
    let mut st = dbn::BeatStates::new(hop_s);
    st.hold = true;
    settle(&mut st);
    let t = st.report_for(two_peaks((120.0, 1.0), (160.0, 1.1)));
    assert!(near(t, 160.0), "faster 160 BPM at once, got {t}");
    // Nothing claimed: the most probable tempo is reported.
    let mut st = dbn::BeatStates::new(hop_s);
    settle(&mut st);
    let t = st.report_for(two_peaks((120.0, 1.0), (80.0, 1.1)));
    assert!(near(t, 80.0), "no hold before a claim, got {t}");
    // A fresh report or a fresh claim is not held either (the claim may
    // still settle).
    let mut st = dbn::BeatStates::new(hop_s);
    st.hold = true;
    st.report_for(two_peaks((120.0, 1.0), (80.0, 0.5)));
    let t = st.report_for(two_peaks((120.0, 1.0), (80.0, 1.1)));
    assert!(near(t, 80.0), "no hold on a fresh report, got {t}");
    let mut st = dbn::BeatStates::new(hop_s);
    settle(&mut st);
    st.hold = false;
    st.report_for(two_peaks((120.0, 1.0), (80.0, 0.5)));
    st.hold = true;
    st.report_for(two_peaks((120.0, 1.0), (80.0, 0.5)));
    let t = st.report_for(two_peaks((120.0, 1.0), (80.0, 1.1)));
    assert!(
        near(t, 80.0),
        "no hold within a second of the claim, got {t}"
    );
}

/// With no onset at all (the likelihood ratio below 1 in every hop), no
/// tempo may gain on its neighbours: every period's beat region is the
/// same share of its beat, so each loses belief at the same mean rate.
/// Averaged over 5 s (which smooths out where each period's region is),
/// neighbouring periods' log-belief differs by 1.0–1.4 nats at most (the
/// starting belief, the metrical prior above 180 BPM); with regions
/// rounded to whole positions period 39 led its neighbour by 2.7–4.4 nats
/// (144 BPM at 48 kHz, whatever the music).
#[test]
fn without_onsets_no_tempo_gains_on_its_neighbours() {
    for hop_s in [512.0 / 44_100.0, 512.0 / 48_000.0, 0.008, 0.0133f32] {
        let mut st = dbn::BeatStates::new(hop_s);
        st.set_range(55.0, 215.0);
        let hops = (10.0 / hop_s) as u32;
        let mut mean_ln = vec![0.0f32; st.belief().0.len()];
        for k in 0..hops {
            st.step(0.4);
            if k >= hops / 2 {
                let (_, m) = st.belief();
                let total: f32 = m.iter().sum();
                for (a, v) in mean_ln.iter_mut().zip(m) {
                    *a += (v / total).max(1e-30).ln() / (hops - hops / 2) as f32;
                }
            }
        }
        let periods = st.belief().0;
        for (i, w) in mean_ln.windows(2).enumerate() {
            assert!(
                (w[0] - w[1]).abs() < 2.0,
                "hop {hop_s}: period {} against {}: {} nats",
                periods[i],
                periods[i + 1],
                w[0] - w[1]
            );
        }
    }
}
