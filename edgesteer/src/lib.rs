//! # edgesteer
//!
//! The `edgesteer` binary's library: the command line and the demo. It is
//! the only crate that knows every other one; each subcommand hands over
//! to the crate that owns the job:
//! - `proxy` -> `edgesteer-proxy` (the Pingora data plane);
//! - `control` -> `edgesteer-control` (the config service);
//! - `ctl` -> `edgesteer-ctl` (the ops CLI; no Pingora);
//! - `validate` -> `edgesteer-config`;
//! - `demo`: all of them on loopback, with [`demo`]'s backends.
#![forbid(unsafe_code)]

pub mod cli;
pub mod demo;
