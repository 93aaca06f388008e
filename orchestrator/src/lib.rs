//! Parapet's server: the gRPC API, the journal, the intent lifecycle and its timers.
//!
//! # Layout
//! - [`server`]: builds everything from a [`config::Config`] and runs the listeners.
//! - [`engine`]: submit, execute, expire, roll back, recover: the lifecycle driven.
//! - [`lifecycle`]: the intent state machine; the only place state changes.
//! - [`store`]: the storage boundary (the journal of record, the state derived from it).
//! - [`journal`]: the embedded store: the durable log, group commit, the derived state in sled.
//! - [`service`]: every operation, whatever the front door: who may call it, its checks, its
//!   answer; [`filter`] selects intents for all of them; [`error`] is their one error.
//! - [`api`]: the operations in `parapet.v1`'s terms, for both API front doors.
//! - [`grpc`]: the gRPC front door, thin tonic handlers over [`api`].
//! - [`http`]: the HTTP front door: the JSON API, webhook intake, OpenC2, EDL lists for
//!   firewalls, liveness, metrics; [`intake`] maps SIEM payloads to intents.
//! - [`mcp`]: the MCP server for AI agents, at `/mcp` and as `parapet mcp` on stdio.
//! - [`sources`]: what Parapet pulls intents from (a CrowdSec Local API).
//! - [`clock`]: injected time.
//! - [`lock`]: one Parapet per data directory.
//! - [`severable`]: connections a stop can cut.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod filter;
pub mod grpc;
pub mod http;
pub mod intake;
pub mod journal;
pub mod lifecycle;
pub mod lock;
pub mod mcp;
pub mod ocsf;
pub mod server;
pub mod service;
pub mod severable;
pub mod sources;
pub mod store;
pub mod telemetry;
