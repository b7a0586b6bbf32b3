//! The supervisor's loop on the main thread, once the pipeline runs: each
//! tick it logs what the capture thread reported, says READY once the first
//! block has gone through, feeds the watchdog only while every thread makes
//! progress, advances parameter changes and device switches, reloads on
//! SIGHUP and writes the health line; on a stop it stops the pipeline
//! within its deadline.
//!
//! A tick never waits on anything but the signal wait that starts it.

use super::health::{self, Health};
use super::osc_watch::OscWatch;
use super::pipeline::Pipeline;
use super::reload::{self, Reloader};
use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::capture::alsa_log::AlsaLog;
use crate::capture::thread::{CaptureEvent, FatalKind};
use crate::config::Config;
use crate::rt::RtGrant;
use crate::service::notify::Notifier;
use crate::service::signals;
use crate::stats::{DeviceInfo, Role, Stats};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A reload that left phase4 this much larger hands the heap's free pages
/// back ([`crate::rt::give_back_freed`]); the shipped file's parse grows it
/// by a few hundred KiB at most.
const RELOAD_GROWTH_TRIMMED: u64 = 2 << 20;
/// A heartbeat older than this means the thread is not making progress.
/// Every thread beats at least every ~100 ms (park and poll timeouts),
/// and the capture thread once a block: see [`stale_limit_ns`].
const STALE_NS: u64 = 1_000_000_000;
/// At most one "gone; reopening" line at warning level per this long.
const GONE_EVERY: Duration = Duration::from_secs(30);
/// A device open that has not returned for this long: READY is sent (the
/// service is up, waiting for its device) and STATUS says so.
const OPEN_SLOW_NS: u64 = 3_000_000_000;
/// A device open that has not returned for this long is a hang: the
/// watchdog pings stop.
const OPEN_HANG_NS: u64 = 60_000_000_000;

/// How old a heartbeat may be with `frames`-frame blocks at `rate` Hz:
/// [`STALE_NS`], or two blocks where a block takes longer (2048 frames at
/// 1 kHz is a legal 2 s block, during which the capture thread waits; it
/// used to be reported degraded at every block, and the watchdog pings
/// held back).
fn stale_limit_ns(frames: u32, rate: u32) -> u64 {
    let block_ns = frames as u64 * 1_000_000_000 / rate.max(1) as u64;
    STALE_NS.max(2 * block_ns)
}

/// The supervisor's tick while running (a signal ends a tick early).
const TICK: Duration = Duration::from_millis(100);
/// Its tick until READY, which it must notice quickly.
const TICK_STARTING: Duration = Duration::from_millis(20);

/// How long the threads have to stop once a stop is requested.
const STOP_WAIT: Duration = Duration::from_millis(800);

/// Shortest time between two reloads, between two health lines asked for
/// with SIGUSR1 and between two "ignored signal(s)" lines: a storm of
/// signals is one reload (or line) a second, the ones in between folded
/// into the next. (One reload and one log line per SIGHUP was ~2300
/// reloads, as many RELOADING=1/READY=1 pairs and up to 3.7 s of CPU in
/// 3 s from a loop of `kill -HUP`.)
const SIGNAL_GAP: Duration = Duration::from_secs(1);

/// An action a signal asks for, taken at most once a [`SIGNAL_GAP`]:
/// asks in between are kept and taken when it ends (the supervisor ticks
/// every [`TICK`] anyway).
#[derive(Default)]
struct Spaced {
    last: Option<Instant>,
    pending: bool,
}

impl Spaced {
    /// Whether the gap since the last action has passed.
    fn open(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|t| now.duration_since(t) >= SIGNAL_GAP)
    }

    /// Whether to act now, `asked` saying whether it was asked for since
    /// the last call.
    fn due(&mut self, asked: bool, now: Instant) -> bool {
        self.pending |= asked;
        if self.pending && self.open(now) {
            self.pending = false;
            self.last = Some(now);
            true
        } else {
            false
        }
    }
}

/// Everything the loop keeps between ticks.
pub(super) struct Supervisor {
    pipeline: Pipeline,
    /// The configuration the pipeline started with (state layered over it).
    config: Config,
    stats: Arc<Stats>,
    roles: Vec<Role>,
    notifier: Notifier,
    reloader: Reloader,
    health: Health,
    health_every: Duration,
    last_health: Instant,
    osc_watch: OscWatch,
    alsa_log: AlsaLog,
    started: Instant,
    ready: bool,
    memlock_done: bool,
    /// `mlockall` was refused after a reload's trim ([`Self::reload`]):
    /// tried again at each periodic health line until it is granted
    /// (review ab: before, `mlock=refused` stayed for the rest of the run).
    relock_pending: bool,
    /// [`stale_limit_ns`] for the device open now.
    stale_ns: u64,
    exit: i32,
    reloads: Spaced,
    asked_health: Spaced,
    ignored_lines: Spaced,
    /// "gone; reopening" lines: a device that opens and stays silent (a
    /// suspended sound server's sink) is reopened every few seconds for
    /// as long as it lasts.
    gone_limit: crate::service::logging::RateLimit,
    /// The last "gone" line was held back: so is the reopen's "open" line.
    quiet_reopen: bool,
}

impl Supervisor {
    pub(super) fn new(
        pipeline: Pipeline,
        config: Config,
        stats: Arc<Stats>,
        notifier: Notifier,
        reloader: Reloader,
        alsa_log: AlsaLog,
        started: Instant,
    ) -> Self {
        let osc_watch = OscWatch::new(if config.osc.enabled {
            &config.osc.destinations
        } else {
            &[]
        });
        Supervisor {
            roles: pipeline.roles(),
            pipeline,
            health_every: Duration::from_secs_f64(config.health.interval_s),
            config,
            stats,
            notifier,
            reloader,
            health: Health::new(),
            last_health: Instant::now(),
            osc_watch,
            alsa_log,
            started,
            ready: false,
            memlock_done: false,
            relock_pending: false,
            stale_ns: STALE_NS,
            exit: 0,
            reloads: Spaced::default(),
            asked_health: Spaced::default(),
            ignored_lines: Spaced::default(),
            gone_limit: crate::service::logging::RateLimit::new(GONE_EVERY),
            quiet_reopen: false,
        }
    }

    /// Tick until a stop is requested or the input ends; stop the pipeline
    /// and return the process exit status.
    pub(super) fn run(mut self) -> i32 {
        while !signals::stop_requested() {
            // Signals end the wait at once; otherwise the supervisor ticks
            // every 20 ms until READY (start-up time) and every 100 ms after
            // it: its wake-ups are part of the process's context switches.
            signals::wait(if self.ready { TICK } else { TICK_STARTING });
            self.tick();
        }
        self.stop()
    }

    fn tick(&mut self) {
        while let Some(ev) = self.pipeline.next_event() {
            self.capture_event(ev);
        }
        self.alsa_log.drain(|level, l| log::log!(level, "{l}"));
        let mut stale = self.stats.stale_threads(&self.roles, self.stale_ns);
        let opening = self.stats.opening_for_ns();
        // A capture thread blocked in a device's open (a sound server that
        // does not answer) is waiting, not hung, for OPEN_HANG_NS: the
        // service goes on (READY, pings, a STATUS that says so) and takes
        // the device when it answers. Restarting would block in the same
        // open. Past that, the pings stop and systemd restarts us.
        if opening.is_some_and(|ns| ns < OPEN_HANG_NS) {
            stale.retain(|r| *r != Role::Capture);
        }
        self.stats
            .capture_stale
            .store(stale.contains(&Role::Capture), Ordering::Relaxed);
        if !self.ready && opening.is_some_and(|ns| ns > OPEN_SLOW_NS) {
            self.ready = true;
            log::warn!(
                "ready: the capture device has not answered its open for {:.0} s; waiting for it",
                OPEN_SLOW_NS as f64 / 1e9
            );
            self.notifier
                .ready(&health::status_line(&self.stats, &stale));
        }
        if !self.ready && first_block_through(&self.stats, &self.config) {
            self.ready = true;
            let ms = self.started.elapsed().as_secs_f64() * 1000.0;
            log::info!("ready: first block through the pipeline {ms:.0} ms after start");
            self.notifier
                .ready(&health::status_line(&self.stats, &stale));
        }
        if self.ready {
            self.notifier
                .status(&health::status_line(&self.stats, &stale));
        }
        // The watchdog is fed only while every pipeline thread makes
        // progress; a hung thread stops the pings and systemd restarts us.
        self.notifier.tick(self.ready && stale.is_empty());
        self.pipeline.poll_params();
        self.pipeline.poll_switches();
        self.osc_watch.check(&self.stats);
        let now = Instant::now();
        if self.reloads.due(signals::take_reload(), now) {
            self.reload(&stale);
        }
        // The count goes on in `signals` until the line may be written.
        if self.ignored_lines.open(now) {
            if let Some((n, sig)) = signals::take_ignored() {
                self.ignored_lines.due(true, now);
                log::info!(
                    "ignored {n} signal(s) (last: {}); phase4 stops on SIGTERM, SIGINT or SIGQUIT and reloads on SIGHUP",
                    signals::name(sig)
                );
            }
        }
        if self.asked_health.due(signals::take_health_now(), now) {
            log::info!("{}", self.health_line());
        }
        if self.last_health.elapsed() >= self.health_every {
            self.last_health = Instant::now();
            self.relock();
            log::info!("{}", self.health_line());
        }
    }

    /// Lock memory again after a refused relock ([`Self::relock_pending`]),
    /// while capture delivers (a device being reopened maps its buffer and
    /// would wait on the lock's mapping lock: review ac).
    fn relock(&mut self) {
        if !self.relock_pending || !self.stats.delivering() {
            return;
        }
        if crate::rt::lock_memory() == RtGrant::Granted {
            self.relock_pending = false;
            self.stats
                .set_grant(&self.stats.mem_locked, RtGrant::Granted);
            log::info!("memory locked again (mlockall)");
        }
    }

    /// Log and act on what the capture thread reported.
    fn capture_event(&mut self, ev: CaptureEvent) {
        match ev {
            CaptureEvent::Opened { info, rt } => self.opened(&info, rt),
            CaptureEvent::OpenFailed { error, retry_s } => {
                *self
                    .stats
                    .open_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = error.chars().take(200).collect();
                if let Some(held) = self.pipeline.open_fail_limit.allow() {
                    log::warn!(
                        "{error}; retrying in {retry_s:.2} s ({held} similar message(s) suppressed)"
                    );
                }
                // The service is up and doing its job (waiting for the
                // device, which it will pick up by itself): tell systemd,
                // or it would time out the start and restart-loop.
                if !self.ready {
                    self.ready = true;
                    log::info!("ready: waiting for the capture device");
                    self.notifier.ready(&health::status_line(&self.stats, &[]));
                }
            }
            CaptureEvent::Gone(e) => match self.gone_limit.allow() {
                Some(held) => {
                    self.quiet_reopen = false;
                    log::warn!(
                        "{e}; reopening (reopen {}{})",
                        self.stats.reopens.load(Ordering::Relaxed),
                        if held > 0 {
                            format!(
                                "; {held} more since the last such line, their reopens logged at debug level"
                            )
                        } else {
                            String::new()
                        }
                    )
                }
                None => {
                    self.quiet_reopen = true;
                    log::debug!(
                        "{e}; reopening (reopen {})",
                        self.stats.reopens.load(Ordering::Relaxed)
                    )
                }
            },
            CaptureEvent::Fatal { error, kind } => {
                log::error!("{error}");
                // A configuration problem exits 78, which systemd does not
                // restart (RestartPreventExitStatus=78): restarting cannot
                // make a missing file or device appear.
                self.exit = match kind {
                    FatalKind::Config => EXIT_CONFIG,
                    FatalKind::Runtime => EXIT_FAILURE,
                };
                signals::request_stop();
            }
            CaptureEvent::Ended => {
                log::info!("input ended; stopping");
                self.pipeline.drain_outputs(Duration::from_millis(500));
                signals::request_stop();
            }
        }
    }

    /// A device is open: say how, lock memory once a clocked device runs,
    /// and tell the outputs its rate and block size.
    fn opened(&mut self, info: &DeviceInfo, rt: RtGrant) {
        self.stats
            .open_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.stale_ns = stale_limit_ns(info.period.max(self.config.audio.block_frames), info.rate);
        let quiet = std::mem::take(&mut self.quiet_reopen);
        log::log!(
            if quiet { log::Level::Debug } else { log::Level::Info },
            "capture: {} open: format {}, access {}, rate {} Hz, {} channel(s), period {} frames, buffer {} frames, clock {}, SCHED_FIFO {}",
            info.name, info.format, info.access, info.rate, info.channels,
            info.period, info.buffer,
            if info.clocked { "yes (device or sound server)" } else { "none (null plugin at the end of the chain: lossless, not real-time)" },
            rt.as_str()
        );
        if rt == RtGrant::Refused {
            log::warn!("real-time priority refused (need CAP_SYS_NICE or LimitRTPRIO); running at normal priority");
        }
        if info.clocked && self.config.realtime.lock_memory && !self.memlock_done {
            self.memlock_done = true;
            let g = crate::rt::lock_memory();
            self.stats.set_grant(&self.stats.mem_locked, g);
            match g {
                RtGrant::Granted => log::info!("memory locked (mlockall)"),
                _ => log::warn!(
                    "mlockall refused (need CAP_IPC_LOCK or LimitMEMLOCK); memory may page out"
                ),
            }
        }
        self.pipeline.update_meta(info);
        if !quiet {
            warn_beyond_nyquist(&self.pipeline.shared.config(), info.rate);
        }
    }

    /// SIGHUP: re-read the file and apply what can change live.
    fn reload(&mut self, stale: &[Role]) {
        // Before the first block the service is still starting: systemd
        // hears READY=1 only once audio flows (a reload must not announce
        // it early, when no watchdog ping would follow).
        if self.ready {
            self.notifier.reloading();
        }
        // The presets folder is read again whatever becomes of the file
        // (by the presets' writer thread; the control thread asks it).
        self.pipeline
            .shared
            .rescan_presets
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let resident_before = crate::rt::resident_bytes();
        match self.reloader.reload(&self.pipeline) {
            reload::Outcome::NoFile => {
                log::info!("reload: running on built-in defaults; no file to re-read")
            }
            reload::Outcome::Refused(e) => {
                // One line per problem, as at start and in --check-config
                // (a multi-line message became one line with `\n`s).
                let mut lines = e.lines();
                log::error!(
                    "reload: keeping the running configuration: {}",
                    lines.next().unwrap_or_default()
                );
                for line in lines {
                    log::error!("reload: {}", line.trim_start());
                }
            }
            reload::Outcome::Applied {
                needs_restart,
                changed,
            } => {
                self.health_every = Duration::from_secs_f64(self.reloader.base().health.interval_s);
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
        // What the file's parse freed goes back to the kernel, or it stays
        // resident, and locked, for the rest of the run. Only after a parse
        // that grew phase4 (a large file): unlocking and locking memory
        // again costs a few milliseconds that a shipped-size file does not
        // need.
        // Not while capture is not delivering: a device being reopened
        // allocates in alsa-lib and maps its buffer, and would wait on the
        // trim's arena and mapping locks (review ac).
        let grown = self.stats.delivering()
            && crate::rt::resident_bytes()
                .zip(resident_before)
                .is_some_and(|(after, before)| after > before + RELOAD_GROWTH_TRIMMED);
        let locked = self.stats.grant(&self.stats.mem_locked) == RtGrant::Granted;
        if grown && !crate::rt::give_back_freed(locked) {
            self.stats
                .set_grant(&self.stats.mem_locked, RtGrant::Refused);
            self.relock_pending = true;
            log::warn!(
                "reload: mlockall refused after the heap was trimmed; memory may page out (tried again with each health line)"
            );
        }
        if self.ready {
            self.notifier
                .ready(&health::status_line(&self.stats, stale));
        }
    }

    fn health_line(&mut self) -> String {
        let mut line = self.health.report(&self.stats).line;
        let down = self.osc_watch.failing(&self.stats);
        if !down.is_empty() {
            line.push_str(" osc_down=");
            line.push_str(&down.join(","));
        }
        let waiting = crate::transport::bind::waiting();
        if !waiting.is_empty() {
            line.push_str(" bind_waiting=");
            line.push_str(&waiting.join(","));
        }
        line
    }

    fn stop(mut self) -> i32 {
        self.notifier.stopping();
        log::info!("stopping");
        self.health.checkpoint(&self.stats);
        self.pipeline.stop(STOP_WAIT);
        self.alsa_log.drain(|level, l| log::log!(level, "{l}"));
        log::info!("{}", self.health_line());
        self.exit
    }
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

fn first_block_through(stats: &Stats, config: &Config) -> bool {
    if config.osc.enabled {
        stats.latency.summary_since(None).count > 0
    } else {
        stats.heartbeat_ns[Role::Bands as usize].load(Ordering::Relaxed) > 0
            && stats.blocks.load(Ordering::Relaxed) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_block_is_not_taken_for_a_hang() {
        assert_eq!(stale_limit_ns(256, 48_000), STALE_NS);
        assert_eq!(stale_limit_ns(2048, 48_000), STALE_NS);
        assert_eq!(stale_limit_ns(2048, 1_000), 4_096_000_000);
        assert_eq!(stale_limit_ns(2048, 0), 2 * 2048 * 1_000_000_000);
    }

    #[test]
    fn a_storm_of_asks_is_one_action_a_gap_and_none_is_lost() {
        let mut s = Spaced::default();
        let t = Instant::now();
        assert!(s.due(true, t), "the first is taken at once");
        let ms = |n| t + Duration::from_millis(n);
        // Asked 99 more times within the gap: nothing yet.
        assert!((1..100).all(|i| !s.due(true, ms(i * 5))));
        // Not asked again, but the asks before are taken once it ends...
        assert!(!s.due(false, ms(999)));
        assert!(s.due(false, ms(1000)));
        // ...and only once.
        assert!(!s.due(false, ms(3000)));
        // A lone ask after a quiet gap is taken at once.
        assert!(s.due(true, ms(3000)));
    }
}
