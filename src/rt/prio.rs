//! SCHED_FIFO and `mlockall`: asked for, never required.

use thread_priority::{
    set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy, ThreadPriority,
    ThreadSchedulePolicy,
};

/// Whether a real-time request was granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtGrant {
    /// Granted.
    Granted,
    /// Not asked for (disabled, or a clockless plugin device).
    NotRequested,
    /// Refused by the system (no CAP_SYS_NICE / RLIMIT_RTPRIO).
    Refused,
}

impl RtGrant {
    /// A short word for status lines.
    pub fn as_str(self) -> &'static str {
        match self {
            RtGrant::Granted => "granted",
            RtGrant::NotRequested => "off",
            RtGrant::Refused => "refused",
        }
    }
}

/// Make the calling thread SCHED_FIFO at `priority` (1..=99).
pub fn set_realtime_priority(priority: u8) -> RtGrant {
    let prio = match ThreadPriority::try_from(priority.clamp(1, 99)) {
        Ok(p) => p,
        Err(_) => return RtGrant::Refused,
    };
    let policy = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
    match set_thread_priority_and_policy(thread_native_id(), prio, policy) {
        Ok(()) => RtGrant::Granted,
        Err(_) => RtGrant::Refused,
    }
}

/// Keep every page the process touches in memory, so the real-time path
/// never page-faults once it has run: current and future mappings, locked
/// as they are faulted in (`MCL_ONFAULT`, Linux 4.4). Without `MCL_ONFAULT`
/// every mapped page would be made resident at once, the whole binary and
/// every thread's reserved stack: 21.4 MiB instead of 13.4 MiB with the
/// WebSocket server on. The rings the real-time threads fill are touched
/// when they are made ([`super::touched_ring`]), so their first pass takes
/// no fault either.
pub fn lock_memory() -> RtGrant {
    if super::fault::refuse_mlock() {
        return RtGrant::Refused;
    }
    let lock = |flags| {
        // SAFETY: mlockall takes flags only and changes no memory.
        unsafe { libc::mlockall(flags) == 0 }
    };
    let all = libc::MCL_CURRENT | libc::MCL_FUTURE;
    // A kernel older than 4.4 refuses MCL_ONFAULT (EINVAL): lock everything.
    let locked = lock(all | libc::MCL_ONFAULT)
        || (std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) && lock(all));
    if locked {
        RtGrant::Granted
    } else {
        RtGrant::Refused
    }
}

/// Hand the free pages of malloc's heap back to the kernel after a large
/// allocation that has passed, off the real-time path (a configuration
/// reload: a 64 KiB file of dotted keys takes 16 MB while it is parsed).
/// Under `mlockall` glibc cannot (it returns pages with
/// `madvise(MADV_DONTNEED)`, which locked pages refuse), so such a reload
/// left phase4 at twice its size for the rest of the run: with `locked`,
/// memory is unlocked for the trim and locked again as [`lock_memory`]
/// locks it. Unlocking evicts nothing, and the real-time threads neither
/// fault nor map memory in that moment. Returns whether memory is locked
/// afterwards (false only if locking it again was refused).
pub fn give_back_freed(locked: bool) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: munlockall takes nothing and changes no memory; malloc_trim
    // takes no pointers and releases only memory that is free.
    unsafe {
        if locked {
            libc::munlockall();
        }
        libc::malloc_trim(0);
    }
    !locked || lock_memory() == RtGrant::Granted
}

/// The process's resident memory in bytes (`/proc/self/statm`), or
/// `None` when it cannot be read.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf takes an integer and reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Most malloc arenas glibc may make ([`limit_malloc_arenas`]).
pub const MALLOC_ARENAS: i32 = 2;

/// Cap glibc's malloc arenas at [`MALLOC_ARENAS`]. Call it first thing in
/// `main`, before any thread allocates: glibc fixes the cap when it makes
/// its second arena.
///
/// Why: by default glibc gives threads arenas of their own, up to eight per
/// CPU, and memory freed into one stays with it. Under `mlockall` none of
/// it is ever handed back (glibc returns free pages with
/// `madvise(MADV_DONTNEED)`, which locked pages refuse). A thread that
/// comes and goes while the previous one is still ending gets a fresh
/// arena, so what each one held adds up: our own mDNS responder, restarted
/// to drop a flood of records from the LAN
/// ([`crate::rig::mdns`]), grew phase4 by 19 MiB per 20 000 records
/// instead of reusing the memory (a plateau at +6.7 MiB with one arena).
/// phase4 allocates little after start and nothing on the real-time
/// threads, so two arenas cost no contention that matters.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and changes only malloc's own
    // tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// The CPU `realtime.cpu` names for the per-block threads, checked against
/// the CPUs this process may run on (its affinity mask, which systemd's
/// `CPUAffinity=`, `taskset` or a cpuset may have narrowed). `Ok(None)`:
/// leave placement to the scheduler (`off`, or `auto` with only one CPU
/// allowed, where there is nothing to choose). `Err`: the CPU asked for is
/// not one this process may use (the caller warns and does not pin).
pub fn resolve_cpu(pin: crate::config::CpuPin) -> Result<Option<usize>, String> {
    use crate::config::CpuPin;
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    if pin == CpuPin::Off {
        return Ok(None);
    }
    let allowed =
        sched_getaffinity(Pid::from_raw(0)).map_err(|e| format!("sched_getaffinity: {e}"))?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    match pin {
        CpuPin::Off => Ok(None),
        CpuPin::Auto if cpus.len() < 2 => Ok(None),
        CpuPin::Auto => Ok(cpus.last().copied()),
        CpuPin::Cpu(n) if cpus.contains(&(n as usize)) => Ok(Some(n as usize)),
        CpuPin::Cpu(n) => Err(format!(
            "CPU {n} is not one this process may run on (allowed: {})",
            cpu_list(&cpus)
        )),
    }
}

/// Keep the calling thread on `cpu`. Called once at a thread's start.
pub fn pin_current_thread(cpu: usize) -> bool {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    set.set(cpu).is_ok() && sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}

/// `0-3,6` style, as `taskset` and /proc print CPU lists.
fn cpu_list(cpus: &[usize]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if cpus[i] == start {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{}", cpus[i]));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CpuPin;

    #[test]
    fn cpu_lists_read_like_taskset() {
        assert_eq!(cpu_list(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(cpu_list(&[1]), "1");
        assert_eq!(cpu_list(&[0, 2, 4, 5]), "0,2,4-5");
        assert_eq!(cpu_list(&[]), "");
    }

    #[test]
    fn auto_picks_the_last_allowed_cpu_and_a_foreign_cpu_is_refused() {
        use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        // In a thread of its own whose mask the test narrows, so it holds on
        // any machine and under any `taskset` the tests run in.
        std::thread::spawn(|| {
            let allowed = sched_getaffinity(Pid::from_raw(0)).unwrap();
            let cpus: Vec<usize> = (0..CpuSet::count())
                .filter(|&c| allowed.is_set(c).unwrap())
                .collect();
            assert_eq!(resolve_cpu(CpuPin::Off), Ok(None));
            if cpus.len() >= 2 {
                let mut two = CpuSet::new();
                two.set(cpus[0]).unwrap();
                two.set(cpus[1]).unwrap();
                sched_setaffinity(Pid::from_raw(0), &two).unwrap();
                assert_eq!(resolve_cpu(CpuPin::Auto), Ok(Some(cpus[1])));
                assert_eq!(resolve_cpu(CpuPin::Cpu(cpus[0] as u16)), Ok(Some(cpus[0])));
            }
            assert!(pin_current_thread(cpus[0]));
            // One CPU allowed: nothing to choose.
            assert_eq!(resolve_cpu(CpuPin::Auto), Ok(None));
            assert_eq!(resolve_cpu(CpuPin::Cpu(cpus[0] as u16)), Ok(Some(cpus[0])));
            let other = if cpus[0] == 1023 { 0 } else { 1023 };
            let e = resolve_cpu(CpuPin::Cpu(other)).unwrap_err();
            let want = format!("allowed: {})", cpus[0]);
            assert!(
                e.contains(&format!("CPU {other} ")) && e.contains(&want),
                "{e}"
            );
            assert!(!pin_current_thread(other as usize));
        })
        .join()
        .unwrap();
    }
}
