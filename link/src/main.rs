//! `phase4-link`: the Ableton Link peer for phase4.
//!
//! phase4 (MIT) sends its tempo and beat phase to 127.0.0.1:`link.feed-port`
//! (see phase4's `rig::link` for the message). This program (GPL-2.0-or-
//! later, because Ableton Link is) receives them and, only while phase4 is
//! locked, sets the Link session's tempo and moves its beat grid onto the
//! music's. It joins the session at the first lock; silence, an unlocked
//! tracker or a stopped phase4 leave the session as it is.
//!
//! Reads `[link]` from phase4's configuration (`/etc/phase4/phase4.toml`
//! unless `--config` says otherwise), so both programs agree on the port.

mod follow;

use follow::Follower;
use phase4::config::{self, Config};
use phase4::rig::link::FeedMessage;
use rosc::OscPacket;
use rusty_link::{AblLink, SessionState};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const HELP: &str = "\
phase4-link: Ableton Link peer that follows phase4's tempo

USAGE:
  phase4-link [--config PATH] [--port N] [--log-level LEVEL]

OPTIONS:
  --config PATH      phase4's config, for [link] feed-port and quantum
                     (default: /etc/phase4/phase4.toml, else built-in defaults)
  --port N           feed port, overrides link.feed-port
  --log-level LEVEL  error, warn, info (default), debug
  -h, --help         this text
  -V, --version      version
";

/// How often a status line is logged.
const STATUS_EVERY: Duration = Duration::from_secs(60);

struct Args {
    config: Option<PathBuf>,
    port: Option<u16>,
    log_level: log::LevelFilter,
}

fn parse() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args {
        config: None,
        port: None,
        log_level: log::LevelFilter::Info,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("config") | Short('c') => a.config = Some(p.value()?.into()),
            Long("port") | Short('p') => a.port = Some(p.value()?.parse()?),
            Long("log-level") => {
                a.log_level = p
                    .value()?
                    .string()?
                    .parse()
                    .map_err(|_| lexopt::Error::from("bad --log-level"))?
            }
            Short('h') | Long("help") => {
                print!("{HELP}");
                std::process::exit(0);
            }
            Short('V') | Long("version") => {
                println!("phase4-link {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(a)
}

fn load(path: Option<&PathBuf>) -> Result<Config, config::ConfigError> {
    match config::search_path(path.map(|p| p.as_path())) {
        Some(p) => config::load_file(&p),
        None => Ok(Config::default()),
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("phase4-link: {e}\n\n{HELP}");
            return ExitCode::from(64);
        }
    };
    phase4::service::logging::init(args.log_level);
    let cfg = match load(args.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            log::error!("link: {e}");
            return ExitCode::from(78);
        }
    };
    if !cfg.link.enabled {
        log::warn!("link: [link] enabled = false in phase4's config: phase4 sends no tempo until it is turned on");
    }
    let port = args.port.unwrap_or(cfg.link.feed_port);
    phase4::service::signals::install();
    match run(port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("link: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// CLOCK_MONOTONIC minus Link's clock, in µs, read back to back.
fn mono_minus_link_us(link: &AblLink) -> i64 {
    let a = phase4::rt::now_ns();
    let l = link.clock_micros();
    let b = phase4::rt::now_ns();
    ((a / 2 + b / 2) / 1000) as i64 - l
}

fn run(port: u16) -> anyhow::Result<()> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, port))
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    log::info!("link: waiting for phase4's tempo on 127.0.0.1:{port}");
    let link = AblLink::new(120.0);
    let mut state = SessionState::new();
    let mut follower = Follower::default();
    let mut last_msg: Option<Instant> = None;
    let mut last_status = Instant::now();
    let mut buf = [0u8; 1536];
    let mut applied = 0u64;
    while !phase4::service::signals::stop_requested() {
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = Instant::now();
            link.capture_app_session_state(&mut state);
            log::info!(
                "link: {} peer(s), session {:.2} BPM, {} update(s) from phase4",
                link.num_peers(),
                state.tempo(),
                applied
            );
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(_) => continue,
        };
        let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..n]) else {
            continue;
        };
        let Some(msg) = FeedMessage::from_osc(&m) else {
            continue;
        };
        let now = Instant::now();
        let dt = last_msg.map_or(0.02, |t| now.duration_since(t).as_secs_f64());
        last_msg = Some(now);
        if !msg.locked || !(20.0..=999.0).contains(&msg.bpm) {
            follower.reset();
            continue;
        }
        if !link.is_enabled() {
            link.enable(true);
            log::info!(
                "link: phase4 locked at {:.2} BPM: joining the Link session",
                msg.bpm
            );
        }
        let at = (msg.t_ns / 1000) as i64 - mono_minus_link_us(&link);
        let quantum = (msg.quantum as f64).clamp(1.0, 16.0);
        link.capture_app_session_state(&mut state);
        let session_beat = state.beat_at_time(at, quantum);
        log::trace!(
            "link: phase4 {:.3} BPM phase {:.4} at {at} µs; session {:.3} BPM beat {session_beat:.4}",
            msg.bpm,
            msg.phase,
            state.tempo()
        );
        let change = follower.decide(
            msg.bpm as f64,
            msg.phase as f64,
            state.tempo(),
            session_beat,
            dt,
        );
        if change.tempo.is_none() && change.beat.is_none() {
            continue;
        }
        if let Some(bpm) = change.tempo {
            state.set_tempo(bpm, at);
        }
        if let Some(beat) = change.beat {
            state.force_beat_at_time(beat, at, quantum);
        }
        link.commit_app_session_state(&state);
        applied += 1;
        log::debug!("link: applied {change:?}");
    }
    link.enable(false);
    Ok(())
}
