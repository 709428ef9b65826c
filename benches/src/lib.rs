//! # edgesteer-benches
//!
//! Criterion benchmarks of the request hot path (`benches/steering.rs`),
//! the bare Pingora pass-through used as the baseline in load runs
//! (`passthrough` binary), and the peer-bench wrapper (`peer.sh`).
//! See BENCHMARKS.md for how to run them and the latest figures.
#![forbid(unsafe_code)]

pub mod load;
