//! Parapet's server: the gRPC API, the journal, the intent lifecycle and its timers.
//!
//! # Layout
//! - [`server`]: builds everything from a [`config::Config`] and runs the listeners.
//! - [`engine`]: submit, execute, expire, roll back, recover: the lifecycle driven.
//! - [`lifecycle`]: the intent state machine; the only place state changes.
//! - [`journal`]: the durable log, group commit, and the derived state in sled.
//! - [`grpc`] and [`pb`]: thin tonic handlers and the proto ↔ domain conversions.
//! - [`http`]: the HTTP listener (EDL lists for firewalls, liveness).
//! - [`clock`]: injected time.
//! - [`lock`]: one Parapet per data directory.

#![forbid(unsafe_code)]

pub mod auth;
pub mod clock;
pub mod config;
pub mod engine;
pub mod grpc;
pub mod http;
pub mod journal;
pub mod lifecycle;
pub mod lock;
pub mod ocsf;
pub mod pb;
pub mod server;
pub mod telemetry;
