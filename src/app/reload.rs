//! SIGHUP: re-read the configuration file, validate it, apply what can be
//! applied while running, and keep running on the old one if anything is
//! wrong with the new one.

use super::pipeline::Pipeline;
use crate::config::{self, Config};
use crate::control::state::State;
use crate::dsp::params::DspParams;
use std::path::PathBuf;

/// What the command line put over the configuration file; a reload puts it
/// over the re-read file the same way.
#[derive(Clone, Debug, Default)]
pub struct CliOverrides {
    /// `--device`.
    pub device: Option<String>,
    /// `--input`.
    pub input: Option<String>,
    /// `--loop`.
    pub loop_input: bool,
}

impl CliOverrides {
    /// Put the overrides over `cfg`.
    pub fn apply(&self, cfg: &mut Config) {
        if let Some(d) = &self.device {
            cfg.audio.device = d.clone();
        }
        if let Some(i) = &self.input {
            cfg.audio.input = i.clone();
        }
        if self.loop_input {
            cfg.audio.loop_input = true;
        }
    }
}

/// Keeps what a reload compares against.
pub struct Reloader {
    path: Option<PathBuf>,
    cli: CliOverrides,
    /// The configuration in force, before the runtime state.
    base: Config,
    /// The runtime state, when no control thread owns it (WebSocket off).
    state: State,
}

/// How a reload ended, for the log and STATUS=.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Nothing to re-read (built-in defaults).
    NoFile,
    /// The file is unusable; nothing changed.
    Refused(String),
    /// Applied; these keys wait for a restart.
    Applied {
        /// Keys whose change needs a restart.
        needs_restart: Vec<&'static str>,
        /// Whether anything applied at all changed.
        changed: bool,
    },
}

impl Reloader {
    /// `base` is the configuration the service started from (overrides
    /// applied), `state` the runtime state layered over it at start.
    pub fn new(path: Option<PathBuf>, cli: CliOverrides, base: Config, state: State) -> Self {
        Reloader {
            path,
            cli,
            base,
            state,
        }
    }

    /// The configuration in force (before the runtime state).
    pub fn base(&self) -> &Config {
        &self.base
    }

    /// Re-read the file and apply it to the running pipeline.
    pub fn reload(&mut self, pipeline: &Pipeline) -> Outcome {
        let Some(path) = &self.path else {
            return Outcome::NoFile;
        };
        let mut new = match config::load_file(path) {
            Ok(c) => c,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        if let Some(warning) = config::token_exposure(path, &new) {
            log::warn!("{warning}");
        }
        self.cli.apply(&mut new);
        // Control refused the last file after this reloader took it as the
        // base (a client's change came in between): compare with what
        // control kept, so that the same file is sent again (tester ad AD2).
        if let Some(kept) = pipeline
            .shared
            .reload_refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            self.base = kept;
        }
        // A new input file takes effect at the next restart; one that
        // cannot be read would make that restart fail, so the file is
        // refused now, as `--check-config` refuses it.
        if (&new.audio.input, new.audio.channel)
            != (&self.base.audio.input, self.base.audio.channel)
        {
            if let Some(p) = super::preflight(&new).first() {
                return Outcome::Refused(p.to_string());
            }
        }
        let plan = config::reload_plan(&self.base, &new);
        let changed = plan.applied != self.base;
        if changed {
            if self.base.ws.enabled {
                // The control thread owns the runtime state: it layers it
                // over the new base and publishes the parameters. Checked
                // here first, the same way, so that a file that fails only
                // with the runtime state over it changes nothing (not the
                // health interval, not the base the next reload compares
                // against) and is reported as refused.
                if let Some(p) = pipeline.shared.reload_problem(&self.base, &plan.applied) {
                    return Outcome::Refused(p);
                }
                *pipeline
                    .shared
                    .reload
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(plan.applied.clone());
            } else {
                let state = self.state.rebase(&self.base, &plan.applied);
                let effective = state.apply(&plan.applied);
                if let Some(p) = config::validate(&effective).first() {
                    return Outcome::Refused(p.to_string());
                }
                pipeline.params.publish(DspParams::from_config(&effective));
                self.state = state;
            }
            self.base = plan.applied;
        }
        Outcome::Applied {
            needs_restart: plan.needs_restart,
            changed,
        }
    }
}
