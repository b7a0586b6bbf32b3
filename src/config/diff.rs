//! What a configuration change needs: applied live, a capture restart or a
//! process restart ([`diff`]), and what a reload (SIGHUP) takes
//! ([`reload_plan`]).

use super::{Config, FftConfig};

/// How a configuration change can be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    /// Nothing changed.
    Nothing,
    /// The workers take it through the parameter handoff.
    Live,
    /// The capture stream must be reopened (device, rate, block, format).
    RestartCapture,
    /// The process must restart (ports, thread priorities, FFT window).
    RestartProcess,
}

/// Decide how `new` can replace `old`.
pub fn diff(old: &Config, new: &Config) -> Apply {
    if old == new {
        return Apply::Nothing;
    }
    // The snapshot rate is applied live by the WebSocket thread.
    let ws_rest_differs = {
        let (mut a, mut b) = (old.ws.clone(), new.ws.clone());
        a.snapshot_hz = 0.0;
        b.snapshot_hz = 0.0;
        a != b
    };
    if old.realtime != new.realtime
        || ws_rest_differs
        || old.osc != new.osc
        || old.state != new.state
        || old.monitor != new.monitor
        || old.record != new.record
        || old.health != new.health
        || old.discovery != new.discovery
        || old.oscquery != new.oscquery
        || old.link != new.link
        || old.midi != new.midi
        || old.wled != new.wled
        || old.fft.window_frames != new.fft.window_frames
        || old.fft.hop_frames != new.fft.hop_frames
    {
        return Apply::RestartProcess;
    }
    if old.audio != new.audio {
        return Apply::RestartCapture;
    }
    Apply::Live
}

/// What a reload (SIGHUP) of the configuration file can do.
#[derive(Clone, Debug, PartialEq)]
pub struct ReloadPlan {
    /// `old` with every change that applies while running taken from `new`:
    /// the DSP settings (bands, filter order, auto-scaler, spectrum except
    /// its window and hop, onsets, tempo, silence), the snapshot rate and
    /// the health interval.
    pub applied: Config,
    /// Keys whose change needs a restart (they keep their running values).
    pub needs_restart: Vec<&'static str>,
}

/// Split the change from `old` to `new` into what applies live and what
/// waits for a restart.
pub fn reload_plan(old: &Config, new: &Config) -> ReloadPlan {
    let mut applied = old.clone();
    applied.dsp = new.dsp.clone();
    applied.autoscale = new.autoscale;
    applied.fft = FftConfig {
        window_frames: old.fft.window_frames,
        hop_frames: old.fft.hop_frames,
        ..new.fft
    };
    applied.onset = new.onset;
    applied.tempo = new.tempo;
    applied.silence = new.silence;
    applied.ws.snapshot_hz = new.ws.snapshot_hz;
    applied.health = new.health;
    applied.ui = new.ui;
    let mut needs_restart = Vec::new();
    let mut ws_rest = (old.ws.clone(), new.ws.clone());
    ws_rest.0.snapshot_hz = 0.0;
    ws_rest.1.snapshot_hz = 0.0;
    for (key, differs) in [
        ("audio", old.audio != new.audio),
        ("realtime", old.realtime != new.realtime),
        (
            "fft.window-frames",
            old.fft.window_frames != new.fft.window_frames,
        ),
        ("fft.hop-frames", old.fft.hop_frames != new.fft.hop_frames),
        ("osc", old.osc != new.osc),
        ("ws", ws_rest.0 != ws_rest.1),
        ("state", old.state != new.state),
        ("monitor", old.monitor != new.monitor),
        ("record", old.record != new.record),
        ("discovery", old.discovery != new.discovery),
        ("oscquery", old.oscquery != new.oscquery),
        ("link", old.link != new.link),
        ("midi", old.midi != new.midi),
        ("wled", old.wled != new.wled),
    ] {
        if differs {
            needs_restart.push(key);
        }
    }
    ReloadPlan {
        applied,
        needs_restart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_applies_dsp_changes_and_lists_the_rest() {
        let old = Config::default();
        let mut new = old.clone();
        new.dsp.low.hi_hz = 200.0;
        new.fft.hop_frames = 256;
        new.fft.n_bins = 64;
        new.ws.port = 9999;
        new.ws.snapshot_hz = 30.0;
        let plan = reload_plan(&old, &new);
        assert_eq!(plan.applied.dsp.low.hi_hz, 200.0);
        assert_eq!(plan.applied.fft.n_bins, 64);
        assert_eq!(plan.applied.fft.hop_frames, old.fft.hop_frames);
        assert_eq!(plan.applied.ws.snapshot_hz, 30.0);
        assert_eq!(plan.applied.ws.port, old.ws.port);
        assert_eq!(plan.needs_restart, vec!["fft.hop-frames", "ws"]);
    }

    #[test]
    fn diff_says_what_can_be_applied_live() {
        let old = Config::default();
        let mut new = old.clone();
        assert_eq!(diff(&old, &new), Apply::Nothing);
        new.autoscale.strength = 0.5;
        new.ws.snapshot_hz = 30.0;
        assert_eq!(diff(&old, &new), Apply::Live);
        new.audio.device = "hw:1".into();
        assert_eq!(diff(&old, &new), Apply::RestartCapture);
        new.ws.port = 9999;
        assert_eq!(diff(&old, &new), Apply::RestartProcess);
    }
}
