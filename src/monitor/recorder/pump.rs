//! Following the tape's head into the recording's files: a new file when
//! the input's rate or format changes or the file reaches
//! `record.max-file-s` or [`super::MAX_FILE_BYTES`], and the recording's
//! end when the disk falls behind, the quota or the free-space guard is
//! reached, or a write fails.

use super::{Recorder, MAX_FILE_BYTES, SLACK_S};
use crate::monitor::files::Kind;
use crate::monitor::wav_out::{Writer, HEADER_MAX};

impl Recorder {
    /// Move what the tape holds for the recording into its file.
    pub(super) fn pump(&mut self) -> Result<(), String> {
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        let max_file_s = self.cfg.max_file_s.max(1.0) as u64;
        for _ in 0..30 {
            let Some(a) = self.active.as_mut() else {
                return Ok(());
            };
            let (seg, n, t_first, lost) = {
                let t = self.tape.lock().unwrap_or_else(|e| e.into_inner());
                let Some(seg) = t.segment() else {
                    return Ok(());
                };
                if seg.id != a.seg_id {
                    // A device of another rate or format: a new file.
                    if let Some(w) = a.writer.take() {
                        a.done_bytes += w.bytes;
                        w.finish()?;
                    }
                    a.seg_id = seg.id;
                    a.next = a.next.max(seg.start);
                }
                let lost = a.next < t.oldest();
                let n = if lost {
                    0
                } else {
                    t.read(a.next, &mut self.scratch)
                };
                (seg, n, t.time_of(a.next), lost)
            };
            if lost {
                return Err(format!(
                    "the disk fell more than {SLACK_S} s behind; audio was lost"
                ));
            }
            if n == 0 {
                return Ok(());
            }
            let bytes = (n * seg.kind.bytes()) as u64;
            // Whole files: an open one counts its header, a new one the
            // largest header it may get.
            let written = a.done_bytes + a.writer.as_ref().map_or(HEADER_MAX, |w| w.bytes);
            if a.others_bytes + written + bytes > self.cfg.max_total_mb.saturating_mul(1 << 20) {
                return Err(format!(
                    "recordings quota reached (record.max-total-mb = {})",
                    self.cfg.max_total_mb
                ));
            }
            if self.free.saturating_sub(bytes) < self.cfg.min_free_mb.saturating_mul(1 << 20) {
                return Err(format!(
                    "disk nearly full ({} MiB free, record.min-free-mb = {})",
                    self.free >> 20,
                    self.cfg.min_free_mb
                ));
            }
            if a.writer.is_none() {
                a.writer = Some(Writer::create(&dir, Kind::Recording, seg, t_first)?);
            }
            let Some(w) = a.writer.as_mut() else {
                return Ok(());
            };
            w.write(&self.scratch, n)?;
            self.free = self.free.saturating_sub(bytes);
            a.next += n as u64;
            let too_long = w.frames >= max_file_s.saturating_mul(w.rate as u64)
                || w.bytes + self.scratch.len() as u64 >= MAX_FILE_BYTES;
            if too_long {
                if let Some(w) = a.writer.take() {
                    a.done_bytes += w.bytes;
                    w.finish()?;
                }
            }
        }
        Ok(())
    }
}
