//! The `phase4` command: parse arguments ([`phase4::cli`]), set up logging,
//! dispatch.

use clap::Parser;
use phase4::app::{self, reload::CliOverrides, RunOptions, EXIT_CONFIG};
use phase4::cli::{Cli, Command, Format};
use phase4::config::{self, Config, ConfigError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// sysexits EX_USAGE: the command line is wrong.
const EXIT_USAGE: u8 = 64;

/// Print to stderr; a closed pipe (`phase4 --check-config x | head`) is not
/// an error worth a panic. (Rust ignores SIGPIPE, so `eprintln!` panics on
/// EPIPE and the exit code became 101 instead of the documented one.)
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Print to stdout, as [`say_err`] does to stderr.
macro_rules! say_out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub(crate) fn main() -> ExitCode {
    // A blocked signal mask, an ignored SIGCHLD, an ownerless umask or a
    // real-time policy from whoever started phase4 (tester ag).
    phase4::service::inherited::reset();
    // Threads that libraries spawn take the default stack size; with
    // mlockall every one of those 2 MiB stacks would be resident. Still
    // single-threaded here, so setting the variable is race-free.
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        std::env::set_var("RUST_MIN_STACK", phase4::rt::THREAD_STACK.to_string());
    }
    phase4::rt::limit_malloc_arenas();
    // The child that asks alsa-lib for its device hints (see
    // `capture::devices::hints`): nothing else, and no clap.
    let mut args = std::env::args_os().skip(1);
    if let (Some(a), None) = (args.next(), args.next()) {
        if a == phase4::capture::devices::HINTS_CHILD_ARG {
            use phase4::capture::alsa_log;
            // alsa-lib's messages while it expands the PCM definitions go
            // to standard error as the parent's debug lines.
            alsa_log::install();
            // No logger here: the handler keeps a listing's messages only
            // when debug lines would be seen.
            log::set_max_level(log::LevelFilter::Debug);
            let out = std::io::stdout();
            let written = alsa_log::while_listing(|| {
                phase4::capture::devices::write_hints_child(&mut out.lock())
            });
            alsa_log::AlsaLog::default().drain(|_, text| {
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("{text}\n").as_bytes(),
                );
            });
            return match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            };
        }
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print and succeed; anything else is one
            // error line, the usage line and a hint (clap's format).
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    if let Some(why) = cli.misplaced_option() {
        let _ = phase4::cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, why)
            .print();
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(path) = &cli.check_config {
        return check_config(path);
    }
    match cli.command {
        Some(Command::Devices { all }) => {
            phase4::app::listing::print(all);
            ExitCode::SUCCESS
        }
        Some(Command::Token { .. }) => token(cli.command_config()),
        Some(Command::Analyze {
            ref file,
            format,
            bins,
            ..
        }) => analyze(file, format, bins, cli.command_config()),
        None => run(cli),
    }
}

fn check_config(path: &Path) -> ExitCode {
    let cfg = match config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            say_err!("{e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if let Some(warning) = config::token_exposure(path, &cfg) {
        say_err!("warning: {warning}");
    }
    let problems = app::preflight(&cfg);
    if problems.is_empty() {
        say_out!("{}: ok", path.display());
        ExitCode::SUCCESS
    } else {
        say_err!(
            "{}",
            ConfigError::Invalid {
                origin: path.display().to_string(),
                problems
            }
        );
        ExitCode::from(EXIT_CONFIG as u8)
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<(Config, Option<PathBuf>), ConfigError> {
    match config::search_path(path.map(|p| p.as_path())) {
        Some(p) => config::load_file(&p).map(|c| (c, Some(p))),
        None => Ok((Config::default(), None)),
    }
}

fn config_or_exit(path: Option<&PathBuf>) -> Result<(Config, Option<PathBuf>), ExitCode> {
    load_config(path).map_err(|e| {
        say_err!("phase4: {e}");
        ExitCode::from(EXIT_CONFIG as u8)
    })
}

fn token(config: Option<&PathBuf>) -> ExitCode {
    let cfg = match config_or_exit(config) {
        Ok((c, _)) => c,
        Err(code) => return code,
    };
    // What happens on the way is said (a corrupt token file moved aside
    // and replaced: the old token no longer opens anything).
    phase4::service::logging::init(log::LevelFilter::Warn);
    let report = phase4::transport::ws::token_report(&cfg);
    log::logger().flush();
    match report {
        Ok(text) => {
            // Not print!: it panics when stdout is closed (`| head -0`). A
            // reader that went away has what it wanted; any other failure
            // (`> /dev/full`, a full disk) is said, or a script would take
            // the token for saved (tester ag AG12).
            let written = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())
                .and_then(|()| std::io::Write::flush(&mut std::io::stdout()));
            match written {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    say_err!("phase4: cannot write the token to standard output: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            say_err!("phase4: {e}");
            ExitCode::FAILURE
        }
    }
}

fn analyze(file: &Path, format: Format, bins: bool, config: Option<&PathBuf>) -> ExitCode {
    let format = match format {
        Format::Jsonl => phase4::analyze::Format::Jsonl,
        Format::Csv => phase4::analyze::Format::Csv,
    };
    if bins && format == phase4::analyze::Format::Csv {
        say_err!("error: --bins needs --format jsonl (CSV rows have fixed columns)\n\nFor more information, try '--help'.");
        return ExitCode::from(EXIT_USAGE);
    }
    let mut cfg = match config_or_exit(config) {
        Ok((c, _)) => c,
        Err(code) => return code,
    };
    // The spectrum is what --bins asks for: compute it for this run even
    // when the configuration (the live service's) has the FFT off.
    cfg.fft.enabled |= bins;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match phase4::analyze::analyze(file, &cfg, format, bins, &mut out) {
        Ok(s) => {
            say_err!(
                "analyze: {:.1} s of audio in {:.3} s ({:.0}x real time), {} blocks, {} onsets, {} beats",
                s.audio_s,
                s.wall_s,
                s.audio_s / s.wall_s.max(1e-9),
                s.blocks,
                s.onsets,
                s.beats
            );
            ExitCode::SUCCESS
        }
        // The reader went away (`| head`): what it wanted, it has.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            say_err!("phase4: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> ExitCode {
    // `audio.input` is text: a path that is not UTF-8 was converted with
    // U+FFFD in it, another name opened, and the file said not to exist
    // (tester ag AG8). Said as the usage error it is, as for --device.
    if let Some(i) = &cli.run.input {
        if i.to_str().is_none() {
            say_err!(
                "error: --input {}: the file name is not UTF-8; rename the file or link it under a UTF-8 name\n\nFor more information, try '--help'.",
                i.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
    }
    phase4::service::logging::init(cli.run.log_level.into());
    let (mut cfg, config_path) = match config_or_exit(cli.run.config.as_ref()) {
        Ok(c) => c,
        Err(code) => {
            log::logger().flush();
            return code;
        }
    };
    let overrides = CliOverrides {
        device: cli.run.device,
        input: cli.run.input.map(|i| i.display().to_string()),
        loop_input: cli.run.looping,
    };
    if let Some((d, want)) = overrides
        .device
        .as_ref()
        .and_then(|d| Some((d, config::device_name_problem(d)?)))
    {
        // As audio.device in the file: the name goes into log lines and
        // systemd's STATUS=, where a newline starts another assignment.
        log::error!("--device {:?}: {want}", phase4::control::device::shorten(d));
        log::logger().flush();
        return ExitCode::from(EXIT_CONFIG as u8);
    }
    overrides.apply(&mut cfg);
    if let Some(warning) = config_path
        .as_deref()
        .and_then(|p| config::token_exposure(p, &cfg))
    {
        log::warn!("{warning}");
    }
    // Seconds of audio, converted to frames at the rate the input actually
    // opens with (a WAV's own rate, a device's negotiated one).
    let code = app::run(
        cfg,
        RunOptions {
            max_audio_s: cli.run.duration,
            stats: None,
            config_path,
            cli: overrides,
        },
    );
    // The log is written by a thread of its own: let it write the last
    // lines (bounded: a stalled log does not hold up the exit).
    log::logger().flush();
    ExitCode::from(code as u8)
}
