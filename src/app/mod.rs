//! The supervisor: builds everything from the configuration, starts the
//! threads in order (workers, OSC, WebSocket, then capture), says READY once
//! the first block has gone through, pings the watchdog only while every
//! thread makes progress, writes the health line, logs what the capture
//! thread reports, and stops everything on SIGTERM/SIGINT within a second.
//!
//! Only the supervisor knows every channel.

pub mod devices;
pub mod health;
pub mod listing;
mod osc_watch;
pub mod pipeline;
pub mod reload;

use crate::capture::thread::{CaptureEvent, FatalKind};
use crate::config::Config;
use crate::service::notify::Notifier;
use crate::stats::{Role, Stats};
use health::Health;
use pipeline::Pipeline;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit status for a bad configuration (sysexits EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;
/// Exit status for a fatal start-up failure (device missing with
/// `on-missing-device = "fail"`, unusable WAV input, ports taken).
pub const EXIT_FAILURE: i32 = 1;

/// How the service is run, beyond the configuration.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Stop after this many seconds of audio, counted at the rate of the
    /// input actually open (tests, benchmarks, `--duration`).
    pub max_audio_s: Option<f64>,
    /// Use these counters instead of fresh ones (lets a test or benchmark
    /// read them after `run` returns).
    pub stats: Option<Arc<Stats>>,
    /// The configuration file, re-read on SIGHUP (`None`: built-in defaults).
    pub config_path: Option<std::path::PathBuf>,
    /// What the command line put over the file (put over it again on reload).
    pub cli: reload::CliOverrides,
}

/// A heartbeat older than this means the thread is not making progress.
/// Every thread beats at least every ~100 ms (park and poll timeouts).
const STALE_NS: u64 = 1_000_000_000;

/// The supervisor's tick while running (a signal ends a tick early).
const TICK: Duration = Duration::from_millis(100);
/// Its tick until READY, which it must notice quickly.
const TICK_STARTING: Duration = Duration::from_millis(20);

/// Run the service until a stop is requested or the input ends. Returns the
/// process exit status.
pub fn run(config: Config, opts: RunOptions) -> i32 {
    crate::service::signals::install();
    crate::rt::fault::install();
    // alsa-lib's own messages go through our (rate-limited) log, not stderr.
    let mut alsa_log = crate::capture::alsa_log::AlsaLog::default();
    if !crate::capture::alsa_log::install() {
        log::warn!("alsa-lib refused the error handler; its messages go to stderr");
    }
    let stats = opts.stats.clone().unwrap_or_default();
    let started = Instant::now();
    let mut notifier = Notifier::from_env();
    // Runtime changes from the UI live in the state directory and are
    // layered over the configuration (a corrupt state file is moved aside).
    let base = config;
    let problems = preflight(&base);
    if !problems.is_empty() {
        for p in &problems {
            log::error!("configuration: {p}");
        }
        return EXIT_CONFIG;
    }
    let (config, state) = crate::control::state::layer_at_start(&base, devices::listed_names);
    let mut pipeline = match Pipeline::start(&config, &base, &state, stats.clone(), &opts) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{e:#}");
            return EXIT_FAILURE;
        }
    };
    let mut reloader = reload::Reloader::new(
        opts.config_path.clone(),
        opts.cli.clone(),
        base.clone(),
        state.clone(),
    );
    let roles = pipeline.roles();
    let mut health = Health::new();
    let mut health_every = Duration::from_secs_f64(config.health.interval_s);
    let mut last_health = Instant::now();
    let mut ready = false;
    let mut exit = 0;
    let mut memlock_done = false;
    let mut osc_watch = osc_watch::OscWatch::new(if config.osc.enabled {
        &config.osc.destinations
    } else {
        &[]
    });

    while !crate::service::signals::stop_requested() {
        // Signals end the wait at once; otherwise the supervisor ticks every
        // 20 ms until READY (start-up time) and every 100 ms after it: its
        // wake-ups are part of the process's context switches.
        crate::service::signals::wait(if ready { TICK } else { TICK_STARTING });
        // What the capture thread reported.
        while let Some(ev) = pipeline.next_event() {
            match ev {
                CaptureEvent::Opened { info, rt } => {
                    log::info!(
                        "capture: {} open: format {}, access {}, rate {} Hz, {} channel(s), period {} frames, buffer {} frames, clock {}, SCHED_FIFO {}",
                        info.name, info.format, info.access, info.rate, info.channels,
                        info.period, info.buffer,
                        if info.clocked { "yes (device or sound server)" } else { "none (null plugin at the end of the chain: lossless, not real-time)" },
                        rt.as_str()
                    );
                    if rt == crate::rt::RtGrant::Refused {
                        log::warn!("real-time priority refused (need CAP_SYS_NICE or LimitRTPRIO); running at normal priority");
                    }
                    if info.clocked && config.realtime.lock_memory && !memlock_done {
                        memlock_done = true;
                        let g = crate::rt::lock_memory();
                        stats.set_grant(&stats.mem_locked, g);
                        match g {
                            crate::rt::RtGrant::Granted => log::info!("memory locked (mlockall)"),
                            _ => log::warn!("mlockall refused (need CAP_IPC_LOCK or LimitMEMLOCK); memory may page out"),
                        }
                    }
                    pipeline.update_meta(&info);
                    warn_beyond_nyquist(&pipeline.shared.config(), info.rate);
                }
                CaptureEvent::OpenFailed { error, retry_s } => {
                    if let Some(held) = pipeline.open_fail_limit.allow() {
                        log::warn!("{error}; retrying in {retry_s:.2} s ({held} similar message(s) suppressed)");
                    }
                    // The service is up and doing its job (waiting for the
                    // device, which it will pick up by itself): tell systemd,
                    // or it would time out the start and restart-loop.
                    if !ready {
                        ready = true;
                        log::info!("ready: waiting for the capture device");
                        notifier.ready(&health::status_line(&stats, &[]));
                    }
                }
                CaptureEvent::Gone(e) => log::warn!(
                    "{e}; reopening (reopen {})",
                    stats.reopens.load(Ordering::Relaxed)
                ),
                CaptureEvent::Fatal { error, kind } => {
                    log::error!("{error}");
                    // A configuration problem exits 78, which systemd does
                    // not restart (RestartPreventExitStatus=78): restarting
                    // cannot make a missing file or device appear.
                    exit = match kind {
                        FatalKind::Config => EXIT_CONFIG,
                        FatalKind::Runtime => EXIT_FAILURE,
                    };
                    crate::service::signals::request_stop();
                }
                CaptureEvent::Ended => {
                    log::info!("input ended; stopping");
                    pipeline.drain_outputs(Duration::from_millis(500));
                    crate::service::signals::request_stop();
                }
            }
        }
        alsa_log.drain(|l| log::warn!("{l}"));
        let stale = stats.stale_threads(&roles, STALE_NS);
        if !ready && first_block_through(&stats, &config) {
            ready = true;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            log::info!("ready: first block through the pipeline {ms:.0} ms after start");
            notifier.ready(&health::status_line(&stats, &stale));
        }
        if ready {
            notifier.status(&health::status_line(&stats, &stale));
        }
        // The watchdog is fed only while every pipeline thread makes
        // progress; a hung thread stops the pings and systemd restarts us.
        notifier.tick(ready && stale.is_empty());
        pipeline.poll_params();
        pipeline.poll_switches();
        osc_watch.check(&stats);
        if crate::service::signals::take_reload() {
            notifier.reloading();
            match reloader.reload(&pipeline) {
                reload::Outcome::NoFile => {
                    log::info!("reload: running on built-in defaults; no file to re-read")
                }
                reload::Outcome::Refused(e) => {
                    log::error!("reload: {e}; keeping the running configuration")
                }
                reload::Outcome::Applied {
                    needs_restart,
                    changed,
                } => {
                    health_every = Duration::from_secs_f64(reloader.base().health.interval_s);
                    log::info!(
                        "reload: {}",
                        if changed {
                            "applied"
                        } else {
                            "nothing to apply"
                        }
                    );
                    if !needs_restart.is_empty() {
                        log::warn!(
                            "reload: changes to {} take effect at the next restart",
                            needs_restart.join(", ")
                        );
                    }
                }
            }
            notifier.ready(&health::status_line(&stats, &stale));
        }
        if let Some((n, sig)) = crate::service::signals::take_ignored() {
            log::info!(
                "ignored {n} signal(s) (last: {}); phase4 stops on SIGTERM, SIGINT or SIGQUIT and reloads on SIGHUP",
                crate::service::signals::name(sig)
            );
        }
        if crate::service::signals::take_health_now() {
            log::info!("{}", health_line(&mut health, &osc_watch, &stats));
        }
        if last_health.elapsed() >= health_every {
            last_health = Instant::now();
            log::info!("{}", health_line(&mut health, &osc_watch, &stats));
        }
    }
    notifier.stopping();
    log::info!("stopping");
    health.checkpoint(&stats);
    pipeline.stop(Duration::from_millis(800));
    alsa_log.drain(|l| log::warn!("{l}"));
    log::info!("{}", health_line(&mut health, &osc_watch, &stats));
    exit
}

fn health_line(health: &mut Health, osc: &osc_watch::OscWatch, stats: &Stats) -> String {
    let mut line = health.report(stats).line;
    let down = osc.failing(stats);
    if !down.is_empty() {
        line.push_str(" osc_down=");
        line.push_str(&down.join(","));
    }
    line
}

/// Settings that the configured rate allows but the rate the device opened
/// at does not (a band edge or the spectrum's lowest bin above what the
/// device can carry): the DSP clamps them; say so once, at open.
fn warn_beyond_nyquist(config: &Config, rate: u32) {
    let mut at_rate = config.clone();
    at_rate.audio.sample_rate_hz = rate;
    for p in crate::config::validate(&at_rate) {
        if p.key.starts_with("dsp.") || p.key.starts_with("fft.") {
            log::warn!(
                "{p} at the {rate} Hz the device opened at (configured {} Hz); the DSP clamps it",
                config.audio.sample_rate_hz
            );
        }
    }
}

/// Problems with a configuration that only show outside the file: an input
/// WAV that is missing or cannot be read. `--check-config` reports them, and
/// the service refuses to start on them (exit 78, no restart loop).
pub fn preflight(config: &Config) -> Vec<crate::config::Problem> {
    let mut problems = Vec::new();
    let input = &config.audio.input;
    if !input.is_empty() {
        if let Err(why) = check_input(std::path::Path::new(input), config.audio.channel) {
            problems.push(crate::config::Problem {
                key: "audio.input".into(),
                value: format!("{input:?}"),
                allowed: why,
                line: None,
            });
        }
    }
    problems
}

fn check_input(path: &std::path::Path, channel: i32) -> Result<(), String> {
    let hidden = ["/home/", "/root/", "/run/user/"]
        .iter()
        .any(|p| path.starts_with(p));
    let hint = if hidden && std::env::var_os("INVOCATION_ID").is_some() {
        " (the phase4 systemd unit has ProtectHome=yes, which hides /home, /root and /run/user: put the file under /var/lib/phase4 or /srv)"
    } else {
        ""
    };
    // The same header parser the capture thread and `analyze` use.
    crate::capture::wav::check_input(path, channel).map_err(|e| format!("{e}{hint}"))
}

fn first_block_through(stats: &Stats, config: &Config) -> bool {
    if config.osc.enabled {
        stats.latency.summary_since(None).count > 0
    } else {
        stats.heartbeat_ns[Role::Bands as usize].load(Ordering::Relaxed) > 0
            && stats.blocks.load(Ordering::Relaxed) > 0
    }
}
