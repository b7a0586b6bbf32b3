//! The supervisor: builds everything from the configuration, starts the
//! threads in order (workers, OSC, WebSocket, then capture), says READY once
//! the first block has gone through, pings the watchdog only while every
//! thread makes progress, writes the health line, logs what the capture
//! thread reports, and stops everything on SIGTERM/SIGINT within a second.
//!
//! Only the supervisor knows every channel.

pub mod devices;
pub mod health;
pub mod pipeline;

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
}

/// A heartbeat older than this means the thread is not making progress.
/// Every thread beats at least every ~100 ms (park and poll timeouts).
const STALE_NS: u64 = 1_000_000_000;

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
    let (config, state) = crate::control::state::layer_at_start(&base);
    let mut pipeline = match Pipeline::start(&config, &base, &state, stats.clone(), &opts) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{e:#}");
            return EXIT_FAILURE;
        }
    };
    let roles = pipeline.roles();
    let mut health = Health::new(&stats);
    let health_every = Duration::from_secs_f64(config.health.interval_s);
    let mut last_health = Instant::now();
    let mut ready = false;
    let mut exit = 0;
    let mut memlock_done = false;

    while !crate::service::signals::stop_requested() {
        std::thread::sleep(Duration::from_millis(20));
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
        if last_health.elapsed() >= health_every {
            last_health = Instant::now();
            log::info!("{}", health.report(&stats).line);
        }
    }
    notifier.stopping();
    log::info!("stopping");
    pipeline.stop(Duration::from_millis(800));
    alsa_log.drain(|l| log::warn!("{l}"));
    log::info!("{}", health.report(&stats).line);
    exit
}

fn first_block_through(stats: &Stats, config: &Config) -> bool {
    if config.osc.enabled {
        stats.latency.summary_since(None).count > 0
    } else {
        stats.heartbeat_ns[Role::Bands as usize].load(Ordering::Relaxed) > 0
            && stats.blocks.load(Ordering::Relaxed) > 0
    }
}
