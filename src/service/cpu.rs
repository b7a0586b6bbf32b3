//! CPU time per thread and for the whole process, for `server_status` and
//! the health line.
//!
//! Read from the kernel's CPU-time clocks (`clock_gettime`, nanoseconds),
//! not from `/proc/*/stat`: those count whole clock ticks (10 ms at
//! `USER_HZ` = 100), so over a half-second interval every thread read as
//! 0.0 % or 2.0 %. Every thread of the process is counted: the pipeline
//! roles by their thread id, all others (the WAV reader, HTTP, control,
//! the accept thread, the supervisor) as `other`, so the parts add up to
//! the process total.

use crate::stats::N_ROLES;
use std::collections::HashMap;
use std::time::Instant;

/// Most threads looked at in one sample (phase4 runs about a dozen).
const MAX_THREADS: usize = 256;

/// The clock id of thread `tid`'s CPU-time clock: the kernel's encoding
/// `MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)` (linux/posix-timers.h), the
/// one glibc's `pthread_getcpuclockid` builds. Valid for any thread of this
/// process.
fn thread_clock(tid: i32) -> libc::clockid_t {
    const CPUCLOCK_SCHED: libc::clockid_t = 2;
    const CPUCLOCK_PERTHREAD_MASK: libc::clockid_t = 4;
    ((!tid) << 3) | CPUCLOCK_SCHED | CPUCLOCK_PERTHREAD_MASK
}

fn clock_s(clock: libc::clockid_t) -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to write.
    let ok = unsafe { libc::clock_gettime(clock, &mut ts) } == 0;
    ok.then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// CPU time (user + system) of a thread of this process, in seconds;
/// `None` when it has exited.
pub fn thread_cpu_s(tid: i32) -> Option<f64> {
    clock_s(thread_clock(tid))
}

/// CPU time of the whole process (every thread, also those that exited),
/// in seconds.
pub fn process_cpu_s() -> f64 {
    clock_s(libc::CLOCK_PROCESS_CPUTIME_ID).unwrap_or(0.0)
}

/// The thread ids of this process (at most [`MAX_THREADS`]); only `extra`
/// when /proc is not mounted.
fn task_ids(extra: &[i32]) -> Vec<i32> {
    let mut ids: Vec<i32> = match std::fs::read_dir("/proc/self/task") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .take(MAX_THREADS)
            .collect(),
        Err(_) => Vec::new(),
    };
    for t in extra {
        if *t != 0 && !ids.contains(t) {
            ids.push(*t);
        }
    }
    ids
}

/// CPU spent during one interval, in seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuInterval {
    /// Wall-clock length of the interval.
    pub wall_s: f64,
    /// Per pipeline role (indexed like [`crate::stats::ROLE_NAMES`]).
    pub roles_s: [f64; N_ROLES],
    /// Every other thread of the process.
    pub other_s: f64,
    /// The process clock (also counts threads that exited meanwhile).
    pub process_s: f64,
}

impl CpuInterval {
    fn add(&mut self, o: &CpuInterval) {
        self.wall_s += o.wall_s;
        for (a, b) in self.roles_s.iter_mut().zip(o.roles_s) {
            *a += b;
        }
        self.other_s += o.other_s;
        self.process_s += o.process_s;
    }

    /// Seconds of CPU as percent of one core over the interval.
    pub fn pct(&self, cpu_s: f64) -> f64 {
        100.0 * cpu_s / self.wall_s.max(1e-3)
    }
}

/// Keeps the previous reading of every thread so each sample covers the
/// interval since the last one. Not for the real-time threads (it reads
/// /proc and allocates).
pub struct CpuMeter {
    at: Instant,
    process_s: f64,
    threads: HashMap<i32, f64>,
    /// Readings taken by [`CpuMeter::checkpoint`], not yet reported.
    carried: CpuInterval,
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuMeter {
    /// Start counting now.
    pub fn new() -> Self {
        let mut m = CpuMeter {
            at: Instant::now(),
            process_s: 0.0,
            threads: HashMap::new(),
            carried: CpuInterval::default(),
        };
        m.sample(&[0; N_ROLES]);
        m
    }

    /// Read every thread now and carry the readings into the next
    /// [`CpuMeter::sample`]: taken before the pipeline stops, so the last
    /// report still has the time of threads that are gone by then (an
    /// exited thread's clock cannot be read).
    pub fn checkpoint(&mut self, tids: &[i32; N_ROLES]) {
        let s = self.read(tids);
        self.carried.add(&s);
    }

    /// The CPU each role's thread (`tids`, 0 = not running), every other
    /// thread and the process spent since the last sample. A thread seen
    /// for the first time counts from its start; one that exited since the
    /// last sample drops out (the process figure still has its time).
    pub fn sample(&mut self, tids: &[i32; N_ROLES]) -> CpuInterval {
        let mut out = self.read(tids);
        out.add(&std::mem::take(&mut self.carried));
        out
    }

    fn read(&mut self, tids: &[i32; N_ROLES]) -> CpuInterval {
        let now = Instant::now();
        let mut out = CpuInterval {
            wall_s: now.duration_since(self.at).as_secs_f64(),
            ..CpuInterval::default()
        };
        self.at = now;
        let mut seen = HashMap::with_capacity(self.threads.len() + 4);
        for tid in task_ids(tids) {
            let Some(t) = thread_cpu_s(tid) else { continue };
            let spent = (t - self.threads.get(&tid).copied().unwrap_or(0.0)).max(0.0);
            match tids.iter().position(|r| *r == tid) {
                Some(i) => out.roles_s[i] += spent,
                None => out.other_s += spent,
            }
            seen.insert(tid, t);
        }
        self.threads = seen;
        let p = process_cpu_s();
        out.process_s = (p - self.process_s).max(0.0);
        self.process_s = p;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Burn `d` of this thread's CPU time (not wall time: the machine is
    /// shared, a wall-clock spin may get a fraction of a core). Gives up
    /// after 10 s of wall time.
    fn spin(d: Duration) {
        let own = || clock_s(libc::CLOCK_THREAD_CPUTIME_ID).unwrap();
        let (start, wall) = (own(), Instant::now());
        let mut x = 0u64;
        while own() - start < d.as_secs_f64() && wall.elapsed() < Duration::from_secs(10) {
            for _ in 0..1000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    }

    #[test]
    fn the_thread_clock_is_the_callers_own_cpu_clock() {
        spin(Duration::from_millis(20));
        let own = clock_s(libc::CLOCK_THREAD_CPUTIME_ID).unwrap();
        let by_tid = thread_cpu_s(crate::service::gettid()).unwrap();
        let own2 = clock_s(libc::CLOCK_THREAD_CPUTIME_ID).unwrap();
        assert!(own <= by_tid && by_tid <= own2, "{own} {by_tid} {own2}");
        assert!(own >= 0.015, "{own}");
    }

    #[test]
    fn a_thread_that_never_was_has_no_clock() {
        assert_eq!(thread_cpu_s(i32::MAX >> 4), None);
    }

    /// A thread burning ~30 ms is seen as its role with sub-tick precision,
    /// other threads (this one) as `other`, and the parts add up to the
    /// process clock.
    #[test]
    fn roles_and_other_add_up_to_the_process() {
        // 0: not started, 1: go, 2: spun, 3: may exit.
        let phase = Arc::new(AtomicI32::new(0));
        let tid = Arc::new(AtomicI32::new(0));
        let wait_for = |p: &AtomicI32, v: i32| {
            while p.load(Ordering::SeqCst) != v {
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let h = {
            let (tid, phase) = (tid.clone(), phase.clone());
            std::thread::spawn(move || {
                tid.store(crate::service::gettid(), Ordering::SeqCst);
                wait_for(&phase, 1);
                spin(Duration::from_millis(30));
                phase.store(2, Ordering::SeqCst);
                // Stay alive until the sample is taken.
                wait_for(&phase, 3);
            })
        };
        while tid.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut tids = [0; N_ROLES];
        tids[2] = tid.load(Ordering::SeqCst);
        let mut m = CpuMeter::new();
        m.sample(&tids);
        phase.store(1, Ordering::SeqCst);
        spin(Duration::from_millis(15));
        wait_for(&phase, 2);
        let s = m.sample(&tids);
        phase.store(3, Ordering::SeqCst);
        h.join().unwrap();
        // Both threads burnt a known amount of CPU time; with clock ticks
        // (the old /proc/*/stat reading) these read as 0.02/0.03 or 0.01/0.02.
        assert!(s.roles_s[2] >= 0.029 && s.roles_s[2] < 0.2, "{s:?}");
        assert!(s.other_s >= 0.014, "{s:?}");
        let parts = s.roles_s.iter().sum::<f64>() + s.other_s;
        // Other test threads run in parallel in this process: the parts of
        // this meter cannot exceed the process, and cover most of it unless
        // a thread exited meanwhile.
        assert!(parts <= s.process_s + 1e-3, "{parts} > {}", s.process_s);
        assert!(s.pct(0.01) > 0.0);
    }

    /// A thread that exits after a checkpoint still counts in the next
    /// sample.
    #[test]
    fn a_checkpoint_keeps_the_time_of_a_thread_that_exits() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            tx.send(crate::service::gettid()).unwrap();
            go_rx.recv().unwrap();
            spin(Duration::from_millis(30));
            tx.send(0).unwrap();
            go_rx.recv().unwrap();
        });
        let mut tids = [0; N_ROLES];
        tids[1] = rx.recv().unwrap();
        let mut m = CpuMeter::new();
        m.sample(&tids);
        go_tx.send(()).unwrap();
        assert_eq!(rx.recv().unwrap(), 0);
        m.checkpoint(&tids);
        go_tx.send(()).unwrap();
        h.join().unwrap();
        let s = m.sample(&tids);
        assert!(s.roles_s[1] >= 0.025, "{s:?}");
        assert!(m.sample(&tids).roles_s[1] == 0.0);
    }
}
