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
//! [`PresetWriter`] is control's side: the thread, and the jobs handed
//! over and not yet reported done. At most [`MAX_QUEUED`] of those: a
//! client that saves faster than the disk writes is told to try again, and
//! memory stays bounded.

use super::{PresetList, PresetName};
use crate::control::state::write_atomic;
use crate::control::{Reply, Response};
use std::collections::BTreeMap;
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

/// How a job ended, for control's index.
struct Done {
    name: PresetName,
    ok: bool,
}

/// A name's jobs not yet reported done.
struct Pending {
    jobs: usize,
    /// One of them failed.
    failed: bool,
}

/// Writes preset files on their own thread (see the module docs).
pub(super) struct PresetWriter {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    pending: BTreeMap<PresetName, Pending>,
}

impl PresetWriter {
    /// Start the writer; its answers go to `replies`.
    pub(super) fn spawn(replies: Sender<Reply>) -> std::io::Result<Self> {
        // Never full: control hands over at most MAX_QUEUED unfinished jobs.
        let (jobs, rx) = mpsc::sync_channel::<Job>(MAX_QUEUED);
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .stack_size(crate::rt::THREAD_STACK)
            .name("p4-presets".into())
            .spawn(move || {
                for job in rx {
                    let result = do_job(&job);
                    if let Err(e) = &result {
                        log::warn!("presets: {e}");
                    }
                    // Control first, so its index is right by the time the
                    // client can ask again.
                    let _ = done_tx.send(Done {
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
        })
    }

    /// Why no job may be handed over now, if so.
    pub(super) fn busy(&self) -> Option<String> {
        let unfinished: usize = self.pending.values().map(|p| p.jobs).sum();
        (unfinished >= MAX_QUEUED).then(|| {
            format!(
                "busy: {MAX_QUEUED} preset saves and deletes are still being written (a slow disk?); try again in a moment"
            )
        })
    }

    /// Hand `job` over (after [`busy`](Self::busy) said there is room).
    pub(super) fn submit(&mut self, job: Job) -> Result<(), String> {
        if let Some(busy) = self.busy() {
            return Err(busy);
        }
        let name = job.name.clone();
        let sent = self.jobs.as_ref().is_some_and(|j| j.try_send(job).is_ok());
        if !sent {
            return Err("busy: the presets' writer has stopped".into());
        }
        let p = self.pending.entry(name).or_insert(Pending {
            jobs: 0,
            failed: false,
        });
        p.jobs += 1;
        Ok(())
    }

    /// Take in the jobs the thread has finished; the names whose last job
    /// has ended after one of them failed (their index entries need the
    /// disk's word).
    pub(super) fn settle(&mut self) -> Vec<PresetName> {
        let mut failed = Vec::new();
        for d in self.done.try_iter() {
            let Some(p) = self.pending.get_mut(&d.name) else {
                continue;
            };
            p.jobs = p.jobs.saturating_sub(1);
            p.failed |= !d.ok;
            if p.jobs == 0 {
                if p.failed {
                    failed.push(d.name.clone());
                }
                self.pending.remove(&d.name);
            }
        }
        failed
    }

    /// Let the thread finish what it was given and wait for it (before
    /// the service ends: at most [`MAX_QUEUED`] jobs); then
    /// [`settle`](Self::settle).
    pub(super) fn close(&mut self) -> Vec<PresetName> {
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
