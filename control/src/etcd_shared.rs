//! What keeps an etcd store bounded: the keys replicas share about their
//! proxies (`P/fleet/<replica>/<proxy>`, `P/stats/<replica>/<proxy>`)
//! live under the replica's lease ([`SharedLease`], 15 s, kept alive while
//! the replica runs), so a replica that leaves takes its keys with it, and
//! a proxy's keys are deleted when the replica forgets the proxy
//! ([`retain`]); and the history of old revisions is compacted
//! periodically ([`compact_once`]), since etcd keeps every revision until
//! told otherwise and refuses every write (NOSPACE) once its quota is full.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions};

/// The shared keys' lease time to live, in seconds.
pub(crate) const SHARED_TTL_S: i64 = 15;
/// How often old revisions are compacted.
pub(crate) const COMPACT_EVERY: Duration = Duration::from_secs(300);
/// Revisions kept below the current one when compacting.
pub(crate) const COMPACT_MARGIN: i64 = 10_000;

/// This replica's lease for the keys it shares; granted on first use and
/// again after it is lost.
#[derive(Debug, Default)]
pub(crate) struct SharedLease {
    id: Arc<AtomicI64>,
    granting: tokio::sync::Mutex<()>,
}

impl SharedLease {
    /// The lease id, granting one (and keeping it alive in the
    /// background) if none is held.
    pub(crate) async fn get(&self, client: &Client) -> Result<i64, etcd_client::Error> {
        let _one = self.granting.lock().await;
        let id = self.id.load(Ordering::SeqCst);
        if id != 0 {
            return Ok(id);
        }
        let mut c = client.clone();
        let id = c.lease_grant(SHARED_TTL_S, None).await?.id();
        let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
        self.id.store(id, Ordering::SeqCst);
        let held = self.id.clone();
        tokio::spawn(async move {
            let every = Duration::from_secs(SHARED_TTL_S.unsigned_abs() / 3);
            loop {
                tokio::time::sleep(every).await;
                let renewed = match keeper.keep_alive().await {
                    Ok(()) => matches!(stream.message().await, Ok(Some(r)) if r.ttl() > 0),
                    Err(_) => false,
                };
                if !renewed {
                    tracing::debug!(
                        lease = id,
                        "the shared keys' lease lapsed; the next share grants another"
                    );
                    let _ = held.compare_exchange(id, 0, Ordering::SeqCst, Ordering::SeqCst);
                    return;
                }
            }
        });
        Ok(id)
    }

    /// Forgets `id` (it expired or failed): the next put grants another.
    pub(crate) fn lost(&self, id: i64) {
        let _ = self
            .id
            .compare_exchange(id, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Puts `value` at `key` under this replica's shared lease.
pub(crate) async fn put_leased(
    client: &Client,
    lease: &SharedLease,
    key: String,
    value: Vec<u8>,
) -> Result<(), etcd_client::Error> {
    let id = lease.get(client).await?;
    let mut c = client.clone();
    let put = c
        .put(
            key.clone(),
            value.clone(),
            Some(PutOptions::new().with_lease(id)),
        )
        .await;
    match put {
        Err(e) if e.to_string().contains("lease not found") => {
            // The lease ran out (etcd was away for longer than its TTL).
            lease.lost(id);
            let id = lease.get(client).await?;
            c.put(key, value, Some(PutOptions::new().with_lease(id)))
                .await
                .map(|_| ())
        }
        other => other.map(|_| ()),
    }
}

/// Deletes the keys under `dir` (one per proxy: `dir` + name) whose proxy
/// is not in `keep`; how many were deleted.
pub(crate) async fn retain(
    client: &Client,
    dir: &str,
    keep: &HashSet<String>,
) -> Result<usize, etcd_client::Error> {
    let mut c = client.clone();
    let listed = c
        .get(dir, Some(GetOptions::new().with_prefix().with_keys_only()))
        .await?;
    let mut deleted = 0;
    for kv in listed.kvs() {
        let name = String::from_utf8_lossy(&kv.key()[dir.len().min(kv.key().len())..]);
        if !keep.contains(name.as_ref()) {
            c.delete(kv.key(), None).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Compacts etcd's history up to `margin` revisions below the current one
/// (read from `probe`'s answer); the revision compacted to, or `None`
/// when there is not yet more than `margin` of history.
pub(crate) async fn compact_once(
    client: &Client,
    probe: &str,
    margin: i64,
) -> Result<Option<i64>, etcd_client::Error> {
    let mut c = client.clone();
    let current = c
        .get(probe, None)
        .await?
        .header()
        .map_or(0, |h| h.revision());
    let target = current - margin;
    if target <= 1 {
        return Ok(None);
    }
    match c.compact(target, None).await {
        Ok(_) => {
            tracing::info!(
                revision = target,
                current,
                "etcd history compacted (old revisions freed)"
            );
            Ok(Some(target))
        }
        // Another replica (or an operator) got there first.
        Err(e) if e.to_string().contains("compacted") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `compact` every `every`, for the life of the process (it does the
/// work only on the leader); a failure is logged and tried again later.
pub(crate) async fn compact_forever<F, Fut, E>(every: Duration, compact: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = compact().await {
            tracing::warn!(error = %e, "cannot compact etcd's history; trying again later");
        }
    }
}
