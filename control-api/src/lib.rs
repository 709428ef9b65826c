//! # edgesteer-control-api
//!
//! What the config service, the proxies and `edgesteer ctl` share, and
//! nothing more: the wire types of every endpoint, the typed client, and
//! the tokens, roles and bearer-token check. No server framework and no
//! store, so the data plane and the ops CLI link neither axum nor etcd.
//!
//! ## Layout
//! - [`api`]: the request and answer types of every endpoint (docs/api.md).
//! - [`record`]: one stored version and its audit record.
//! - [`report`]: the per-track stats and the traffic model proxies send
//!   every second.
//! - [`limits`]: the rate-limit half of the traffic model (per-key rate
//!   histograms per tier) and the preview's 429 projection per tier.
//! - [`preview`]: the impact preview's request and answer.
//! - [`client`]: typed calls for `ctl` and the proxy's watcher (plain HTTP
//!   or TLS verified against a given CA, optionally with a client
//!   certificate), moving to the next replica when one is unreachable or
//!   silent past the call's deadline; `client_tls` builds its HTTP client.
//! - [`auth`]: `[ROLE:]NAME=SECRET` tokens, roles, and [`authorize`], the
//!   one bearer-token check of the service and the admin listener.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod client;
mod client_tls;
pub mod limits;
pub mod preview;
pub mod record;
pub mod report;

pub use auth::{
    authorize, bearer, find_token, read_secret_file, read_token_file, token_name, Access, Caller,
    Refusal, Role, Token,
};
