//! The logic of serving models, kept free of I/O so it can be tested directly.
//!
//! Serving a model safely means deciding which version answers each request,
//! measuring a canary against its stable version interval by interval,
//! promoting or rolling back on those measurements, watching live inputs drift
//! away from what the gate saw, and telling people when something goes wrong.
//! Every one of those decisions is a pure function of its inputs, so this crate
//! holds them with no tokio, no wasmtime, no HTTP, no clock and no random
//! source: time and random numbers are passed in by the caller (the server in
//! `host/server`). That keeps the rules deterministic and lets the tests here
//! pin them exactly, instead of testing them through a running server.
//!
//! - [`routing`]: which version answers a request (weighted, sticky by key).
//! - [`analysis`]: one analysis interval's measurement against thresholds.
//! - [`rollout`]: the canary state machine driven by those measurements.
//! - [`sketch`]: bounded-memory distributions of live traffic and their drift
//!   from the gate-time reference.
//! - [`compare`]: shadow agreement and delayed-label accuracy.
//! - [`webhook`]: signing alert payloads and the retry schedule.
//! - [`ratelimit`]: per-caller request budgets (token buckets).
#![forbid(unsafe_code)]

pub mod analysis;
pub mod compare;
pub mod ratelimit;
pub mod rollout;
pub mod routing;
pub mod sketch;
pub mod webhook;
