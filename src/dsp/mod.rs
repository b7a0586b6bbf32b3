//! Features from blocks: band-pass filters, the auto-scaler, the FFT and the
//! log spectrum, onsets, beats and tempo, spectral shape, and the worker loop
//! that runs them.
//!
//! Owns no I/O. The same processors run in the live workers and in
//! `phase4 analyze`, so offline results are what the live path computes.

pub mod bands;
pub mod biquad;
pub mod lanes;
pub mod logbins;
pub mod onset;
pub mod params;
pub mod postprocess;
pub mod scaler;
pub mod spectral;
pub mod spectrum;
pub mod tempo;
pub mod worker;
