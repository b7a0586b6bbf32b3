//! Runtime control: validating commands from the WebSocket, applying them
//! through the parameter handoff, and persisting state and presets.
//!
//! Never uses transport internals.
