//! What the recorder thread is asked and what it answers: the recording
//! commands of the WebSocket protocol's `record_*` messages, and its replies
//! to one client or to every client that may record.

use super::files::{Listing, RecordingName};
use super::RecorderStatus;

/// A recording command.
#[derive(Clone, Debug, PartialEq)]
pub enum RecCommand {
    /// Start recording.
    Start,
    /// Stop recording.
    Stop,
    /// Save the last `seconds` (default: all) of the replay buffer.
    SaveReplay {
        /// How much.
        seconds: Option<f64>,
    },
    /// List the recordings.
    List,
    /// Delete one.
    Delete {
        /// Its name (checked against a fresh listing).
        name: String,
    },
    /// A download ticket for one.
    Download {
        /// Its name (checked against a fresh listing).
        name: String,
    },
}

/// A command from one client.
#[derive(Debug)]
pub struct RecRequest {
    /// Who asked.
    pub client: u64,
    /// What.
    pub cmd: RecCommand,
}

/// An answer or a change to announce.
#[derive(Debug, PartialEq)]
pub enum RecMsg {
    /// The recordings and the recorder's state.
    Recordings(Listing, RecorderStatus),
    /// The replay buffer was saved.
    Saved {
        /// File.
        name: RecordingName,
        /// Length.
        seconds: f64,
    },
    /// A download ticket.
    Download {
        /// File.
        name: RecordingName,
        /// Ticket for `/recordings/<name>?ticket=`.
        ticket: String,
        /// Seconds it is good for until its first use.
        expires_s: u64,
    },
    /// A command failed, or a recording stopped by itself.
    Error(String),
}

/// Where a message goes.
#[derive(Debug)]
pub struct RecReply {
    /// One client, or every client that may record (`None`).
    pub to: Option<u64>,
    /// The message.
    pub msg: RecMsg,
}
