//! Files in directories that someone else may also write (the state
//! directory belongs to the `phase4` user, and an admin runs `sudo phase4
//! token` on it): opened so that a planted symlink or FIFO can neither
//! redirect a write nor hang a read.
//!
//! - [`open_regular`]: `O_NOFOLLOW | O_NONBLOCK`, then the descriptor's own
//!   type is checked: a symlink at the last component (ELOOP), a FIFO, a
//!   device or a directory is refused with `InvalidData` instead of being
//!   followed or waited on.
//! - [`create_new`]: `O_CREAT | O_EXCL` (which never follows a symlink and
//!   fails on anything already there) with the given mode.
//! - [`real_dir`]: a directory that is one, not a symlink to one elsewhere.
//! - [`create_dirs`]: missing directories made 0750 whatever the umask (a
//!   root shell with umask 000 running `phase4 token` made a state
//!   directory every local user could plant a control token in).
//! - [`adopt`] (and [`create_dirs`] for the directories it makes): what
//!   root makes in a directory someone else owns (`sudo phase4 token`,
//!   phase4 run by hand as root on the service's state directory) is given
//!   to that owner, or the service could never change or delete it (it
//!   could no longer save presets or record).

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn not_regular(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} is {what}, not a regular file", path.display()),
    )
}

/// `path` opened for reading if it is a regular file (see the module).
/// `NotFound` is passed through as it is.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => not_regular(path, "a symbolic link"),
            _ => e,
        })?;
    let t = f.metadata()?.file_type();
    if !t.is_file() {
        let what = if t.is_dir() {
            "a directory"
        } else {
            "a FIFO, socket or device"
        };
        return Err(not_regular(path, what));
    }
    Ok(f)
}

/// A new file at `path` with `mode` (see the module): fails when anything,
/// a symlink included, is already there.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// `path` and its missing parents, each made with mode 0750 (less what
/// the umask takes away): never writable by other users. Those made are
/// given to the owner of the directory they were made in (see the
/// module); `lchown`, so a directory swapped for a symlink meanwhile gives
/// nothing away.
pub fn create_dirs(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let missing: Vec<&Path> = path
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && std::fs::symlink_metadata(p).is_err())
        .collect();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(path)?;
    let Some(Ok(owner)) = path.ancestors().nth(missing.len()).map(|p| {
        std::fs::metadata(if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        })
    }) else {
        return Ok(());
    };
    for made in missing {
        if std::fs::symlink_metadata(made)
            .is_ok_and(|m| m.uid() != owner.uid() || m.gid() != owner.gid())
        {
            let _ = std::os::unix::fs::lchown(made, Some(owner.uid()), Some(owner.gid()));
        }
    }
    Ok(())
}

/// `file`, just made in `dir`, given to `dir`'s owner when that is someone
/// else (only root can; see the module). Through the descriptor: by path,
/// the directory's owner could swap the name for a symlink in between and
/// have root give it any file on the system.
pub fn adopt(file: &File, dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let (Ok(d), Ok(f)) = (std::fs::metadata(dir), file.metadata()) else {
        return;
    };
    if (d.uid(), d.gid()) != (f.uid(), f.gid()) {
        let _ = std::os::unix::fs::fchown(file, Some(d.uid()), Some(d.gid()));
    }
}

/// Whether `path` is a directory itself, not a symlink to one.
pub fn real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn symlinks_fifos_and_directories_are_refused_files_are_read() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, "text").unwrap();
        let mut s = String::new();
        open_regular(&file).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "text");

        let link = d.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // A FIFO without a writer: a plain open would wait here for good.
        for p in [&link, &fifo, &d.path().to_path_buf()] {
            let e = open_regular(p).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{p:?}: {e}");
        }
        let e = open_regular(&d.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_new_file_is_never_written_through_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let tmp = d.path().join(".x.tmp");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        assert!(create_new(&tmp, 0o600).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let fresh = d.path().join("fresh");
        create_new(&fresh, 0o600).unwrap().write_all(b"x").unwrap();
        assert!(create_new(&fresh, 0o600).is_err());
        assert!(real_dir(d.path()));
        let dlink = d.path().join("dlink");
        std::os::unix::fs::symlink(d.path(), &dlink).unwrap();
        assert!(!real_dir(&dlink) && !real_dir(&fresh));
    }
}
