//! The presets' writer: a thread of its own (`p4-presets`), so that saving
//! a preset never holds up the control thread.
//!
//! A save is two fsyncs ([`write_atomic`]); on an SD card on a bad day
//! that is over a second. Done on the control thread, every command behind
//! it would wait that long: another client's slider drag, the OSC input
//! port, a device switch. So the control thread checks a save or a delete
//! completely, updates the index and hands the file work over; the writer
//! does it in order (a delete after a save of the same name deletes the
//! saved file), answers the client that asked when it is done, and tells
//! control how it went, so a failed write is taken out of the index again.
//!
//! At most [`MAX_QUEUED`] jobs wait or run: a client that saves faster
//! than the disk writes is told to try again, and memory stays bounded.

use super::PresetList;
use crate::control::state::write_atomic;
use crate::control::{Reply, Response};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Most preset jobs waiting or running at once.
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
    pub(super) name: super::PresetName,
    pub(super) path: PathBuf,
    pub(super) work: Work,
    /// The client that asked ([`Reply::client`]).
    pub(super) client: u64,
    /// The list to send that client when the job succeeds (the index as
    /// control left it).
    pub(super) list: PresetList,
}

/// How a job ended, for control's index.
pub(super) struct Done {
    pub(super) name: super::PresetName,
    pub(super) ok: bool,
}

/// Writes preset files on their own thread (see the module docs).
pub(super) struct PresetWriter {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    queued: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl PresetWriter {
    /// Start the writer; its answers go to `replies`.
    pub(super) fn spawn(replies: Sender<Reply>) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(MAX_QUEUED);
        let (done_tx, done) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let count = queued.clone();
        let thread = std::thread::Builder::new()
            .stack_size(crate::rt::THREAD_STACK)
            .name("p4-presets".into())
            .spawn(move || {
                for job in rx {
                    let result = match &job.work {
                        Work::Save { text } => write_atomic(&job.path, text).map_err(|e| {
                            format!("cannot save preset {:?}: {e}", job.name.as_str())
                        }),
                        Work::Delete => match std::fs::remove_file(&job.path) {
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                Err(format!("cannot delete preset {:?}: {e}", job.name.as_str()))
                            }
                            _ => Ok(()),
                        },
                    };
                    if let Err(e) = &result {
                        log::warn!("presets: {e}");
                    }
                    // Control first, so its index is right by the time the
                    // client can ask again.
                    let _ = done_tx.send(Done {
                        name: job.name,
                        ok: result.is_ok(),
                    });
                    count.fetch_sub(1, Ordering::AcqRel);
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
            queued,
            thread: Some(thread),
        })
    }

    /// Whether another job may be handed over now.
    pub(super) fn has_room(&self) -> bool {
        self.queued.load(Ordering::Acquire) < MAX_QUEUED
    }

    /// Hand `job` over; it comes back when there is no room (or the
    /// writer is gone).
    pub(super) fn submit(&self, job: Job) -> Result<(), Job> {
        let Some(jobs) = &self.jobs else {
            return Err(job);
        };
        if !self.has_room() {
            return Err(job);
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                Err(job)
            }
        }
    }

    /// The jobs that ended since the last call.
    pub(super) fn finished(&self) -> impl Iterator<Item = Done> + '_ {
        self.done.try_iter()
    }

    /// Let the writer finish what it was given, and wait for it (before
    /// the service ends: at most [`MAX_QUEUED`] writes).
    pub(super) fn close(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PresetWriter {
    fn drop(&mut self) {
        self.close();
    }
}
