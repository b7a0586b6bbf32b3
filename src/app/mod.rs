//! The supervisor: builds everything from the configuration, starts the
//! threads in order (workers, OSC, WebSocket, then capture: `pipeline`),
//! then runs the loop on the main thread (`supervisor`) that says READY once
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
mod supervisor;

use crate::config::Config;
use crate::service::notify::Notifier;
use crate::stats::Stats;
use pipeline::Pipeline;
use std::sync::Arc;
use std::time::Instant;

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

/// Run the service until a stop is requested or the input ends. Returns the
/// process exit status.
pub fn run(config: Config, opts: RunOptions) -> i32 {
    crate::service::signals::install();
    crate::rt::fault::install();
    // alsa-lib's own messages go through our (rate-limited) log, not stderr.
    let alsa_log = crate::capture::alsa_log::AlsaLog::default();
    if !crate::capture::alsa_log::install() {
        log::warn!("alsa-lib refused the error handler; its messages go to stderr");
    }
    let stats = opts.stats.clone().unwrap_or_default();
    let started = Instant::now();
    let notifier = Notifier::from_env();
    // Runtime changes from the UI live in the state directory and are
    // layered over the configuration (a corrupt state file is moved aside).
    let base = config;
    let problems = preflight(&base);
    if !problems.is_empty() {
        for p in &problems {
            log::error!("configuration: {p}");
        }
        // The input's check opens the file: with no descriptor left (a
        // leaky parent, a low LimitNOFILE) it fails as a bad file would,
        // and exit 78 is one the unit never restarts (tester ag AG4).
        if let Some(e) = crate::service::out_of_descriptors() {
            log::error!("out of file descriptors at start ({e}): not a configuration problem");
            return EXIT_FAILURE;
        }
        return EXIT_CONFIG;
    }
    // Before anything in the state directory is read: one that another
    // phase4 holds, or that another user may have made, is not used this
    // run (persistence off). The claim is held until `run` returns.
    let (base, _claim) = crate::service::state_dir::settle(base);
    let (config, state) = crate::control::state::layer_at_start(&base, devices::listed_names);
    let pipeline = match Pipeline::start(&config, &base, &state, stats.clone(), &opts) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{e:#}");
            return EXIT_FAILURE;
        }
    };
    let reloader = reload::Reloader::new(
        opts.config_path.clone(),
        opts.cli.clone(),
        base.clone(),
        state.clone(),
    );
    supervisor::Supervisor::new(
        pipeline, config, stats, notifier, reloader, alsa_log, started,
    )
    .run()
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
