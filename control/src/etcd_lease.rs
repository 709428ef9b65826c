//! The rollout controller's lease in etcd, fenced: one replica holds
//! `P/leader` under a 3 s lease and keeps it alive every second. It counts
//! as the leader only until its own deadline, the moment the lease could
//! have run out as etcd sees it (when the last successful keep-alive was
//! *sent*, plus the TTL etcd granted), so a replica cut off from etcd
//! stops acting before another can take over. The controller's commits
//! also compare the lease in their transaction (see
//! `EtcdStore::append_as_leader`), so a late one is refused by etcd itself.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};

/// The lease's time to live, in seconds.
pub(crate) const LEADER_TTL_S: i64 = 3;
/// How often the lease is kept alive.
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(1000);

/// Whether this replica holds the controller's lease, and until when.
#[derive(Debug)]
pub(crate) struct Leadership {
    base: Instant,
    /// The lease id held, 0 when none.
    lease: AtomicI64,
    /// Milliseconds after `base` at which the lease may have expired.
    deadline_ms: AtomicU64,
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership {
            base: Instant::now(),
            lease: AtomicI64::new(0),
            deadline_ms: AtomicU64::new(0),
        }
    }
}

impl Leadership {
    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    /// The lease held, if its local deadline has not passed.
    pub(crate) fn lease(&self) -> Option<i64> {
        let id = self.lease.load(Ordering::SeqCst);
        let alive = self.ms(Instant::now()) < self.deadline_ms.load(Ordering::SeqCst);
        (id != 0 && alive).then_some(id)
    }

    /// Holds `lease` until `ttl_s` seconds after `sent` (when the request
    /// that granted or renewed it was sent).
    fn extend(&self, lease: i64, sent: Instant, ttl_s: i64) {
        let ttl = Duration::from_secs(u64::try_from(ttl_s).unwrap_or(0));
        self.deadline_ms
            .store(self.ms(sent + ttl), Ordering::SeqCst);
        self.lease.store(lease, Ordering::SeqCst);
    }

    /// When the lease held may have run out.
    fn deadline(&self) -> Instant {
        self.base + Duration::from_millis(self.deadline_ms.load(Ordering::SeqCst))
    }

    /// No lease any more; whether one was held.
    fn end(&self) -> bool {
        self.deadline_ms.store(0, Ordering::SeqCst);
        self.lease.swap(0, Ordering::SeqCst) != 0
    }
}

/// Keeps trying to hold `key` for `replica`; runs for the life of the
/// process.
pub(crate) async fn campaign(client: Client, key: String, replica: String, me: Arc<Leadership>) {
    loop {
        let held = hold(&client, &key, &replica, &me).await;
        if me.end() {
            tracing::warn!(%replica, error = ?held.err(), "lost the rollout controller lease");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One term: acquire the key with a lease, keep it alive until that
/// fails or the local deadline passes without a renewal.
async fn hold(
    client: &Client,
    key: &str,
    replica: &str,
    me: &Leadership,
) -> Result<(), etcd_client::Error> {
    let mut c = client.clone();
    let sent = Instant::now();
    let granted = c.lease_grant(LEADER_TTL_S, None).await?;
    let lease = granted.id();
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            replica,
            Some(PutOptions::new().with_lease(lease)),
        )]);
    if !c.txn(txn).await?.succeeded() {
        let _ = c.lease_revoke(lease).await;
        return Ok(());
    }
    me.extend(lease, sent, granted.ttl());
    tracing::info!(%replica, "this replica now runs the rollout controller");
    let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
    loop {
        tokio::time::sleep(KEEP_ALIVE_EVERY).await;
        let sent = Instant::now();
        keeper.keep_alive().await?;
        // Waiting past the deadline would let the flag outlive the lease.
        let left = me.deadline().saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match tokio::time::timeout(left, stream.message()).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => me.extend(lease, sent, r.ttl()),
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                tracing::warn!(%replica, "no keep-alive answer from etcd before the lease's deadline");
                return Ok(());
            }
        }
    }
}

/// Whether `key` is held under `lease`.
pub(crate) async fn holds(client: &Client, key: &str, lease: Option<i64>) -> bool {
    let mut c = client.clone();
    c.get(key, None)
        .await
        .ok()
        .and_then(|r| r.kvs().first().map(|kv| Some(kv.lease()) == lease))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_counts_only_until_its_local_deadline() {
        let me = Leadership::default();
        assert_eq!(me.lease(), None);
        me.extend(7, Instant::now(), 3);
        assert_eq!(me.lease(), Some(7));
        // Renewed by a request sent 4 s ago with a 3 s TTL: already over.
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(4))
            .unwrap_or_else(Instant::now);
        let me = Leadership {
            base: long_ago,
            ..Leadership::default()
        };
        me.extend(7, long_ago, 3);
        assert_eq!(me.lease(), None);
        assert!(me.end());
    }
}
