//! The state file on disk: read (bounded) and layered over the
//! configuration at start, moved aside when unusable, written atomically.
//! Runs at start-up and on the control thread.

use super::super::device::DeviceCatalog;
use super::{merge_text_fitting, AudioState, State};
use crate::config::Config;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the runtime state inside the state directory.
pub const STATE_FILE: &str = "state.toml";
/// Largest state file read (phase4 writes about 1 KiB).
pub const MAX_STATE_BYTES: u64 = 64 * 1024;

/// Why a state or preset file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not a state of this version.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The configuration to start with: `config` with the state in `dir` layered
/// over it. A state file that cannot be used (not UTF-8, too large, not
/// TOML, out-of-range values) is moved aside with a warning and the service
/// starts on the configuration alone. A device named in the state is used
/// only if `listed` (the names phase4 enumerates; called only when needed)
/// holds it or the configuration names it (see [`State::chosen_device`]).
pub fn layer_at_start(config: &Config, listed: impl FnOnce() -> Vec<String>) -> (Config, State) {
    let base = State::from_config(config);
    let Some(dir) = config.state_dir() else {
        return (config.clone(), base);
    };
    let path = dir.join(STATE_FILE);
    let text = match read_bounded(&path) {
        Ok(Some(t)) => t,
        Ok(None) => return (config.clone(), base),
        Err(Unusable::Io(e)) => {
            log::warn!(
                "state: cannot read {}: {e}; starting on the configuration",
                path.display()
            );
            return (config.clone(), base);
        }
        Err(Unusable::Content(reason)) => {
            move_aside(&dir, &path, &reason);
            return (config.clone(), base);
        }
    };
    match merge_text_fitting(&base, &text, config) {
        Ok((mut state, unfit)) => {
            for why in &unfit {
                log::warn!(
                    "state: {why} (the configuration changed since it was saved); using the configuration's value"
                );
            }
            log::info!(
                "state: runtime settings from {} layered over the configuration",
                path.display()
            );
            let mut layered = state.apply(config);
            let wanted =
                !state.audio.device.is_empty() && state.audio.config_device == config.audio.device;
            let catalog = if wanted {
                DeviceCatalog::new(listed(), &config.audio.device)
            } else {
                DeviceCatalog::default()
            };
            match state.chosen_device(config, &catalog) {
                Some(d) => layered.audio.device = d.to_string(),
                // A sound card's name is kept: a card can be away for one
                // start (a USB interface enumerated late, a cable out). It
                // is never opened unless phase4 lists it; control looks for
                // it while it runs and switches to it when it is.
                None if wanted && crate::control::device::is_card_name(&state.audio.device) => {
                    log::info!(
                        "state: capturing from the configured {:?} until {:?} is listed",
                        config.audio.device,
                        state.audio.device
                    )
                }
                None if wanted => {
                    // Anything else is forgotten, on disk too: the name is
                    // not kept around for a later version or a tired admin
                    // to trip over.
                    state.audio = AudioState::default();
                    if let Err(e) = write_atomic(&path, &file_text(&state)) {
                        log::warn!("state: cannot rewrite {}: {e}", path.display());
                    }
                }
                None => {}
            }
            (layered, state)
        }
        Err(reason) => {
            move_aside(&dir, &path, &reason);
            (config.clone(), base)
        }
    }
}

enum Unusable {
    /// Could not be read (permissions, I/O): left where it is.
    Io(std::io::Error),
    /// Read, but cannot be a state file: moved aside.
    Content(String),
}

/// The text of `path` (`None` when there is none), read no further than
/// [`MAX_STATE_BYTES`].
fn read_bounded(path: &Path) -> Result<Option<String>, Unusable> {
    use std::io::Read;
    // A symlink, FIFO or device is refused (and moved aside), never
    // followed or waited on.
    let f = match crate::service::safe_fs::open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(Unusable::Content("not a regular file".into()))
        }
        Err(e) => return Err(Unusable::Io(e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Unusable::Io)?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(Unusable::Content(format!(
            "larger than {} KiB",
            MAX_STATE_BYTES / 1024
        )));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| Unusable::Content(format!("not UTF-8 text ({e})")))
}

/// Move an unusable state file aside for inspection (see
/// [`crate::service::safe_fs::move_aside`] for its name), and say so.
fn move_aside(dir: &Path, path: &Path, reason: &str) {
    match crate::service::safe_fs::move_aside(dir, STATE_FILE) {
        Ok(aside) => log::warn!(
            "state: {} is unusable ({reason}); moved aside to {}, starting on the configuration",
            path.display(),
            aside.display()
        ),
        Err(e) => log::warn!(
            "state: {} is unusable ({reason}) and could not be moved aside ({e}); starting on the configuration",
            path.display()
        ),
    }
}

/// The text of the state file for `state`.
pub fn file_text(state: &State) -> String {
    format!(
        "# phase4 runtime state: settings changed from the UI, layered over the\n# configuration at start. Written by phase4; delete it to go back to the\n# configuration.\n{}",
        state.to_toml()
    )
}

/// Write `text` to `path` atomically: a temp file in the same directory,
/// fsync, rename over the old file, fsync the directory. A crash leaves
/// either the old file or the new one, never half of one.
///
/// The temp file has a name of its own (`.NAME.tmp-PID-NONCE`) and is
/// made new (creating fails rather than follow a symlink planted under
/// it), so the write can never land in another file, and two writers (two
/// threads, or a second phase4 that got past the directory's lock) never
/// remove or rename each other's temp file (tester ah AH2: a fixed name,
/// removed first, did both). The rename replaces a symlink at `path`
/// itself, not what it points to. When the write, fsync or rename fails
/// (a full disk) this writer's temp file is removed again. Errors name the
/// file that failed.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), StateError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| StateError::Io { path: p, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::service::safe_fs::create_dirs(dir).map_err(io(dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let mut nonce = [0u8; 4];
    getrandom::getrandom(&mut nonce).map_err(|e| io(dir)(std::io::Error::other(e.to_string())))?;
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:08x}",
        std::process::id(),
        u32::from_le_bytes(nonce)
    ));
    let mut f = crate::service::safe_fs::create_new(&tmp, 0o644).map_err(io(&tmp))?;
    crate::service::safe_fs::adopt(&f, dir);
    let written = f
        .write_all(text.as_bytes())
        .and_then(|()| {
            crate::rt::fault::slow_fsync();
            f.sync_all()
        })
        .map_err(io(&tmp))
        .and_then(|()| {
            drop(f);
            std::fs::rename(&tmp, path).map_err(io(path))
        });
    if let Err(e) = written {
        // The temp file is ours (made new above). Left behind, a full disk
        // would leave one per preset name for good.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(d) = std::fs::File::open(dir) {
        crate::rt::fault::slow_fsync();
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_as_the_state_file_is_moved_aside_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.state.dir = dir.path().display().to_string();
        let path = dir.path().join(STATE_FILE);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (layered, _) = layer_at_start(&c, Vec::new);
        assert_eq!(layered, c);
        assert!(std::fs::symlink_metadata(&path).is_err());
    }

    #[test]
    fn a_write_never_lands_in_a_file_a_planted_symlink_points_to() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = dir.path().join(STATE_FILE);
        // Under the temp file's name, and as the file itself.
        std::os::unix::fs::symlink(&victim, dir.path().join(format!(".{STATE_FILE}.tmp"))).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomic(&path, "[dsp.mid]\nlo-hz = 300.0\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[dsp.mid]\nlo-hz = 300.0\n"
        );
    }

    #[test]
    fn writers_never_remove_or_take_each_others_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        // Another writer's temp file, under the name every writer used.
        let theirs = dir.path().join(format!(".{STATE_FILE}.tmp"));
        std::fs::write(&theirs, "theirs").unwrap();
        // Writers at once (two instances saving the same preset): each
        // save succeeds and what is left is one of them whole.
        let texts: Vec<String> = (0..4).map(|i| format!("# writer {i}\n")).collect();
        std::thread::scope(|s| {
            for t in &texts {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..200 {
                        write_atomic(path, t).unwrap();
                    }
                });
            }
        });
        assert!(texts.contains(&std::fs::read_to_string(&path).unwrap()));
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "theirs");
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 2, "temp files were left behind");
    }

    #[test]
    fn a_failed_write_leaves_no_temp_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        // A folder that is not empty where the file goes: the rename fails
        // (EISDIR), also for root, after the temp file was written.
        let path = dir.path().join("p1.toml");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), "").unwrap();
        let e = write_atomic(&path, "[dsp.mid]\nlo-hz = 300.0\n").unwrap_err();
        assert!(e.to_string().contains("p1.toml"), "{e}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["p1.toml"], "a temp file was left behind");
    }

    #[test]
    fn corrupt_state_files_of_one_second_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.state.dir = dir.path().display().to_string();
        for i in 0..3 {
            std::fs::write(dir.path().join(STATE_FILE), format!("[[[ garbage {i}")).unwrap();
            let _ = layer_at_start(&c, Vec::new);
        }
        let mut kept: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect();
        kept.sort();
        // Within one second or across two: three copies either way.
        assert_eq!(kept, ["[[[ garbage 0", "[[[ garbage 1", "[[[ garbage 2"]);
    }

    #[test]
    fn a_corrupt_state_file_is_moved_aside_and_the_config_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.state.dir = dir.path().display().to_string();
        std::fs::write(dir.path().join(STATE_FILE), "[[[ garbage").unwrap();
        let (layered, _) = layer_at_start(&c, Vec::new);
        assert_eq!(layered, c);
        assert!(!dir.path().join(STATE_FILE).exists());
        let moved = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.toml.corrupt-")
            });
        assert!(moved);
    }

    #[test]
    fn a_setting_the_new_configuration_no_longer_allows_falls_back_alone() {
        // Saved at 48 kHz (the high band up to 16 kHz), with a runtime
        // change; then the admin sets 16 kHz and a high band to 7 kHz.
        let dir = tempfile::tempdir().unwrap();
        let mut old = Config::default();
        old.state.dir = dir.path().display().to_string();
        let mut saved = State::from_config(&old);
        saved.autoscale.tau_release_s = 12.5;
        std::fs::write(dir.path().join(STATE_FILE), file_text(&saved)).unwrap();
        let mut c = old.clone();
        c.audio.sample_rate_hz = 16_000;
        c.dsp.high.hi_hz = 7000.0;
        assert!(crate::config::validate(&c).is_empty());
        let (layered, state) = layer_at_start(&c, Vec::new);
        assert_eq!(layered.dsp.high.hi_hz, 7000.0, "the configuration's value");
        assert_eq!(
            layered.autoscale.tau_release_s, 12.5,
            "the runtime change kept"
        );
        assert_eq!(state.autoscale.tau_release_s, 12.5);
        assert!(dir.path().join(STATE_FILE).exists(), "not moved aside");
        // A file wrong in itself (a wrong type; a value no configuration
        // allows) is still refused as a whole.
        for text in [
            "[autoscale]\nstrength = \"x\"\n",
            "[autoscale]\nstrength = 9.0\n",
        ] {
            std::fs::write(dir.path().join(STATE_FILE), text).unwrap();
            let (layered, _) = layer_at_start(&c, Vec::new);
            assert_eq!(layered, c, "{text}");
            assert!(!dir.path().join(STATE_FILE).exists(), "moved aside: {text}");
        }
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.state.dir = dir.path().display().to_string();
        let mut s = State::from_config(&c);
        s.dsp.low.hi_hz = 200.0;
        s.fft.enabled = true;
        write_atomic(&dir.path().join(STATE_FILE), &s.to_toml()).unwrap();
        let (layered, loaded) = layer_at_start(&c, Vec::new);
        assert_eq!(loaded, s);
        assert_eq!(layered.dsp.low.hi_hz, 200.0);
        assert!(layered.fft.enabled);
    }

    fn state_file(dir: &Path, device: &str, config_device: &str) -> Config {
        let mut c = Config::default();
        c.state.dir = dir.display().to_string();
        let mut s = State::from_config(&c);
        s.audio.device = device.into();
        s.audio.config_device = config_device.into();
        s.fft.enabled = true;
        write_atomic(&dir.join(STATE_FILE), &s.to_toml()).unwrap();
        c
    }

    #[test]
    fn the_configured_device_wins_when_it_was_changed_since() {
        let dir = tempfile::tempdir().unwrap();
        let c = state_file(dir.path(), "hw:1", "default");
        let listed = || vec!["hw:1".to_string()];
        assert_eq!(layer_at_start(&c, listed).0.audio.device, "hw:1");
        let mut c2 = c.clone();
        c2.audio.device = "hw:2".into();
        assert_eq!(layer_at_start(&c2, listed).0.audio.device, "hw:2");
    }

    /// Issue 8, item 1: the state file is not trusted to name a PCM.
    #[test]
    fn a_state_file_naming_an_unlisted_device_keeps_the_rest_but_not_the_device() {
        for bad in [
            "file:'|sh -c \"id >> x\"',raw",
            "file:FILE=/var/lib/phase4/state.toml",
            "{ type file slave.pcm null file \"|id\" }",
            "hw:1 ",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let c = state_file(dir.path(), bad, "default");
            let (layered, state) = layer_at_start(&c, || vec!["hw:1".to_string()]);
            assert_eq!(layered.audio.device, "default", "{bad:?}");
            assert!(layered.fft.enabled, "the rest of the state is kept");
            assert_eq!(state.audio, AudioState::default());
            assert!(!state.to_toml().contains("file:"));
            let on_disk = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
            assert!(!on_disk.contains(bad.trim()), "{on_disk}");
            assert!(on_disk.contains("enabled = true"), "{on_disk}");
        }
    }

    /// Tester q's F9: a sound card chosen at runtime and away at one start
    /// (a USB interface enumerated late) lost the choice for good. Its
    /// name stays in the state; capture starts on the configured device.
    #[test]
    fn a_sound_card_away_at_start_stays_chosen() {
        for card in [
            "hw:CARD=USB,DEV=0",
            "plughw:CARD=Audio_2,DEV=1",
            "sysdefault:CARD=X",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let c = state_file(dir.path(), card, "default");
            let (layered, state) = layer_at_start(&c, || vec!["hw:1".to_string()]);
            assert_eq!(layered.audio.device, "default", "{card}");
            assert_eq!(state.audio.device, card);
            let on_disk = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
            assert!(on_disk.contains(card), "{on_disk}");
            // Listed at the next start: used.
            let (layered, _) = layer_at_start(&c, || vec![card.to_string()]);
            assert_eq!(layered.audio.device, card);
        }
    }

    #[test]
    fn a_state_file_that_is_not_utf8_or_too_large_is_moved_aside() {
        for bytes in [
            b"[fft]\nenabled = true\n\xff\xfe".to_vec(),
            vec![b'#'; MAX_STATE_BYTES as usize + 1],
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut c = Config::default();
            c.state.dir = dir.path().display().to_string();
            std::fs::write(dir.path().join(STATE_FILE), &bytes).unwrap();
            let (layered, _) = layer_at_start(&c, Vec::new);
            assert_eq!(layered, c);
            assert!(!dir.path().join(STATE_FILE).exists());
            let aside: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("state.toml.corrupt-")
                })
                .collect();
            assert_eq!(aside.len(), 1);
            assert_eq!(std::fs::read(aside[0].path()).unwrap(), bytes);
        }
    }
}
