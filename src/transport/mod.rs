//! Wire transports: OSC over UDP, and the WebSocket/HTTP server for the UI.
//!
//! Uses the feature types and control's command type; never dsp or capture
//! internals.

pub mod bind;
pub mod hosts;
pub mod http;
pub mod http_recordings;
pub mod osc;
pub mod pace;
pub mod places;
pub mod serve;
pub mod ws;
