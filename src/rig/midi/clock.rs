//! When MIDI clock messages go out: 24 pulses per quarter note on phase4's
//! beat grid, Start on lock, Stop when the lock is lost. Pure timing logic,
//! no I/O, so it is tested without a sequencer.
//!
//! The grid comes from the tempo tracker: at capture time `t_ns` the beat
//! phase was `phase` at `bpm`, so beats fall at `t_ns + (k − phase)·T` with
//! `T = 60/bpm`. Each pulse is scheduled one pulse period after the last and
//! pulled toward the grid by a quarter of the error beyond a dead band of
//! [`DEAD_BAND_NS`], at most [`MAX_SLEW`] of a pulse per pulse. So the
//! pulse rate never leaves the tempo by more than 0.45 % (what a drum
//! machine or a lighting desk locks to), the tracker's phase jitter does
//! not reach the clock, a new phase (the next track) is reached at about
//! 4 ms per beat, and once settled every 24th pulse lands on a beat.
//!
//! - Nothing is sent before the tempo first locks (never a guess).
//! - On lock: Song Position 0 (if enabled), Start (if enabled) and the first
//!   pulse, all on the next beat.
//! - Lock lost for longer than [`GRACE_NS`]: Stop (if enabled), no more
//!   pulses. Within the grace the clock runs on at the last tempo.

/// How long the lock may drop before the clock stops.
pub const GRACE_NS: u64 = 500_000_000;
/// Pulses per quarter note.
pub const PPQN: u64 = 24;
/// Longest the scheduler sleeps while idle.
const IDLE_NS: u64 = 20_000_000;
/// Largest correction toward the grid, as a fraction of a pulse.
pub const MAX_SLEW: f64 = 0.0045;
/// Phase errors smaller than this are not corrected.
pub const DEAD_BAND_NS: f64 = 2_000_000.0;
/// A beat closer than this is too close to start on.
const START_MARGIN_NS: u64 = 2_000_000;

/// The tempo as the tracker last reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TempoSnapshot {
    /// Tempo in BPM (meaningful while `locked`).
    pub bpm: f32,
    /// Beat phase in [0, 1) at `t_ns`: 0 on the beat.
    pub phase: f32,
    /// CLOCK_MONOTONIC capture time the phase refers to.
    pub t_ns: u64,
    /// Whether the tracker claims a tempo.
    pub locked: bool,
}

impl TempoSnapshot {
    fn period_ns(&self) -> f64 {
        60e9 / self.bpm.max(1.0) as f64
    }

    /// A beat time (ns) of the grid.
    fn anchor_ns(&self) -> f64 {
        self.t_ns as f64 - self.phase as f64 * self.period_ns()
    }
}

/// A MIDI real-time or system-common message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MidiOut {
    /// Song Position Pointer, in sixteenth notes.
    SongPosition(u16),
    /// Start from the beginning.
    Start,
    /// Stop.
    Stop,
    /// One clock pulse (1/24 of a quarter note).
    Clock,
}

/// Options of the clock.
#[derive(Clone, Copy, Debug)]
pub struct ClockOptions {
    /// Send Start and Stop.
    pub start_stop: bool,
    /// Send Song Position 0 before Start.
    pub song_position: bool,
}

/// The scheduler state.
#[derive(Debug)]
pub struct ClockPlan {
    opts: ClockOptions,
    running: bool,
    next_ns: u64,
    pulse: u64,
    pending_start: Option<u64>,
    last_locked_ns: u64,
    period_ns: f64,
}

impl ClockPlan {
    /// A stopped clock.
    pub fn new(opts: ClockOptions) -> Self {
        ClockPlan {
            opts,
            running: false,
            next_ns: 0,
            pulse: 0,
            pending_start: None,
            last_locked_ns: 0,
            period_ns: 0.0,
        }
    }

    /// Whether pulses are going out.
    pub fn running(&self) -> bool {
        self.running
    }

    /// Pulses sent since the last Start.
    pub fn pulses(&self) -> u64 {
        self.pulse
    }

    /// Emit everything due at `now` given the latest tempo; returns when
    /// to call again (CLOCK_MONOTONIC ns).
    pub fn poll(&mut self, now: u64, snap: &TempoSnapshot, emit: &mut impl FnMut(MidiOut)) -> u64 {
        if snap.locked && snap.bpm > 0.0 {
            self.last_locked_ns = now;
            self.period_ns = snap.period_ns();
        }
        if !self.running {
            return self.poll_stopped(now, snap, emit);
        }
        if !snap.locked && now.saturating_sub(self.last_locked_ns) > GRACE_NS {
            if self.opts.start_stop {
                emit(MidiOut::Stop);
            }
            self.running = false;
            return now + IDLE_NS;
        }
        let pulse_ns = self.period_ns / PPQN as f64;
        if (self.next_ns as f64) + pulse_ns < now as f64 {
            // Far behind (the thread was held up): do not burst, resume now.
            self.next_ns = now;
        }
        while self.next_ns <= now {
            emit(MidiOut::Clock);
            self.pulse += 1;
            self.next_ns = self.schedule_next(snap, pulse_ns);
        }
        self.next_ns
    }

    fn poll_stopped(
        &mut self,
        now: u64,
        snap: &TempoSnapshot,
        emit: &mut impl FnMut(MidiOut),
    ) -> u64 {
        if !(snap.locked && snap.bpm > 0.0) {
            self.pending_start = None;
            return now + IDLE_NS;
        }
        let start = match self.pending_start {
            Some(t) => t,
            None => {
                let period = snap.period_ns();
                let anchor = snap.anchor_ns();
                let k = ((now + START_MARGIN_NS) as f64 - anchor) / period;
                let t = (anchor + k.ceil() * period).max(now as f64) as u64;
                self.pending_start = Some(t);
                t
            }
        };
        if now < start {
            return start.min(now + IDLE_NS);
        }
        self.pending_start = None;
        if self.opts.song_position {
            emit(MidiOut::SongPosition(0));
        }
        if self.opts.start_stop {
            emit(MidiOut::Start);
        }
        emit(MidiOut::Clock);
        self.running = true;
        self.pulse = 1;
        self.next_ns = self.schedule_next_from(start, snap, self.period_ns / PPQN as f64);
        self.next_ns
    }

    fn schedule_next(&self, snap: &TempoSnapshot, pulse_ns: f64) -> u64 {
        self.schedule_next_from(self.next_ns, snap, pulse_ns)
    }

    /// One pulse after `last`, pulled toward the beat grid.
    fn schedule_next_from(&self, last: u64, snap: &TempoSnapshot, pulse_ns: f64) -> u64 {
        let naive = last as f64 + pulse_ns;
        if !snap.locked {
            return naive as u64;
        }
        let period = snap.period_ns();
        let j = (self.pulse % PPQN) as f64;
        // The beat this pulse belongs to, and where the grid puts it.
        let beat = naive - j * pulse_ns;
        let anchor = snap.anchor_ns();
        let k = ((beat - anchor) / period).round();
        let ideal = anchor + k * period + j * period / PPQN as f64;
        let err = ideal - naive;
        let err = err.signum() * (err.abs() - DEAD_BAND_NS).max(0.0);
        let corr = (0.25 * err).clamp(-MAX_SLEW * pulse_ns, MAX_SLEW * pulse_ns);
        (naive + corr).max(last as f64 + 1.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: ClockOptions = ClockOptions {
        start_stop: true,
        song_position: true,
    };

    /// Run the plan from `from` to `to` (ns) with `snap(now)`; every event
    /// with its time.
    fn run(
        plan: &mut ClockPlan,
        from: u64,
        to: u64,
        snap: impl Fn(u64) -> TempoSnapshot,
    ) -> Vec<(u64, MidiOut)> {
        let mut out = Vec::new();
        let mut now = from;
        while now < to {
            let next = plan.poll(now, &snap(now), &mut |e| out.push((now, e)));
            assert!(next > now, "the plan must move forward");
            now = next;
        }
        out
    }

    fn steady(bpm: f32, beat0_ns: u64) -> impl Fn(u64) -> TempoSnapshot {
        move |now| {
            let period = 60e9 / bpm as f64;
            let phase = ((now as f64 - beat0_ns as f64) / period).rem_euclid(1.0);
            TempoSnapshot {
                bpm,
                phase: phase as f32,
                t_ns: now,
                locked: true,
            }
        }
    }

    fn clocks(ev: &[(u64, MidiOut)]) -> Vec<u64> {
        ev.iter()
            .filter(|(_, e)| *e == MidiOut::Clock)
            .map(|(t, _)| *t)
            .collect()
    }

    #[test]
    fn nothing_is_sent_before_the_tempo_locks() {
        let mut p = ClockPlan::new(OPTS);
        let ev = run(&mut p, 0, 5_000_000_000, |now| TempoSnapshot {
            bpm: 0.0,
            phase: 0.0,
            t_ns: now,
            locked: false,
        });
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn start_lands_on_a_beat_and_pulses_run_at_24_per_beat() {
        let beat0 = 1_000_000_123;
        let mut p = ClockPlan::new(OPTS);
        let ev = run(&mut p, 1_300_000_000, 11_300_000_000, steady(120.0, beat0));
        assert_eq!(ev[0].1, MidiOut::SongPosition(0));
        assert_eq!(ev[1].1, MidiOut::Start);
        let start = ev[1].0;
        let off = (start - beat0) as f64 % 5e8;
        assert!(off.min(5e8 - off) < 1e3, "start {off} ns off the beat");
        let c = clocks(&ev);
        // 10 s at 120 BPM, less the wait for the first beat: 24 × 2 per s.
        let span = (c[c.len() - 1] - c[0]) as f64 / 1e9;
        let rate = (c.len() - 1) as f64 / span;
        assert!((rate / 48.0 - 1.0).abs() < 0.001, "{rate} pulses/s");
        for (i, t) in c.iter().enumerate().step_by(24) {
            let off = (*t - beat0) as f64 % 5e8;
            assert!(
                off.min(5e8 - off) < 1e4,
                "pulse {i} is {off} ns off its beat"
            );
        }
    }

    #[test]
    fn a_phase_shift_is_followed_without_a_burst() {
        let beat0 = 0;
        let mut p = ClockPlan::new(OPTS);
        let mut ev = run(&mut p, 100_000_000, 3_000_000_000, steady(120.0, beat0));
        // The music's grid moves 30 ms later.
        let moved = 30_000_000;
        ev.extend(run(
            &mut p,
            3_000_000_000,
            14_000_000_000,
            steady(120.0, beat0 + moved),
        ));
        let c = clocks(&ev);
        let pulse = 5e8 / 24.0;
        for w in c.windows(2) {
            let d = (w[1] - w[0]) as f64;
            assert!((d / pulse - 1.0).abs() <= 0.0046, "pulse gap {d} ns");
        }
        // 30 ms at ~4 ms per beat: after 8 s the beat pulses sit on the
        // new grid (within the dead band).
        let late: Vec<_> = c
            .iter()
            .enumerate()
            .filter(|(i, t)| **t > 11_000_000_000 && i % 24 == 0)
            .collect();
        assert!(!late.is_empty());
        for (_, t) in late {
            let off = (*t as f64 - moved as f64).rem_euclid(5e8);
            assert!(off.min(5e8 - off) < 2.5e6, "beat pulse {off} ns off");
        }
    }

    #[test]
    fn a_slipping_phase_does_not_move_the_rate_off_the_tempo() {
        // The tracker says 120 BPM but its phase loses 1.5 % (a tracker
        // that keeps re-deciding the phase): the clock keeps the tempo.
        let mut p = ClockPlan::new(OPTS);
        let ev = run(&mut p, 0, 20_000_000_000, |now| {
            let beats = now as f64 / 5e8 * 0.985;
            TempoSnapshot {
                bpm: 120.0,
                phase: beats.rem_euclid(1.0) as f32,
                t_ns: now,
                locked: true,
            }
        });
        let c = clocks(&ev);
        let rate = (c.len() - 1) as f64 / ((c[c.len() - 1] - c[0]) as f64 / 1e9);
        assert!((rate / 48.0 - 1.0).abs() < 0.005, "{rate} pulses/s");
    }

    #[test]
    fn tempo_changes_are_followed() {
        let mut p = ClockPlan::new(OPTS);
        let mut ev = run(&mut p, 0, 2_000_000_000, steady(120.0, 0));
        ev.extend(run(&mut p, 2_000_000_000, 12_000_000_000, steady(128.0, 0)));
        let c: Vec<u64> = clocks(&ev)
            .into_iter()
            .filter(|t| *t > 4_000_000_000)
            .collect();
        let rate = (c.len() - 1) as f64 / ((c[c.len() - 1] - c[0]) as f64 / 1e9);
        assert!((rate / (128.0 * 24.0 / 60.0) - 1.0).abs() < 0.005, "{rate}");
    }

    #[test]
    fn losing_the_lock_stops_after_the_grace_and_relock_starts_again() {
        let mut p = ClockPlan::new(OPTS);
        let s = steady(100.0, 0);
        let mut ev = run(&mut p, 0, 2_000_000_000, &s);
        let lost = |now| TempoSnapshot {
            locked: false,
            bpm: 0.0,
            ..s(now)
        };
        ev.extend(run(&mut p, 2_000_000_000, 2_300_000_000, lost));
        assert!(p.running(), "still running within the grace");
        ev.extend(run(&mut p, 2_300_000_000, 4_000_000_000, lost));
        assert!(!p.running());
        let stops: Vec<_> = ev.iter().filter(|(_, e)| *e == MidiOut::Stop).collect();
        assert_eq!(stops.len(), 1);
        let stop_t = stops[0].0;
        assert!((2_500_000_000..2_600_000_000).contains(&stop_t), "{stop_t}");
        assert!(
            clocks(&ev).iter().all(|t| *t < stop_t),
            "no pulse after Stop"
        );
        let ev2 = run(&mut p, 4_000_000_000, 5_000_000_000, &s);
        assert_eq!(ev2[0].1, MidiOut::SongPosition(0));
        assert_eq!(ev2[1].1, MidiOut::Start);
    }

    #[test]
    fn a_stalled_thread_does_not_burst_pulses() {
        let mut p = ClockPlan::new(OPTS);
        let s = steady(120.0, 0);
        let _ = run(&mut p, 0, 1_000_000_000, &s);
        let mut n = 0;
        p.poll(1_500_000_000, &s(1_500_000_000), &mut |e| {
            if e == MidiOut::Clock {
                n += 1
            }
        });
        assert_eq!(n, 1, "one pulse after a stall, not the 24 missed ones");
    }
}
