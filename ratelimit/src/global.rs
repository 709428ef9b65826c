//! Fleet-wide limits through Redis, reconciled in the background.
//!
//! Each proxy applies the policy's GCRA locally and counts the quota it
//! admitted for each key (`pending_ns`). Every sync interval the syncer
//! sends, in one `EVAL` per 500 keys, what each dirty key consumed; a Lua
//! script adds it to the key's fleet TAT (Redis time, so proxy clocks never
//! matter) and answers how far ahead of now that TAT is (the fleet's
//! "debt"). The proxy then moves its local TAT to at least
//! `now + debt + quota admitted since the snapshot`. The request path only
//! touches atomics; it never waits on Redis.
//!
//! **Overshoot bound.** Between two syncs a proxy only knows the fleet as
//! of the last reply, so with `N` proxies each may admit up to its own
//! `burst + rate x (interval + rtt)` that the others have not seen. Over a
//! window `W` the fleet admits at most
//! `rate x W + burst + (N - 1) x (burst + rate x (interval + rtt))`; the
//! excess is transient (the pushed debt then holds every proxy back), so
//! over long windows the fleet converges to `rate`. `benches/`'s fleet test
//! measures it.
//!
//! **Outage.** A failed or slow (> 250 ms) sync drops the unsent counts and
//! is retried every interval with a fresh connection. The store counts as
//! down only once no sync has succeeded for `STORE_STALE` (1 s, or four
//! intervals): one slow command does not flip `fail_closed` policies.
//! While down, `fail_open` policies run on local limits only and
//! `fail_closed` ones answer 503. The first good sync restores both.
//!
//! Each round also shares the abuse block list (see `block_sync.rs`).
//!
//! A Redis Cluster (`redis+cluster://h1:p1,h2:p2`) has its own syncer,
//! `cluster_sync.rs`, on the same script and the same cells; `run_sync`
//! hands such URLs to it. `rediss://` and `rediss+cluster://` are the same
//! over TLS (`tls.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};

use crate::block_sync::{share_blocks, BlockKeys, BlockStream};
use crate::cluster::ClusterUrl;
use crate::limiter::Limiter;
use crate::reconcile::{apply_debt, discard, take_dirty, BATCH, SCRIPT, SYNC_TIMEOUT};
use crate::state::PolicyState;
use crate::tls::{is_tls, RedisTls, TlsFiles};

/// Where and how often to reconcile.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// `redis://host:port[/db]`, `rediss://...`, or
    /// `redis+cluster://h1:p1,h2:p2` (`rediss+cluster://` for TLS).
    pub url: String,
    pub interval: Duration,
    /// A CA and client certificate for a `rediss` URL (without it: the
    /// system's roots, no client certificate).
    pub tls: Option<RedisTls>,
}

impl SyncConfig {
    /// The `--redis` URL and its TLS files, checked at start-up: a bad URL
    /// or an unreadable file is an error that names the flag (and never a
    /// password), so the proxy does not start with every global limit
    /// store-down.
    pub fn new(url: String, interval: Duration, files: &TlsFiles) -> Result<SyncConfig, String> {
        check_url(&url)?;
        if !is_tls(&url) {
            if !files.is_empty() {
                return Err(format!("--redis-ca, --redis-cert and --redis-key are for TLS to Redis, but --redis {} is not a rediss:// or rediss+cluster:// URL", redacted(&url)));
            }
            return Ok(SyncConfig {
                url,
                interval,
                tls: None,
            });
        }
        let tls = RedisTls::load(files)?;
        if ClusterUrl::parse(&url).ok().flatten().is_none() {
            // The client takes the files as it will connect with them.
            Client::build_with_tls(url.as_str(), tls.certificates())
                .map_err(|e| format!("--redis {}: {e}", redacted(&url)))?;
        }
        Ok(SyncConfig {
            url,
            interval,
            tls: Some(tls),
        })
    }
}

/// The URL for logs: credentials masked, both `redis://user:secret@host`
/// and the `pass`/`password` query parameters of `redis+unix://` URLs.
pub fn redacted(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme + 3 => {
            format!("{}***{}", &base[..scheme + 3], &base[at..])
        }
        _ => base.to_string(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                {
                    format!("{k}=***")
                }
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Checks a `--redis` URL at start-up, so a typo stops the proxy with a
/// clear error instead of running with every global limit store-down.
pub fn check_url(url: &str) -> Result<(), String> {
    if ClusterUrl::parse(url)
        .map_err(|e| format!("--redis {}: {e}", redacted(url)))?
        .is_some()
    {
        return Ok(());
    }
    if is_tls(url) && url.contains('#') {
        return Err(format!(
            "--redis {}: a URL fragment such as #insecure (no certificate check) is not supported; give the server's CA with --redis-ca FILE",
            redacted(url)
        ));
    }
    Client::open(url).map(|_| ()).map_err(|e| {
        format!(
            "--redis {}: {e}; expected redis://[user:password@]host:port[/db], rediss://... (TLS), redis+unix:///path.sock[?db=N&pass=...] or redis+cluster://host:port,host:port,... (rediss+cluster:// for TLS)",
            redacted(url)
        )
    })
}

/// Runs the syncer until the task is dropped.
pub async fn run_sync(limiter: Arc<Limiter>, cfg: SyncConfig) {
    if let Ok(Some(cluster)) = ClusterUrl::parse(&cfg.url) {
        return crate::cluster_sync::run(limiter, cfg.interval, cluster, cfg.tls).await;
    }
    let store = &limiter.store;
    // Optimistic until the first attempt says otherwise.
    limiter.expect_store(cfg.interval);
    // A bad URL still runs the loop: it keeps discarding unsent counts.
    let client = match &cfg.tls {
        Some(tls) => Client::build_with_tls(cfg.url.as_str(), tls.certificates()),
        None => Client::open(cfg.url.as_str()),
    }
    .inspect_err(|e| {
            store.up.store(false, Ordering::Relaxed);
            tracing::error!(url = %redacted(&cfg.url), error = %e, "bad --redis URL; global rate limits act as if the store were down");
        })
        .ok();
    // Every command (connect, EVAL, PING) fails after SYNC_TIMEOUT, so a
    // hung Redis costs one timeout per round and nothing else.
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(SYNC_TIMEOUT)
        .set_response_timeout(SYNC_TIMEOUT);
    let script = Script::new(SCRIPT);
    let interval_us = u64::try_from(cfg.interval.as_micros()).unwrap_or(u64::MAX);
    // Reading from 0 replays the blocks the fleet already has.
    let mut blocks = BlockStream::default();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut failing = false;
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = Instant::now();
        let states = limiter.live_global();
        let result = async {
            if conn.is_none() {
                let Some(client) = &client else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "bad --redis URL",
                    )));
                };
                conn = Some(
                    client
                        .get_multiplexed_async_connection_with_config(&conn_cfg)
                        .await?,
                );
            }
            match conn.as_mut() {
                Some(c) => {
                    sync_once(&limiter, c, &script, interval_us, &states).await?;
                    // Block sharing failing (say, a Redis without streams)
                    // must not take global limits down with it.
                    if let Err(e) = share_blocks(&limiter, c, &mut blocks, &BlockKeys::SINGLE).await
                    {
                        store.block_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(error = %e, "block list not shared this round");
                    }
                    Ok(())
                }
                None => Ok(()),
            }
        }
        .await;
        store.note_round(started.elapsed());
        match result {
            Ok(()) => {
                store.syncs.fetch_add(1, Ordering::Relaxed);
                store
                    .last_ok_ns
                    .store(limiter.clock(Instant::now()), Ordering::Relaxed);
                store.up.store(true, Ordering::Relaxed);
                if std::mem::take(&mut failing) {
                    tracing::info!(url = %redacted(&cfg.url), "rate-limit store reachable again; global limits resumed");
                }
            }
            Err(e) => {
                conn = None;
                // Counts that could not be pushed are dropped: replaying a
                // long outage's traffic would refuse keys long after it.
                for state in &states {
                    discard(state, &take_dirty(state));
                }
                store.errors.fetch_add(1, Ordering::Relaxed);
                let text = e.to_string();
                let advice = crate::tls::advice(&text).unwrap_or_default();
                store.note_error(format!("{}: {text}{advice}", redacted(&cfg.url)));
                let e = format!("{text}{advice}");
                // Down only once stale (`StoreStatus::ok`): a slow command
                // or a blip costs one round, not a flap of fail_closed.
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(url = %redacted(&cfg.url), error = %e, stale_after = ?crate::store::STORE_STALE.max(cfg.interval * 4), "rate-limit store sync failed; if it stays unreachable that long, fail_open policies use local limits and fail_closed ones answer 503");
                }
            }
        }
    }
}

/// One reconciliation round over every global policy.
async fn sync_once(
    limiter: &Limiter,
    conn: &mut MultiplexedConnection,
    script: &Script,
    interval_us: u64,
    states: &[Arc<PolicyState>],
) -> redis::RedisResult<()> {
    let mut sent_any = false;
    for state in states {
        let keys = take_dirty(state);
        for (n, chunk) in keys.chunks(BATCH).enumerate() {
            let mut inv = script.prepare_invoke();
            inv.arg(interval_us);
            for &(key, pending_ns) in chunk {
                inv.key(format!("{}:{key:016x}", state.store_prefix));
                inv.arg(pending_ns.div_ceil(1_000));
            }
            let debts: Vec<i64> = match inv.invoke_async(conn).await {
                Ok(d) => d,
                Err(e) => {
                    // This chunk and the rest of the policy's keys are dropped.
                    discard(state, keys.get(n * BATCH..).unwrap_or(&[]));
                    return Err(e);
                }
            };
            sent_any = true;
            let now = limiter.clock(Instant::now());
            // A long round must not look like an outage.
            limiter.store.last_ok_ns.store(now, Ordering::Relaxed);
            for (&(key, _), debt_us) in chunk.iter().zip(debts) {
                apply_debt(state, key, debt_us, now);
            }
        }
    }
    if !sent_any {
        // Nothing to push: still prove the store is there.
        redis::cmd("PING").query_async::<String>(conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn credentials_never_reach_the_logs() {
        assert_eq!(
            redacted("redis://:hunter2@10.0.0.5:6379/0"),
            "redis://***@10.0.0.5:6379/0"
        );
        assert_eq!(redacted("redis://u:p@h:1"), "redis://***@h:1");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        // Issue 28: the TLS schemes too.
        assert_eq!(
            redacted("rediss://default:hunter2@redis.internal:6380/0"),
            "rediss://***@redis.internal:6380/0"
        );
        assert_eq!(
            redacted("rediss+cluster://u:hunter2@h:7000,h:7001"),
            "rediss+cluster://***@h:7000,h:7001"
        );
        assert_eq!(redacted("rediss://h:6380"), "rediss://h:6380");
        // Issue 33: unix-socket URLs carry the password as a parameter.
        assert_eq!(
            redacted("redis+unix:///run/redis.sock?db=1&pass=hunter2"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(
            redacted("redis+unix:///r.sock?password=hunter2&user=u"),
            "redis+unix:///r.sock?password=***&user=u"
        );
    }

    #[test]
    fn a_bad_url_is_refused_with_the_expected_forms_and_no_secret() {
        use super::check_url;
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("redis+unix:///run/redis.sock?pass=x").is_ok());
        let e = check_url("rediss//:hunter2@host:6379").unwrap_err();
        assert!(e.contains("expected redis://"), "{e}");
        let e = check_url("http://:hunter2@host:6379").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("redis+cluster://host:port,host:port"), "{e}");
        // A cluster: seeds only; credentials come from the environment.
        assert!(check_url("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").is_ok());
        let e = check_url("redis+cluster://u:hunter2@h:7000,h:7001").unwrap_err();
        assert!(
            !e.contains("hunter2") && e.contains("EDGESTEER_REDIS_PASSWORD"),
            "{e}"
        );
        // Issue 28: TLS, one node or a cluster; never without checks.
        assert!(check_url("rediss://127.0.0.1:6380").is_ok());
        assert!(check_url("rediss://:hunter2@redis.internal:6380/2").is_ok());
        assert!(check_url("rediss+cluster://h:7000,h:7001").is_ok());
        let e = check_url("rediss://:hunter2@h:6380/#insecure").unwrap_err();
        assert!(
            e.contains("--redis-ca") && e.contains("rediss://***@h:6380") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn tls_files_go_with_a_tls_url_only() {
        use super::SyncConfig;
        use crate::tls::TlsFiles;
        use std::time::Duration;
        let ca = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let ms = Duration::from_millis(50);
        let e = SyncConfig::new("redis://:hunter2@h:6379".into(), ms, &ca).unwrap_err();
        assert!(
            e.contains("not a rediss://") && !e.contains("hunter2"),
            "{e}"
        );
        let e = SyncConfig::new("rediss://h:6380".into(), ms, &ca).unwrap_err();
        assert!(e.starts_with("--redis-ca /nonexistent/ca.pem"), "{e}");
        let plain = SyncConfig::new("rediss://h:6380".into(), ms, &TlsFiles::default()).unwrap();
        assert!(plain.tls.is_some());
        let e = SyncConfig::new("rediss+cluster://h:7000/1".into(), ms, &TlsFiles::default())
            .unwrap_err();
        assert!(e.contains("rediss+cluster://HOST:PORT"), "{e}");
    }
}
