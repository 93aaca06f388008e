//! Parapet's guardrails: the policy file and the decision it makes about an intent.
//!
//! This crate is pure: no I/O, no clock, no async. The caller reads the file, passes its text to
//! [`Policy::from_toml`], and asks [`Policy::decide`] about each intent with everything the
//! decision may depend on. The same policy and the same input always give the same [`Decision`],
//! which is what makes a decision explainable and replayable.
//!
//! # Layout
//! - [`file`]: the TOML schema, its validation, and errors that point at a line.
//! - [`decide`]: the guardrails, evaluated in one documented order.
//! - [`rules`]: protected targets, budgets, rate limits, freezes, the circuit breaker.
//! - [`ledger`]: budget usage, kept by the caller and consulted by decisions.
//! - [`seen`]: what a decision saw, journaled with it so it can be read and replayed.
//! - [`allowance`]: [`Policy::decide_and_take`], the one decision path: decide, then take rate
//!   cells and budget units for an intent that acts.
//! - [`rate`]: rate limits as GCRA cells; [`breaker`]: the circuit breaker's tally and rule.
//!
//! [`Decision`]: parapet_model::Decision

#![forbid(unsafe_code)]

pub mod allowance;
pub mod breaker;
pub mod decide;
pub mod file;
pub mod ledger;
pub mod rate;
pub mod rules;
pub mod seen;

pub use allowance::{Allowance, Conditions};
pub use decide::{DecisionInput, KillSwitches, guardrail};
pub use file::{DetectionPolicy, Location, Policy, PolicyError, Tier, UnknownDetection};
pub use ledger::{Claim, Ledger, Usage};
pub use seen::Seen;

/// The policy Parapet runs on when none is given: a small, safe inventory for trying it out.
pub const EXAMPLE_POLICY: &str = include_str!("../example.toml");
