//! Deterministic simulation of a validator network running the [`crate::consensus`] core.
//!
//! N validators live in one process; a seeded RNG drives a simulated network (latency, jitter,
//! loss, per-node uplink bandwidth, partitions and heals until a global stabilisation time),
//! crashes and restarts (restarted nodes rebuild from their durable state: decided chain, signing
//! guard and the write-ahead log of the current height) and Byzantine validators (equivocators,
//! vote withholders, garbage senders, invalid proposers). Every run checks agreement, validity,
//! certificate correctness, that no honest validator ever signs twice or is accused, that no
//! garbage is ever accepted as authentic, and liveness: after stabilisation every honest node
//! decides new heights within a bound of simulated time.
//!
//! The same seed always replays the same run ([`SimReport::trace`] is a digest of it).
//! [`run_seeds`] sweeps seeds and returns the first failing one; the `sim consensus --seeds N`
//! command is meant to call it.
//!
//! With a [`enroll::Workload`] the values are blocks of real-sized transactions (car
//! enrollments) that clients submit, validators gossip and proposers pack within byte and count
//! limits; the run then also checks that every transaction becomes final exactly once, and
//! reports how long that took (`sim consensus enroll`).

pub mod context;
pub mod enroll;
mod harness;
pub mod wire;

pub use harness::{
    run, run_seed, run_seeds, run_seeds_with, Behaviour, CrashEvent, NetConfig, PartitionEvent,
    SeedFailure, SimConfig, SimFailure, SimReport, SweepSummary,
};
