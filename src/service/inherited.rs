//! What the process inherits from whoever started it, put right before
//! anything else runs (tester ag: a wrapper, a supervisor or a shell's
//! `chrt`/`umask` can hand phase4 any of these; systemd hands it none).
//!
//! - **A blocked signal mask** survives `execve`: SIGTERM, SIGINT and SIGHUP
//!   stayed pending for ever and only SIGKILL stopped phase4, losing the
//!   state it writes at stop (AG1). Every signal is unblocked.
//! - **An ignored SIGCHLD** survives `execve` too: the kernel then reaps
//!   children itself, and the device listing's child (`capture::devices`)
//!   was read whole but its `wait` failed, so the list was thrown away
//!   (AG3). SIGCHLD is reset to its default.
//! - **A umask without the owner's bits** (`umask 0777`) made every file
//!   and folder phase4 creates mode 000, its own state unreadable to it at
//!   the next start (AG5). The owner's bits are taken out of the mask; what
//!   it withholds from group and others stays.
//! - **A real-time policy** (started under `chrt -f`) was kept on every
//!   thread, the network-facing ones included, even with `realtime.enabled
//!   = false` (AG10). The main thread goes back to SCHED_OTHER before any
//!   thread exists; the threads that should be real-time ask for it
//!   themselves (`rt::prio`).
//! - **A `TZ` that is no regular file** (a FIFO) hung the first thread to
//!   ask for a local time (AG9): the zone is loaded once here, and such a
//!   `TZ` dropped.

/// Put the inherited state right. Call first, while single-threaded.
pub fn reset() {
    time_zone();
    // SAFETY: plain syscalls on this process with valid arguments; nothing
    // else runs yet, so no other thread sees the mask or policy change.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        let mask = libc::umask(0);
        libc::umask(mask & !0o700);
        if libc::sched_getscheduler(0) != libc::SCHED_OTHER {
            let p = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_OTHER, &p);
        }
    }
}

/// Load the time zone once, here, before any thread exists. glibc loads it
/// at the first local time asked for: that was on the WebSocket thread
/// when the first client came, and a `TZ` naming a FIFO (or anything that
/// is not a regular file) blocked that thread there, so every client hung
/// and the watchdog restarted phase4 (tester ag AG9). Such a `TZ` is
/// dropped with a word (local times are then the machine's zone).
fn time_zone() {
    if let Some(tz) = std::env::var_os("TZ") {
        use std::os::unix::ffi::OsStrExt;
        let name = tz.as_bytes().strip_prefix(b":").unwrap_or(tz.as_bytes());
        let name = std::path::Path::new(std::ffi::OsStr::from_bytes(name));
        // (`TZ=` and `TZ=:` are UTC to glibc: no file is read. Review aj
        // AJ5: they named the zoneinfo folder, and were dropped.)
        let path = if name.as_os_str().is_empty() {
            None
        } else if name.is_absolute() {
            Some(name.to_path_buf())
        } else {
            let dir = std::env::var_os("TZDIR").unwrap_or_else(|| "/usr/share/zoneinfo".into());
            Some(std::path::Path::new(&dir).join(name))
        };
        // (A name that is no file at all is a rule such as "UTC0", read
        // from the string itself.)
        if let Some(path) = path.filter(|p| std::fs::metadata(p).is_ok_and(|m| !m.is_file())) {
            // (Not eprintln!: it panics on a stderr that fails.)
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "phase4: TZ names {}, which is not a regular file: ignored\n",
                    path.display()
                )
                .as_bytes(),
            );
            std::env::remove_var("TZ");
        }
    }
    // SAFETY: tzset has no preconditions; single-threaded here.
    unsafe { tzset() };
}

extern "C" {
    fn tzset();
}

#[cfg(test)]
mod tests {
    /// Runs `reset` in a child process (the test binary's threads must not
    /// share the changed mask, umask and policy) after giving the child the
    /// hostile inheritance, and reports what the child ends up with.
    #[test]
    fn a_blocked_mask_an_ignored_sigchld_and_an_ownerless_umask_are_put_right() {
        // SAFETY: fork in a test: the child only makes async-signal-safe
        // syscalls and `_exit`s.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::sigaddset(&mut set, libc::SIGHUP);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                libc::signal(libc::SIGCHLD, libc::SIG_IGN);
                libc::umask(0o777);
                // (Granted to root, as `chrt -f` would have.)
                let fifo = libc::sched_param { sched_priority: 1 };
                libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo);
                super::reset();
                let mut now: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut now);
                let mut bad = 0;
                if libc::sigismember(&now, libc::SIGTERM) == 1
                    || libc::sigismember(&now, libc::SIGHUP) == 1
                {
                    bad |= 1;
                }
                if libc::signal(libc::SIGCHLD, libc::SIG_DFL) != libc::SIG_DFL {
                    bad |= 2;
                }
                if libc::umask(0) != 0o077 {
                    bad |= 4;
                }
                if libc::sched_getscheduler(0) != libc::SCHED_OTHER {
                    bad |= 8;
                }
                libc::_exit(bad);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFEXITED(status));
            assert_eq!(
                libc::WEXITSTATUS(status),
                0,
                "bits: 1 mask, 2 SIGCHLD, 4 umask, 8 policy"
            );
        }
    }
}
