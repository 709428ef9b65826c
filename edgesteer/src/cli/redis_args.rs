//! The rate-limit store flags of `edgesteer proxy`: `--redis` (one Redis
//! or a Redis Cluster, plain or TLS), its sync interval, and the TLS files
//! (`--redis-ca`, `--redis-cert`, `--redis-key`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use edgesteer_ratelimit::global::SyncConfig;
use edgesteer_ratelimit::tls::TlsFiles;

#[derive(Args, Debug)]
pub(super) struct RedisArgs {
    /// Redis for `global` rate-limit policies, e.g. redis://127.0.0.1:6379,
    /// or rediss://HOST:PORT for TLS (the server's certificate is always
    /// verified: --redis-ca, else the system's roots). The URL may carry a
    /// password: prefer the environment. A Redis Cluster:
    /// redis+cluster://HOST:PORT,HOST:PORT,... (a few seed nodes), or
    /// rediss+cluster://... for TLS to every node; its user and password
    /// only in EDGESTEER_REDIS_USERNAME and EDGESTEER_REDIS_PASSWORD.
    #[arg(long, env = "EDGESTEER_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// How often global rate-limit counts are reconciled with Redis; the
    /// fleet's overshoot grows with it (see docs/design.md).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    redis_sync_ms: u64,
    /// CA (PEM) that a rediss:// Redis's certificate must chain to; only it
    /// is trusted, not the system roots.
    #[arg(long, env = "EDGESTEER_REDIS_CA")]
    redis_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a Redis with tls-auth-clients yes (mTLS).
    #[arg(long, requires = "redis_key")]
    redis_cert: Option<PathBuf>,
    /// Private key (PEM) of --redis-cert.
    #[arg(long, requires = "redis_cert")]
    redis_key: Option<PathBuf>,
}

impl RedisArgs {
    /// The store's sync settings, checked (URL and files) before anything
    /// starts; `None` without `--redis`.
    pub(super) fn sync_config(&self) -> anyhow::Result<Option<SyncConfig>> {
        let files = TlsFiles {
            ca: self.redis_ca.clone(),
            cert: self.redis_cert.clone(),
            key: self.redis_key.clone(),
        };
        let Some(url) = self.redis.clone() else {
            if !files.is_empty() {
                anyhow::bail!("--redis-ca, --redis-cert and --redis-key are for TLS to the rate-limit store: give --redis rediss://HOST:PORT (or rediss+cluster://...) too");
            }
            return Ok(None);
        };
        let interval = Duration::from_millis(self.redis_sync_ms.max(1));
        SyncConfig::new(url, interval, &files)
            .map(Some)
            .map_err(anyhow::Error::msg)
    }
}
