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
//! - [`move_aside`]: an unusable file kept for inspection under a name of
//!   its own (`<name>.corrupt-<unix time>`, then `-2`, `-3`, …), never
//!   over an earlier one.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
/// module). Each step goes through the descriptor of the directory above:
/// made with `mkdirat`, opened with `O_DIRECTORY | O_NOFOLLOW` and given
/// away with `fchown`, so a name swapped meanwhile (for a symlink, or a
/// hard link to a file elsewhere) fails the open and gives nothing away.
/// Only a directory this call made is given away.
pub fn create_dirs(path: &Path) -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let existing = path
        .ancestors()
        .find(|p| p.as_os_str().is_empty() || std::fs::symlink_metadata(p).is_ok())
        .unwrap_or(Path::new(""));
    let rest = path.strip_prefix(existing).map_err(io::Error::other)?;
    let base = if existing.as_os_str().is_empty() {
        Path::new(".")
    } else {
        existing
    };
    // The directory that exists may be a symlink the admin chose.
    let mut dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(base)?;
    let owner = dir.metadata()?;
    for part in rest.components() {
        let std::path::Component::Normal(name) = part else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a plain path", path.display()),
            ));
        };
        let name = std::ffi::CString::new(name.as_bytes())?;
        // SAFETY: a valid descriptor and a NUL-terminated name.
        let made = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o750) } == 0;
        if !made {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        // SAFETY: as above; the descriptor returned is owned by `next`.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        let next = unsafe { File::from_raw_fd(fd) };
        if made {
            let m = next.metadata()?;
            if (m.uid(), m.gid()) != (owner.uid(), owner.gid()) {
                let _ = std::os::unix::fs::fchown(&next, Some(owner.uid()), Some(owner.gid()));
            }
        }
        dir = next;
    }
    if !dir.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is not a directory", path.display()),
        ));
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

/// Most copies of one second's unusable files [`move_aside`] keeps.
pub const MAX_ASIDE: u32 = 100;

/// `dir/name` renamed to `name.corrupt-<unix time>`, or `-2`, `-3`, … up to
/// [`MAX_ASIDE`] when that name is taken, and the new path. The same second
/// comes again (a Pi without a clock boots at the same time each time; a
/// clock before 1970 gives 0), and a copy kept for inspection must not
/// replace another: the rename never replaces anything (`RENAME_NOREPLACE`,
/// or a look first where the file system cannot do that). An error when
/// every name is taken or the rename fails; nothing is moved then.
pub fn move_aside(dir: &Path, name: &str) -> io::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    move_aside_at(dir, name, stamp)
}

fn move_aside_at(dir: &Path, name: &str, stamp: u64) -> io::Result<PathBuf> {
    use nix::fcntl::{renameat2, RenameFlags};
    let from = dir.join(name);
    for n in 1..=MAX_ASIDE {
        let to = match n {
            1 => dir.join(format!("{name}.corrupt-{stamp}")),
            n => dir.join(format!("{name}.corrupt-{stamp}-{n}")),
        };
        match renameat2(None, &from, None, &to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(to),
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => {
                // A file system (or kernel) without RENAME_NOREPLACE.
                if std::fs::symlink_metadata(&to).is_ok() {
                    continue;
                }
                return std::fs::rename(&from, &to).map(|()| to);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{MAX_ASIDE} copies of this second's are there already"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn directories_are_made_through_their_parents_and_given_to_its_owner() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("state");
        std::fs::create_dir(&top).unwrap();
        // As root (CI): a folder another user owns, as the service's.
        // SAFETY: geteuid cannot fail and touches no memory.
        let me = unsafe { libc::geteuid() };
        let root = me == 0;
        if root {
            std::os::unix::fs::chown(&top, Some(65534), Some(65534)).unwrap();
        }
        create_dirs(&top.join("a/b")).unwrap();
        create_dirs(&top.join("a/b")).unwrap();
        for p in [top.join("a"), top.join("a/b")] {
            let m = std::fs::symlink_metadata(&p).unwrap();
            assert!(m.is_dir());
            assert_eq!(m.mode() & 0o027, 0, "{p:?} {:o}", m.mode());
            if root {
                assert_eq!((m.uid(), m.gid()), (65534, 65534), "{p:?}");
            }
        }
        // A file where a folder should be (a hard link planted in place of
        // a folder just made looks the same): an error, nothing given away.
        std::fs::write(top.join("a/f"), "x").unwrap();
        assert!(create_dirs(&top.join("a/f")).is_err());
        assert!(create_dirs(&top.join("a/f/g")).is_err());
        let m = std::fs::metadata(top.join("a/f")).unwrap();
        assert_eq!(m.uid(), me);
    }

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

    #[test]
    fn files_moved_aside_in_one_second_keep_their_own_names() {
        let d = tempfile::tempdir().unwrap();
        let mut kept = Vec::new();
        for k in 0..3 {
            std::fs::write(d.path().join("f"), format!("{k}")).unwrap();
            kept.push(move_aside_at(d.path(), "f", 7).unwrap());
        }
        let names: Vec<_> = kept
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["f.corrupt-7", "f.corrupt-7-2", "f.corrupt-7-3"]);
        for (k, p) in kept.iter().enumerate() {
            assert_eq!(std::fs::read_to_string(p).unwrap(), format!("{k}"));
        }
        // Every name of the second taken: nothing moves.
        for n in 4..=MAX_ASIDE {
            std::fs::write(d.path().join(format!("f.corrupt-7-{n}")), "").unwrap();
        }
        std::fs::write(d.path().join("f"), "last").unwrap();
        let e = move_aside_at(d.path(), "f", 7).unwrap_err();
        assert!(e.to_string().contains("copies of this second's"), "{e}");
        assert_eq!(std::fs::read_to_string(d.path().join("f")).unwrap(), "last");
        // A symlink is moved, not followed.
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("g")).unwrap();
        let p = move_aside_at(d.path(), "g", 7).unwrap();
        assert!(std::fs::symlink_metadata(p)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
