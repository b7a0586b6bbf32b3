//! Saving the replay buffer: the last seconds the tape holds, written
//! into a file of their own while the capture goes on; a save that fails
//! half-way is removed.

use super::Recorder;
use crate::monitor::files::{Kind, RecordingName};
use crate::monitor::wav_out::{Writer, HEADER_MAX};

impl Recorder {
    pub(super) fn save_replay(
        &mut self,
        seconds: Option<f64>,
    ) -> Result<(RecordingName, f64), String> {
        if !self.hub.replay_on {
            return Err("the replay buffer is off (record.replay-s = 0)".into());
        }
        let dir = self.folder()?.to_path_buf();
        let want = seconds.unwrap_or(self.cfg.replay_s);
        if !want.is_finite() || want <= 0.0 || want > self.cfg.replay_s {
            return Err(format!(
                "seconds must be above 0 and at most {} (record.replay-s)",
                self.cfg.replay_s
            ));
        }
        let (seg, from, to, t_first) = {
            let t = self.tape.lock().unwrap_or_else(|e| e.into_inner());
            let seg = t.segment().ok_or("nothing captured yet")?;
            let to = t.head();
            let from = to
                .saturating_sub((want * seg.rate as f64).round() as u64)
                .max(t.oldest());
            (seg, from, to, t.time_of(from))
        };
        if to <= from {
            return Err("nothing captured yet".into());
        }
        let used = self.usage(&dir)?;
        self.room_for(
            &dir,
            used,
            (to - from) * seg.kind.bytes() as u64 + HEADER_MAX,
        )?;
        if self.scratch.is_empty() {
            self.scratch = vec![0u8; 4 * 192_000];
        }
        let mut w = Writer::create(&dir, Kind::Replay, seg, t_first)?;
        let mut at = from;
        let result = loop {
            if at >= to {
                break Ok(());
            }
            let n = {
                let t = self.tape.lock().unwrap_or_else(|e| e.into_inner());
                if t.segment().map(|s| s.id) != Some(seg.id) {
                    break Err("the input changed while saving".to_string());
                }
                if at < t.oldest() {
                    break Err(
                        "the disk is too slow: the replay buffer moved on while saving".into(),
                    );
                }
                let room = ((to - at) as usize * seg.kind.bytes()).min(self.scratch.len());
                t.read(at, &mut self.scratch[..room])
            };
            if n == 0 {
                break Ok(());
            }
            if let Err(e) = w.write(&self.scratch, n) {
                break Err(e);
            }
            at += n as u64;
        };
        let secs = w.seconds();
        let name = w.name.clone();
        let closed = w.finish();
        match result.and(closed) {
            Ok(name) => {
                self.used += std::fs::metadata(dir.join(name.as_str())).map_or(0, |m| m.len());
                crate::peer_log!(
                    log::Level::Info,
                    "record: saved the last {secs:.1} s as {name}"
                );
                Ok((name, secs))
            }
            Err(e) => {
                // A half-written save is worth nothing and takes space.
                let _ = std::fs::remove_file(dir.join(name.as_str()));
                Err(e)
            }
        }
    }
}
