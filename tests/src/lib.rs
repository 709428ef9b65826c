//! # edgesteer-tests
//!
//! The end-to-end harness: real `edgesteer` processes (the binary built
//! from this package's `edgesteer-e2e` target, same entry point as the real
//! one), real HTTP backends on 127.0.0.1, a real geo database file, and a
//! real HTTP client. Nothing is mocked.
//!
//! Tests live in `tests/tests/*.rs`; this library holds what they share.
//!
//! One module per job; everything the tests use is re-exported here, so a
//! test file needs only `use edgesteer_tests::*;`.
#![forbid(unsafe_code)]

mod backend;
mod binary;
mod cluster_load;
mod control;
mod etcd;
mod health;
mod metrics;
mod pace;
mod pki;
mod ports;
mod proxy;
mod redis;
pub mod redis_cluster;
mod redis_tls;
mod requests;
mod sticky;
mod tables;
mod wait;
mod workdir;

pub use backend::BackendProc;
pub use binary::binary;
pub use control::{
    follow, proxy_token, ControlProc, ControlTls, OPS_TOKEN, PROXY_TOKEN, READ_TOKEN, TEST_PROXIES,
};
pub use etcd::EtcdCluster;
pub use health::{backend_endpoints, region_endpoints};
pub use metrics::{metric, metric_value};
pub use pace::{send_paced, Pace, Paced};
pub use pki::{make_pki, TestPki};
pub use ports::{free_port, free_ports};
pub use proxy::{Proxy, ProxyConfig};
pub use redis::RedisProc;
pub use redis_tls::{RedisPki, ServerTls};
pub use requests::{answers, get_as, get_json, Landed};
pub use sticky::documented_bucket;
pub use tables::{covergen, covergen_on_loopback, fast_health, limits_table};
pub use wait::{heavy, wait_child, wait_until};
pub use workdir::Workdir;

pub use edgesteer_geo::testdb::sample_ip;
