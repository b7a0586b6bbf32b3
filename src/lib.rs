//! phase4: a real-time audio feature server.
//!
//! ```text
//!            SCHED_FIFO                     worker threads                    own threads
//! ALSA PCM ─► p4-capture ─► SPSC ring ──► p4-bands    ─┐                  ┌─► p4-osc ──► UDP
//! (mmap/RW)   (to f32, mono, (one per     (IIR L/M/H,  ├─► SPSC rings ────┤
//!  or WAV      time stamp)    worker)      level, band │   (feature       └─► p4-ws ───► browsers
//!                                          onsets)     │    frames)            (+ HTTP UI)
//!                          └─► SPSC ring ─► p4-spectrum┘
//!                                          (FFT, log bins, flux onsets,
//!                                           beat/tempo, spectral shape)
//! control: WS commands → validated → new DspParams through lock-free rings → workers
//! supervisor (main thread): start order, READY, watchdog, health line, signals
//! monitor: p4-capture ─► SPSC ring (gated) ─► p4-monitor ─► Opus packets ─► p4-ws ─► listeners
//!                                                        └─► tape (replay) ◄─ p4-record ─► WAV files
//! ```
//!
//! Modules: [`config`] (TOML, validation), [`capture`] (ALSA and WAV sources,
//! the capture thread), [`dsp`] (features from blocks), [`transport`] (OSC,
//! WebSocket, HTTP), [`control`] (commands, state and presets), [`monitor`]
//! (the Opus monitor stream, recordings and the replay buffer), [`app`]
//! (the supervisor), [`types`] and [`stats`] (plain data shared by all).

pub mod analyze;
pub mod app;
pub mod capture;
pub mod cli;
pub mod config;
pub mod control;
pub mod dsp;
pub mod monitor;
pub mod rig;
pub mod rt;
pub mod service;
pub mod stats;
pub mod transport;
pub mod types;
