//! Whether the service may use its state directory, decided once at start
//! before anything in it is read or written.
//!
//! - [`trusted`]: a directory another local user made first (under `/tmp`,
//!   or in their home) would hand phase4 their control token, and
//!   [`super::safe_fs::adopt`] would give them every file phase4 writes
//!   there, recordings of the room included (tester ah AH5). The rule is
//!   the one the running token keeper uses for a directory made again.
//! - [`claim`]: one service per directory. Two instances on one directory
//!   overwrite each other's `state.toml` and presets, and delete each
//!   other's recordings (tester ah AH2); an exclusive `flock` on
//!   `<dir>/.lock`, held for the whole run, keeps the second out. The file
//!   stays empty (the holder's pid is read from `/proc/locks`): a block
//!   written into it would come out of a small disk's room for recordings.
//!
//! Either refusal leaves the service running with persistence off, exactly
//! as `[state] dir = ""` (no state, presets, recordings or token file): a
//! show must not stop over a state directory.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = ".lock";

/// Whether a file or directory owned by `uid` may be trusted: this
/// process's user's or root's.
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// `Ok` when the existing directory `dir` may be trusted: it is this
/// user's or root's, or it sits in a directory of this user's or root's
/// that no one else may write to (an administrator made it there and gave
/// it to the service user: root running phase4 by hand on
/// `/var/lib/phase4`). Otherwise why not, naming the owner.
pub fn trusted(dir: &Path) -> Result<(), String> {
    let real = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let m = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
    if !m.is_dir() {
        return Err(format!("{} is not a directory", real.display()));
    }
    if trusted_owner(m.uid()) {
        return Ok(());
    }
    let parent = real.parent().unwrap_or(Path::new("/"));
    match std::fs::metadata(parent) {
        Ok(p) if trusted_owner(p.uid()) && p.mode() & 0o022 == 0 => Ok(()),
        Ok(p) if !trusted_owner(p.uid()) => Err(format!(
            "{} belongs to uid {}, and its parent {} to uid {}: neither is this user's or root's, so another user may have made it",
            real.display(),
            m.uid(),
            parent.display(),
            p.uid()
        )),
        Ok(_) => Err(format!(
            "{} belongs to uid {}, in {}, which other users may write to: any of them may have made it",
            real.display(),
            m.uid(),
            parent.display()
        )),
        Err(e) => Err(format!("{}: {e}", parent.display())),
    }
}

/// The state directory held for this run: the lock lives as long as this.
#[derive(Debug)]
pub struct Claim {
    _lock: File,
}

/// Why the state directory cannot be used this run.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Another phase4 holds the lock (its pid, when it wrote one).
    InUse(Option<u32>),
    /// Not trusted, or the lock cannot be made: why.
    Unusable(String),
}

/// Take `dir` for this run: made if missing (0750), checked with
/// [`trusted`], and locked (`flock`, non-blocking) through `dir/.lock`.
pub fn claim(dir: &Path) -> Result<Claim, Refused> {
    let unusable = |why: String| Refused::Unusable(why);
    super::safe_fs::create_dirs(dir).map_err(|e| unusable(format!("{}: {e}", dir.display())))?;
    trusted(dir).map_err(unusable)?;
    let path = dir.join(LOCK_FILE);
    let f = open_lock(dir, &path).map_err(|e| unusable(format!("{}: {e}", path.display())))?;
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor; flock touches no memory.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            return Err(Refused::InUse(
                f.metadata().ok().and_then(|m| holder(&locks, &m)),
            ));
        }
        return Err(unusable(format!("{}: {e}", path.display())));
    }
    Ok(Claim { _lock: f })
}

/// The pid `/proc/locks` gives for the `flock` on the file `m` describes
/// (lines such as `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`: the
/// device's major and minor in hex, the inode in decimal).
fn holder(locks: &str, m: &std::fs::Metadata) -> Option<u32> {
    let want = format!(
        "{:02x}:{:02x}:{}",
        libc::major(m.dev()),
        libc::minor(m.dev()),
        m.ino()
    );
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let at = f.iter().position(|w| *w == "FLOCK")?;
        // A waiter's line ("->") is not the holder; none waits here anyway.
        if f[..at].contains(&"->") || f.get(at + 4) != Some(&want.as_str()) {
            return None;
        }
        f.get(at + 3)?.parse().ok()
    })
}

/// `path` opened for reading and writing, made (0600) when missing and
/// then given to `dir`'s owner like any file phase4 makes there. An
/// existing one is opened without following a symlink, and refused unless
/// it is a plain file with one name: whoever may write in `dir` could
/// plant a hard link to a file elsewhere that root would otherwise empty.
fn open_lock(dir: &Path, path: &Path) -> io::Result<File> {
    match super::safe_fs::create_new(path, 0o600) {
        Ok(f) => {
            super::safe_fs::adopt(&f, dir);
            // `create_new` opens for writing only; the pid is read back.
            return std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
                .and_then(|again| same_file(&f, again));
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() || m.nlink() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a plain file of its own (a FIFO, device or hard link): remove it",
        ));
    }
    Ok(f)
}

/// `again` when it is the file `made` (not one swapped in between).
fn same_file(made: &File, again: File) -> io::Result<File> {
    let (a, b) = (made.metadata()?, again.metadata()?);
    if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
        Ok(again)
    } else {
        Err(io::Error::other("replaced while it was being made"))
    }
}

/// The configuration to run with: `config` itself when its state
/// directory is this run's (the claim is returned, to be kept for the
/// whole run), else `config` with `[state] dir = ""`, and an ERROR saying
/// why and what to do.
pub fn settle(mut config: crate::config::Config) -> (crate::config::Config, Option<Claim>) {
    let Some(dir) = config.state_dir() else {
        return (config, None);
    };
    let why = match claim(&dir) {
        Ok(c) => return (config, Some(c)),
        Err(Refused::InUse(pid)) => format!(
            "state directory {} is in use by another phase4{}; give each instance its own [state] dir",
            dir.display(),
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ),
        Err(Refused::Unusable(why)) => format!(
            "state directory {} is not used: {why}; use a directory this user (or root) made, \
             or one an administrator made in a directory only they may write to",
            dir.display()
        ),
    };
    log::error!(
        "{why}. Running with persistence off, as with [state] dir = \"\": settings, presets \
         and recordings are not kept, and the control token is for this run only"
    );
    config.state.dir.clear();
    (config, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_second_claim_on_a_directory_is_refused_and_names_the_first() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        let first = claim(&dir).unwrap();
        // flock is per open file description: a second open in this
        // process conflicts as another process's would.
        assert_eq!(
            claim(&dir).unwrap_err(),
            Refused::InUse(Some(std::process::id()))
        );
        let m = std::fs::metadata(dir.join(LOCK_FILE)).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        // Empty: not one block of a small disk's room for recordings.
        assert_eq!(m.len(), 0);
        drop(first);
        claim(&dir).unwrap();
    }

    #[test]
    fn the_service_runs_without_persistence_when_its_directory_is_taken() {
        let d = tempfile::tempdir().unwrap();
        let mut c = crate::config::Config::default();
        c.state.dir = d.path().display().to_string();
        let (mine, held) = settle(c.clone());
        assert_eq!(mine.state_dir(), c.state_dir());
        assert!(held.is_some());
        let (other, none) = settle(c);
        assert!(none.is_none());
        assert_eq!(other.state_dir(), None);
    }

    #[test]
    fn a_planted_lock_file_is_neither_followed_nor_emptied() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let dir = d.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(LOCK_FILE)).unwrap();
        assert!(matches!(claim(&dir), Err(Refused::Unusable(_))));
        std::fs::remove_file(dir.join(LOCK_FILE)).unwrap();
        std::fs::hard_link(&victim, dir.join(LOCK_FILE)).unwrap();
        assert!(matches!(claim(&dir), Err(Refused::Unusable(_))));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn own_directories_are_trusted_and_another_users_only_where_an_admin_put_it() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(trusted(d.path()), Ok(()));
        if !root() {
            // Another user's directory cannot be made without root; /
            // and /tmp are root's, which is trusted.
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let perm = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        // Root made /var/lib/phase4-like: a root-owned 0755 parent and a
        // directory given to the service user.
        let parent = d.path().join("lib");
        let state = parent.join("phase4");
        std::fs::create_dir_all(&state).unwrap();
        perm(&parent, 0o755);
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        assert_eq!(trusted(&state), Ok(()));
        claim(&state).unwrap();
        // The lock file root made is the directory owner's, like any file.
        let m = std::fs::metadata(state.join(LOCK_FILE)).unwrap();
        assert_eq!(m.uid(), 65534);
        // The same under a parent anyone may write to (/tmp): refused.
        perm(&parent, 0o1777);
        let why = trusted(&state).unwrap_err();
        assert!(
            why.contains("uid 65534") && why.contains("other users"),
            "{why}"
        );
        assert!(matches!(claim(&state), Err(Refused::Unusable(_))));
        // Or under a parent of that user's.
        perm(&parent, 0o755);
        std::os::unix::fs::chown(&parent, Some(65534), Some(65534)).unwrap();
        assert!(trusted(&state).is_err());
        let mut c = crate::config::Config::default();
        c.state.dir = state.display().to_string();
        assert_eq!(settle(c).0.state_dir(), None);
    }
}
