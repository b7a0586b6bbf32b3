//! The presets' writer: a thread of its own (`p4-presets`), so that saving
//! a preset never holds up the control thread.
//!
//! A save is two fsyncs ([`write_atomic`]); on an SD card on a bad day
//! that is over a second. Done on the control thread, every command behind
//! it would wait that long: another client's slider drag, the OSC input
//! port, a device switch. So the control thread checks a save or a delete
//! completely, updates the index and hands the file work over; the thread
//! does it in order (a delete after a save of the same name deletes the
//! saved file), answers the client that asked when it is done, and tells
//! control how it went, so a failed write is taken out of the index again.
//!
//! A reload's re-read of the folder is done here too, in order with the
//! files: reading up to 200 files from an SD card is disk work control must
//! not wait for either, and it sees every save and delete handed over
//! before it.
//!
//! [`PresetWriter`] is control's side: the thread, and the jobs handed
//! over and not yet reported done. At most [`MAX_QUEUED`] of those (a
//! re-read counts as one): a client that saves faster than the disk writes
//! is told to try again, and memory stays bounded.

use super::{PresetList, PresetName, Scan};
use crate::control::state::write_atomic;
use crate::control::{Reply, Response};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

/// Most preset jobs handed over and not yet reported done.
pub const MAX_QUEUED: usize = 4;

/// What the writer does with a preset file.
pub(super) enum Work {
    /// Write `text` to the file (atomically).
    Save { text: String },
    /// Remove the file (gone already is fine).
    Delete,
}

/// One job: the file, what to do with it, and whom to answer.
pub(super) struct Job {
    pub(super) name: PresetName,
    pub(super) path: PathBuf,
    pub(super) work: Work,
    /// The client that asked ([`Reply::client`]).
    pub(super) client: u64,
    /// The list to send that client when the job succeeds (the index as
    /// control left it).
    pub(super) list: PresetList,
}

/// What the thread is given: a file's job, or a re-read of this folder.
enum Task {
    File(Job),
    /// The folder, and the names offered when it was handed over.
    Scan(PathBuf, BTreeSet<PresetName>),
}

/// How a task ended, for control's index.
enum Done {
    File { name: PresetName, ok: bool },
    Scan(Scan),
}

/// What control's index must take in from the thread's finished tasks.
pub(in crate::control) enum Settled {
    /// The last job of this name has ended and one of them failed: the
    /// index needs the disk's word.
    Failed(PresetName),
    /// A re-read of the folder, and the names whose jobs were handed over
    /// after it and have not ended (the index already has their outcome).
    Scanned {
        scan: Scan,
        pending: Vec<PresetName>,
    },
}

/// A name's jobs not yet reported done.
struct Pending {
    jobs: usize,
    /// One of them failed.
    failed: bool,
}

/// Writes preset files on their own thread (see the module docs).
pub(super) struct PresetWriter {
    jobs: Option<SyncSender<Task>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    pending: BTreeMap<PresetName, Pending>,
    /// A re-read of the folder is with the thread.
    scanning: bool,
}

impl PresetWriter {
    /// Start the writer; its answers go to `replies`.
    pub(super) fn spawn(replies: Sender<Reply>) -> std::io::Result<Self> {
        // Never full: control hands over at most MAX_QUEUED unfinished jobs.
        let (jobs, rx) = mpsc::sync_channel::<Task>(MAX_QUEUED);
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .stack_size(crate::rt::THREAD_STACK)
            .name("p4-presets".into())
            .spawn(move || {
                for task in rx {
                    let job = match task {
                        Task::File(job) => job,
                        Task::Scan(dir, known) => {
                            let _ = done_tx.send(Done::Scan(Scan::read(&dir, &known)));
                            continue;
                        }
                    };
                    let result = do_job(&job);
                    if let Err(e) = &result {
                        log::warn!("presets: {e}");
                    }
                    // Control first, so its index is right by the time the
                    // client can ask again.
                    let _ = done_tx.send(Done::File {
                        name: job.name,
                        ok: result.is_ok(),
                    });
                    let responses = match result {
                        Ok(()) => vec![Response::Presets(job.list)],
                        Err(e) => vec![Response::Error(e)],
                    };
                    let _ = replies.send(Reply {
                        client: job.client,
                        responses,
                    });
                }
            })?;
        Ok(PresetWriter {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            pending: BTreeMap::new(),
            scanning: false,
        })
    }

    /// Why no job may be handed over now, if so.
    pub(super) fn busy(&self) -> Option<String> {
        let unfinished =
            self.pending.values().map(|p| p.jobs).sum::<usize>() + self.scanning as usize;
        (unfinished >= MAX_QUEUED).then(|| {
            let what = if self.scanning {
                "preset saves, deletes and a reload's read of the folder"
            } else {
                "preset saves and deletes"
            };
            format!(
                "busy: {MAX_QUEUED} {what} are still under way (a slow disk?); try again in a moment"
            )
        })
    }

    /// Hand `job` over (after [`busy`](Self::busy) said there is room).
    pub(super) fn submit(&mut self, job: Job) -> Result<(), String> {
        let name = job.name.clone();
        self.hand_over(Task::File(job))?;
        let p = self.pending.entry(name).or_insert(Pending {
            jobs: 0,
            failed: false,
        });
        p.jobs += 1;
        Ok(())
    }

    /// Hand over a re-read of `dir` that looks at `known` whatever else it
    /// holds (one at a time), when there is room.
    pub(super) fn submit_scan(
        &mut self,
        dir: PathBuf,
        known: BTreeSet<PresetName>,
    ) -> Result<(), String> {
        if self.scanning {
            return Err("presets: a re-read is under way".into());
        }
        self.hand_over(Task::Scan(dir, known))?;
        self.scanning = true;
        Ok(())
    }

    fn hand_over(&mut self, task: Task) -> Result<(), String> {
        if let Some(busy) = self.busy() {
            return Err(busy);
        }
        let sent = self.jobs.as_ref().is_some_and(|j| j.try_send(task).is_ok());
        if !sent {
            return Err("busy: the presets' writer has stopped".into());
        }
        Ok(())
    }

    /// Take in the tasks the thread has finished, in the order it did them
    /// (see [`Settled`]).
    pub(super) fn settle(&mut self) -> Vec<Settled> {
        let mut settled = Vec::new();
        for d in self.done.try_iter() {
            let (name, ok) = match d {
                Done::File { name, ok } => (name, ok),
                Done::Scan(scan) => {
                    self.scanning = false;
                    let pending = self.pending.keys().cloned().collect();
                    settled.push(Settled::Scanned { scan, pending });
                    continue;
                }
            };
            let Some(p) = self.pending.get_mut(&name) else {
                continue;
            };
            p.jobs = p.jobs.saturating_sub(1);
            p.failed |= !ok;
            if p.jobs == 0 {
                if p.failed {
                    settled.push(Settled::Failed(name.clone()));
                }
                self.pending.remove(&name);
            }
        }
        settled
    }

    /// Let the thread finish what it was given and wait for it (before
    /// the service ends: at most [`MAX_QUEUED`] jobs); then
    /// [`settle`](Self::settle).
    pub(super) fn close(&mut self) -> Vec<Settled> {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.settle()
    }
}

impl Drop for PresetWriter {
    fn drop(&mut self) {
        self.close();
    }
}

/// Do one job's file work; the client's error message if it failed.
fn do_job(job: &Job) -> Result<(), String> {
    let name = job.name.as_str();
    match &job.work {
        Work::Save { text } => {
            write_atomic(&job.path, text).map_err(|e| format!("cannot save preset {name:?}: {e}"))
        }
        Work::Delete => match std::fs::remove_file(&job.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("cannot delete preset {name:?}: {e}"))
            }
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_names_a_reload_read_when_one_holds_a_slot() {
        let (replies, _rx) = mpsc::channel();
        let mut w = PresetWriter::spawn(replies).unwrap();
        assert!(w.busy().is_none());
        let name = PresetName::parse("a").unwrap();
        w.pending.insert(
            name.clone(),
            Pending {
                jobs: MAX_QUEUED - 1,
                failed: false,
            },
        );
        assert!(w.busy().is_none(), "one slot is still free");
        w.scanning = true;
        let busy = w.busy().expect("the read takes the last slot");
        assert!(busy.contains("a reload's read of the folder"), "{busy}");
        w.scanning = false;
        w.pending.get_mut(&name).unwrap().jobs = MAX_QUEUED;
        let busy = w.busy().expect("saves take every slot");
        assert!(
            busy.starts_with("busy: ") && !busy.contains("reload"),
            "{busy}"
        );
    }
}
