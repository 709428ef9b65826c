//! Where and how the etcd store reaches etcd: `--store
//! etcd://host:port[,host:port...]/prefix` (`etcds://` for TLS), parsed.

use std::time::Duration;

/// Where and how to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// `user:password` for etcd's own authentication.
    pub user: Option<(String, String)>,
    /// PEM CA that etcd's certificate must chain to (https endpoints).
    pub ca: Option<std::path::PathBuf>,
    /// This replica's name, recorded with the rollout decisions it makes.
    pub replica: String,
    /// How often the leader compacts etcd's old revisions (default 5 min).
    pub compact_every: Duration,
    /// Revisions kept below the current one when compacting.
    pub compact_margin: i64,
}

impl EtcdConfig {
    /// Parses `etcd://host:port[,host:port...]/prefix` (`etcds://` for TLS).
    pub fn parse(url: &str, replica: String) -> Result<EtcdConfig, String> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("etcd://") {
            ("http", r)
        } else if let Some(r) = url.strip_prefix("etcds://") {
            ("https", r)
        } else {
            return Err(format!(
                "--store {url}: expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX (or etcds:// for TLS)"
            ));
        };
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, "edgesteer"));
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{h}"))
            .collect();
        if endpoints.is_empty() {
            return Err(format!("--store {url}: no etcd endpoint"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            return Err(format!(
                "--store {url}: give a key prefix, e.g. etcd://127.0.0.1:2379/edgesteer"
            ));
        }
        Ok(EtcdConfig {
            endpoints,
            prefix: format!("/{prefix}"),
            user: None,
            ca: None,
            replica,
            compact_every: crate::etcd_shared::COMPACT_EVERY,
            compact_margin: crate::etcd_shared::COMPACT_MARGIN,
        })
    }
}
