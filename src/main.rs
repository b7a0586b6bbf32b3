//! The `phase4` command: parse arguments, set up logging, dispatch.

use phase4::app::{self, RunOptions, EXIT_CONFIG};
use phase4::config::{self, Config, ConfigError};
use std::path::PathBuf;
use std::process::ExitCode;

const EXIT_USAGE: u8 = 64;

const HELP: &str = "\
phase4: real-time audio feature server (ALSA → OSC + WebSocket)

USAGE:
  phase4 [--config PATH] [--device PCM] [--input FILE.wav [--loop]] [--log-level LEVEL] [--duration S]
                                               run the service (default)
  phase4 --check-config PATH                   validate a config file and exit (78 if invalid)
  phase4 devices                               list capture devices
  phase4 analyze FILE.wav [--format jsonl|csv] [--config PATH] [--bins]
                                               same DSP, offline, as fast as possible
                                               (--bins: include the log spectrum, JSON Lines)
OPTIONS:
  --config PATH      config file (default: /etc/phase4/phase4.toml, else built-in defaults)
  --device PCM       ALSA capture PCM, overrides audio.device
  --input FILE.wav   play a WAV file at real time instead of capturing
  --loop             loop the --input file
  --log-level LEVEL  error, warn, info (default), debug, trace
  --duration S       stop after S seconds of audio
  -h, --help         this text
  -V, --version      version
";

#[derive(Default)]
struct Args {
    command: Option<String>,
    file: Option<PathBuf>,
    config: Option<PathBuf>,
    check: Option<PathBuf>,
    device: Option<String>,
    input: Option<PathBuf>,
    looping: bool,
    log_level: Option<String>,
    format: Option<String>,
    duration: Option<f64>,
    bins: bool,
}

fn parse() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args::default();
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("config") | Short('c') => a.config = Some(p.value()?.into()),
            Long("check-config") => a.check = Some(p.value()?.into()),
            Long("device") | Short('d') => a.device = Some(p.value()?.string()?),
            Long("input") | Short('i') => a.input = Some(p.value()?.into()),
            Long("loop") => a.looping = true,
            Long("log-level") => a.log_level = Some(p.value()?.string()?),
            Long("format") => a.format = Some(p.value()?.string()?),
            Long("duration") => a.duration = Some(p.value()?.parse()?),
            Long("bins") => a.bins = true,
            Short('h') | Long("help") => {
                print!("{HELP}");
                std::process::exit(0);
            }
            Short('V') | Long("version") => {
                println!("phase4 {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            Value(v) if a.command.is_none() => a.command = Some(v.string()?),
            Value(v) if a.command.as_deref() == Some("analyze") && a.file.is_none() => {
                a.file = Some(v.into())
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(a)
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, ConfigError> {
    match config::search_path(path.map(|p| p.as_path())) {
        Some(p) => config::load_file(&p),
        None => Ok(Config::default()),
    }
}

fn config_or_exit(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    load_config(path).map_err(|e| {
        eprintln!("phase4: {e}");
        match e {
            ConfigError::Invalid { .. } => ExitCode::from(EXIT_CONFIG as u8),
            ConfigError::Io { .. } => ExitCode::from(EXIT_CONFIG as u8),
        }
    })
}

fn main() -> ExitCode {
    // Threads that libraries spawn (tiny_http's pool) take the default stack
    // size; with mlockall every one of those 2 MiB stacks would be resident.
    // Still single-threaded here, so setting the variable is race-free.
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        std::env::set_var("RUST_MIN_STACK", phase4::rt::THREAD_STACK.to_string());
    }
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("phase4: {e}\n\n{HELP}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let level = match args.log_level.as_deref().unwrap_or("info").parse() {
        Ok(l) => l,
        Err(_) => {
            eprintln!("phase4: --log-level must be one of error, warn, info, debug, trace");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    if let Some(path) = &args.check {
        return match config::load_file(path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG as u8)
            }
        };
    }

    match args.command.as_deref() {
        Some("devices") => {
            for d in phase4::capture::devices::list() {
                if d.available {
                    println!(
                        "{:>3}  {}\n     {}\n     channels {:?}, rates {:?}, formats {}",
                        d.index,
                        d.name,
                        d.description,
                        d.channels.unwrap_or_default(),
                        d.rates.unwrap_or_default(),
                        d.formats.join(" ")
                    );
                } else {
                    println!(
                        "{:>3}  {}  (unavailable: {})",
                        d.index,
                        d.name,
                        d.error.unwrap_or_default()
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Some("analyze") => {
            let Some(file) = args.file else {
                eprintln!("phase4: analyze needs a WAV file\n\n{HELP}");
                return ExitCode::from(EXIT_USAGE);
            };
            let format = match args.format.as_deref().unwrap_or("jsonl") {
                "jsonl" => phase4::analyze::Format::Jsonl,
                "csv" => phase4::analyze::Format::Csv,
                other => {
                    eprintln!("phase4: --format must be jsonl or csv, not {other:?}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let cfg = match config_or_exit(args.config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match phase4::analyze::analyze(&file, &cfg, format, args.bins, &mut out) {
                Ok(s) => {
                    eprintln!(
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
                Err(e) => {
                    eprintln!("phase4: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(other) => {
            eprintln!("phase4: unknown command {other:?}\n\n{HELP}");
            ExitCode::from(EXIT_USAGE)
        }
        None => {
            phase4::service::logging::init(level);
            let mut cfg = match config_or_exit(args.config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Some(d) = args.device {
                cfg.audio.device = d;
            }
            if let Some(i) = args.input {
                cfg.audio.input = i.display().to_string();
            }
            if args.looping {
                cfg.audio.loop_input = true;
            }
            // Seconds of audio, converted to frames at the rate the input
            // actually opens with (a WAV's own rate, a device's negotiated one).
            let code = app::run(
                cfg,
                RunOptions {
                    max_audio_s: args.duration,
                    stats: None,
                },
            );
            ExitCode::from(code as u8)
        }
    }
}
