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

/// Lock current and future pages in memory, so the real-time path never page-faults.
pub fn lock_memory() -> RtGrant {
    use nix::sys::mman::{mlockall, MlockAllFlags};
    match mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
        Ok(()) => RtGrant::Granted,
        Err(_) => RtGrant::Refused,
    }
}
