//! Usage metering: what each tenant used, per window, for billing (`[metering]`).
//!
//! Every answered request (routed or refused) adds one [`Sample`] to its worker's [`Meter`]:
//! counts by status class, 429s, bytes in and out, upstream time, by (tenant, cell, route
//! class). Windows are
//! aligned on the clock (`window_start` a multiple of the window length since the Unix epoch),
//! so every node's windows line up. A window holds at most `max_keys` (tenant, cell, route class) entries; a
//! sample for a new pair past that closes the window early (counted), so memory stays bounded
//! however many tenants are active. [`Meter::take`] hands the closed windows to whoever emits
//! them; [`event::events`] merges one node's windows into one [`event::UsageEvent`] per
//! (tenant, cell, window part), each with an idempotency key a consumer can drop replays by;
//! [`file::FileSink`] appends them to a rotated JSON Lines file, and [`spool::Spool`] keeps
//! what a sink could not take on local disk, bounded, for replay in order; [`emit::Emitter`]
//! puts them together, and [`kinesis::KinesisSink`] sends to a Kinesis data stream. Each run of
//! a node spools into its own directory ([`runs`]); [`service`] runs the emitter thread, and
//! [`answer`] is what the request path calls.

pub mod answer;
pub mod emit;
pub mod event;
pub mod file;
pub mod kinesis;
pub mod runs;
pub mod service;
pub mod spool;
mod window;

pub use window::{Closed, Entry, Meter, Sample, Usage};
