//! The running service's token keeper: a thread of its own that keeps the
//! token file and the token in force the same while the service runs
//! ([`keep`]). The token's creation and reading are in the parent module.

use super::{read_token, write_token, Secret, Source};
use crate::rt::StopFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a running service looks at its token file ([`keep`]).
pub const KEEP_EVERY: Duration = Duration::from_secs(10);

/// What a look at the token file found that was worth saying.
#[derive(Debug, PartialEq, Eq)]
enum Kept {
    /// The file holds the token in force.
    Same,
    /// The file was gone: the token in force was written back.
    WrittenBack,
    /// The file holds another usable token, in force from now on.
    Adopted,
    /// Neither (unreadable, malformed, cannot be written): the token in
    /// force is unchanged.
    Problem(String),
}

/// Keep the token file and the token in force the same while the service
/// runs, looking every [`KEEP_EVERY`] on a thread of its own (the disk may
/// be a slow SD card: never the supervisor, whose watchdog pings must not
/// wait on it). A file deleted (with the state directory or alone) is
/// written back, so that `phase4 token` shows the token in force; a file
/// that holds another usable token (`phase4 token` made one after a
/// deletion, or the administrator wrote one) becomes the token in force for
/// every door. Before (tester aa T1) the service kept the token it started
/// with, and `phase4 token` then printed a new one it refused. Clients
/// already allowed stay allowed until they reconnect. Nothing to do for a
/// token from `ws.token` or one kept for this run only.
pub fn keep(secret: &Secret, stop: StopFd) -> std::io::Result<Option<JoinHandle<()>>> {
    let Source::File(path) = &secret.source else {
        return Ok(None);
    };
    let (secret, path) = (secret.clone(), path.clone());
    let mut known = path.parent().and_then(dir_id);
    let thread = std::thread::Builder::new()
        .stack_size(crate::rt::THREAD_STACK)
        .name("p4-token".into())
        .spawn(move || {
            let mut said: Option<String> = None;
            while !stopped_within(&stop, KEEP_EVERY) {
                let mut kept = look(&secret, &path, &mut known);
                if matches!(kept, Kept::Problem(_)) && !stopped_within(&stop, Duration::from_secs(1)) {
                    // Perhaps caught while `phase4 token` writes it.
                    kept = look(&secret, &path, &mut known);
                }
                match kept {
                    Kept::Same => {
                        if said.take().is_some() {
                            log::info!("ws: {} holds the control token in force again", path.display());
                        }
                    }
                    Kept::WrittenBack => {
                        said = None;
                        log::warn!(
                            "ws: {} was gone; the control token in force was written back",
                            path.display()
                        );
                    }
                    Kept::Adopted => {
                        said = None;
                        log::warn!(
                            "ws: {} holds another control token; it is the one in force from now on \
                             (clients already allowed stay so until they reconnect)",
                            path.display()
                        );
                    }
                    Kept::Problem(why) => {
                        if said.as_deref() != Some(why.as_str()) {
                            log::warn!(
                                "ws: {}: {why}; the control token in force is unchanged",
                                path.display()
                            );
                            said = Some(why);
                        }
                    }
                }
            }
        })?;
    Ok(Some(thread))
}

/// A directory's (device, inode, owner). The owner too: a directory
/// deleted and made again may get the same inode number back (ci92 saw
/// it), but one another user made is theirs.
type DirId = (u64, u64, u32);

fn dir_id(dir: &Path) -> Option<DirId> {
    std::fs::metadata(dir)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.uid()))
}

/// Whether a file or directory owned by `uid` may be trusted with the
/// token: this process's user's or root's (the rule start uses too).
use crate::service::state_dir::trusted_owner;

/// Whether a state directory that is gone may be made again: its nearest
/// existing ancestor is this user's or root's, and no one else may write
/// there (who could, could make the directory first).
fn may_make_again(dir: &Path) -> bool {
    dir.ancestors()
        .skip(1)
        .find_map(|a| std::fs::metadata(a).ok())
        .is_some_and(|m| trusted_owner(m.uid()) && m.mode() & 0o022 == 0)
}

/// Whether `stop` fired within `wait`.
fn stopped_within(stop: &StopFd, wait: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags};
    use std::os::fd::AsFd;
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, ms), Ok(1))
}

/// One look at the token file, putting right what it can.
/// Only the state directory phase4 started with, or one it made again
/// itself, is written to or read from: a directory another local user
/// made in its place (its parent is `/tmp`, or a tmp cleaner removed it)
/// would be given the token in force, and could hand phase4 theirs
/// (review ae AE3). `known` is that directory's [`DirId`].
fn look(secret: &Secret, path: &Path, known: &mut Option<DirId>) -> Kept {
    let Some(dir) = path.parent() else {
        return Kept::Problem("no directory".into());
    };
    match (dir_id(dir), *known) {
        (Some(now), Some(was)) if now != was => {
            return Kept::Problem(
                "its directory is not the one phase4 started with (made again, or replaced); \
                 restart the service to keep a token there"
                    .into(),
            )
        }
        (None, _) if !may_make_again(dir) => {
            return Kept::Problem(
                "gone with its directory, whose parent others may write to: not made again; \
                 restart the service to keep a token there"
                    .into(),
            )
        }
        _ => {}
    }
    match read_token(path) {
        Ok(Some(t)) if *secret.token() == t => Kept::Same,
        Ok(Some(t)) => match std::fs::symlink_metadata(path) {
            Ok(m) if trusted_owner(m.uid()) => {
                *secret.token.write().unwrap_or_else(|e| e.into_inner()) = t;
                Kept::Adopted
            }
            Ok(m) => Kept::Problem(format!(
                "holds another token, but belongs to uid {}: not taken",
                m.uid()
            )),
            Err(e) => Kept::Problem(e.to_string()),
        },
        Ok(None) => {
            match write_token(dir, &secret.token()) {
                Ok(()) => {
                    *known = dir_id(dir);
                    Kept::WrittenBack
                }
                // Made meanwhile (`phase4 token`): the next look reads it.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Kept::Same,
                Err(e) => Kept::Problem(format!("gone, and cannot be written back: {e}")),
            }
        }
        Err(e) => Kept::Problem(format!("not a usable token ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{file_token, load_or_create, TOKEN_FILE};
    use super::*;
    use crate::config::Config;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_running_service_keeps_its_token_file_and_the_token_in_force_the_same() {
        // Tester aa T1: the state directory deleted while running; the
        // service kept its token, and `phase4 token` made one it refused.
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        let mut c = Config::default();
        c.state.dir = dir.display().to_string();
        let s = load_or_create(&c);
        let door = s.clone();
        let Source::File(path) = s.source.clone() else {
            panic!("{:?}", s.source)
        };
        let first = s.reveal();
        let mut known = dir_id(&dir);
        assert_eq!(look(&s, &path, &mut known), Kept::Same);
        // Deleted with its directory: written back, private, the same.
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(look(&s, &path, &mut known), Kept::WrittenBack);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), first);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(look(&s, &path, &mut known), Kept::Same);
        // Deleted, then `phase4 token` made a new one first: that one is in
        // force, at every door.
        std::fs::remove_file(&path).unwrap();
        let made = file_token(&dir).unwrap();
        assert_ne!(made, first);
        assert_eq!(look(&s, &path, &mut known), Kept::Adopted);
        assert!(door.matches(&made) && !door.matches(&first));
        // A file that is no token changes nothing and is left for the
        // administrator (the next start moves it aside).
        std::fs::write(&path, "x\n").unwrap();
        assert!(matches!(look(&s, &path, &mut known), Kept::Problem(_)));
        assert!(door.matches(&made));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x\n");

        // Review ae AE3: a directory another user made in its place is
        // neither written to nor read from (only root can make one of
        // another user's here; the inode number may come back).
        if nix::unistd::geteuid().is_root() {
            std::fs::remove_dir_all(&dir).unwrap();
            std::fs::create_dir(&dir).unwrap();
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
            assert!(
                matches!(look(&s, &path, &mut known), Kept::Problem(w) if w.contains("not the one"))
            );
            assert!(!path.exists());
            std::fs::write(&path, "planted-token-0123456789\n").unwrap();
            assert!(matches!(look(&s, &path, &mut known), Kept::Problem(_)));
            assert!(door.matches(&made) && !door.matches("planted-token-0123456789"));
            std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
        }
        // Gone, under a parent others may write to: not made again.
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let (odir, opath) = (open.join("state"), open.join("state").join(TOKEN_FILE));
        std::fs::create_dir(&odir).unwrap();
        let mut oknown = dir_id(&odir);
        std::fs::remove_dir(&odir).unwrap();
        assert!(
            matches!(look(&s, &opath, &mut oknown), Kept::Problem(w) if w.contains("others may write"))
        );
        assert!(!odir.exists());
        // A token file of another user is not taken.
        if nix::unistd::geteuid().is_root() {
            let mut known = dir_id(&dir);
            std::fs::remove_file(&path).unwrap();
            let _ = look(&s, &path, &mut known);
            let mut known = dir_id(&dir);
            std::fs::remove_file(&path).unwrap();
            std::fs::write(&path, "someone-elses-token-0123\n").unwrap();
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            assert!(
                matches!(look(&s, &path, &mut known), Kept::Problem(w) if w.contains("uid 65534"))
            );
            assert!(door.matches(&made));
        }
    }
}
