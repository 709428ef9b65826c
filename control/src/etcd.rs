//! The etcd store: table versions in an etcd cluster, so several config
//! service replicas share one history and the control plane outlives any
//! one machine (`--store etcd://host:2379[,host2:2379]/prefix`).
//!
//! Keys under the prefix `P`:
//! - `P/versions/0000000042`: version 42 (the [`VersionRecord`] as JSON,
//!   audit included);
//! - `P/head`: the newest version's number;
//! - `P/epoch`: the store's identity, created once;
//! - `P/leader`: the rollout controller's lease-guarded lock
//!   ([`crate::etcd_lease`]; its commits compare the lease);
//! - `P/fleet/<replica>/<proxy>`, `P/stats/<replica>/<proxy>`: what each
//!   replica heard from its proxies, under the replica's lease and deleted
//!   when the proxy is forgotten; old revisions are compacted every few
//!   minutes ([`crate::etcd_shared`]).
//!
//! An append is one transaction: it succeeds only if the version key does
//! not exist and `P/head` still holds the version this replica built on,
//! so two replicas never commit two different version N. Every replica
//! follows `P/versions/` with a watch and adopts what the others write.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, WatchOptions,
};

pub use crate::etcd_config::EtcdConfig;
use crate::etcd_lease::{campaign, holds, Leadership};
use crate::etcd_shared::{compact_forever, compact_once, put_leased, retain, SharedLease};
use crate::store::{new_epoch, Store, StoreError, VersionRecord};

/// etcd refuses requests over 1.5 MiB (`--max-request-bytes`); a version is
/// refused before that, with room for the transaction around it.
pub const MAX_VERSION_BYTES: usize = 1_400_000;
/// Versions read per range request (at most about 22 MB).
const PAGE: i64 = 16;
/// Largest answer or watch event taken from etcd: a page of versions is
/// more than gRPC's default 4 MiB.
const MAX_MESSAGE: usize = 64 << 20;

/// A [`Store`] in etcd (see the module docs).
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    replica: String,
    leadership: Arc<Leadership>,
    /// The lease the keys shared with other replicas live under.
    shared: Arc<SharedLease>,
    compact_every: Duration,
    compact_margin: i64,
}

fn unavailable(e: etcd_client::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Whether an error is etcd's cluster settling rather than an answer:
/// the request never reached a member (its connection failed; the
/// client's balancer then picks another), or the cluster was electing a
/// leader (one member of three went down). Go's clientv3 retries these too.
fn transient(e: &etcd_client::Error) -> bool {
    let text = e.to_string();
    [
        "tcp connect error",
        "transport error",
        "leader changed",
        "no leader",
    ]
    .iter()
    .any(|t| text.contains(t))
}

/// `f` again, briefly apart, while it fails with a [`transient`] error,
/// for at most [`SETTLE`]: long enough for an election, short enough that
/// a cluster without quorum is reported as such.
async fn retried<T, F, Fut>(mut f: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut wait = Duration::from_millis(30);
    loop {
        match f().await {
            Err(e) if transient(&e) && tokio::time::Instant::now() + wait < deadline => {
                tracing::debug!(error = %e, "etcd is settling; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// How long a request rides out an etcd election.
const SETTLE: Duration = Duration::from_secs(3);

impl EtcdStore {
    /// Connects (and authenticates); fails if no endpoint answers.
    pub async fn connect(cfg: &EtcdConfig) -> Result<EtcdStore, StoreError> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(2));
        if let Some((u, p)) = &cfg.user {
            opts = opts.with_user(u.clone(), p.clone());
        }
        if let Some(ca) = &cfg.ca {
            let pem = edgesteer_config::pem::read_bounded(ca)
                .map_err(|e| StoreError::Unavailable(format!("the etcd CA {e}")))?;
            opts = opts.with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(pem)),
            );
        }
        let client = Client::connect(&cfg.endpoints, Some(opts))
            .await
            .map_err(unavailable)?;
        Ok(EtcdStore {
            client,
            prefix: cfg.prefix.clone(),
            replica: cfg.replica.clone(),
            leadership: Arc::default(),
            shared: Arc::default(),
            compact_every: cfg.compact_every,
            compact_margin: cfg.compact_margin,
        })
    }

    fn versions(&self) -> String {
        format!("{}/versions/", self.prefix)
    }

    fn version_key(&self, v: u64) -> String {
        format!("{}/versions/{v:010}", self.prefix)
    }

    fn head(&self) -> String {
        format!("{}/head", self.prefix)
    }

    fn parse(&self, key: &[u8], value: &[u8]) -> Result<VersionRecord, StoreError> {
        serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
            path: String::from_utf8_lossy(key).into_owned().into(),
            reason: e.to_string(),
        })
    }

    /// Versions from key `from` (inclusive) to the end of the prefix, a
    /// page of [`PAGE`] at a time: one answer with the whole history would
    /// pass gRPC's message limit once it holds a few hundred versions, and
    /// a replica could then neither start nor catch up.
    async fn range_from(&self, from: String) -> Result<Vec<VersionRecord>, StoreError> {
        let end = format!("{}/versions0", self.prefix); // '0' follows '/'
        let mut from = from.into_bytes();
        let mut out = Vec::new();
        loop {
            let resp = retried(|| {
                let mut c = self
                    .client
                    .kv_client()
                    .max_decoding_message_size(MAX_MESSAGE);
                let (from, end) = (from.clone(), end.clone());
                let page = GetOptions::new().with_range(end).with_limit(PAGE);
                async move { c.get(from, Some(page)).await }
            })
            .await
            .map_err(unavailable)?;
            for kv in resp.kvs() {
                out.push(self.parse(kv.key(), kv.value())?);
            }
            match resp.kvs().last() {
                // The next page starts just past the last key read.
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    fn leader_key(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    /// Compacts etcd's history now (what the leader does every
    /// `compact_every`): the revision compacted to, if any.
    pub async fn compact_now(&self) -> Result<Option<i64>, StoreError> {
        compact_once(&self.client, &self.head(), self.compact_margin)
            .await
            .map_err(unavailable)
    }

    /// Appends `record` if `P/head` is the version before it and, with
    /// `fence`, only while `P/leader` is held under that lease.
    async fn append_with(
        &self,
        record: &VersionRecord,
        fence: Option<i64>,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt {
            path: self.version_key(record.version).into(),
            reason: e.to_string(),
        })?;
        if bytes.len() > MAX_VERSION_BYTES {
            return Err(StoreError::TooLarge {
                bytes: bytes.len(),
                limit: MAX_VERSION_BYTES,
            });
        }
        let key = self.version_key(record.version);
        let head = self.head();
        let prev = record.version.saturating_sub(1);
        let head_is_prev = if prev == 0 {
            Compare::create_revision(head.clone(), CompareOp::Equal, 0)
        } else {
            Compare::value(head.clone(), CompareOp::Equal, prev.to_string())
        };
        let mut when = vec![
            Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            head_is_prev,
        ];
        if let Some(lease) = fence {
            when.push(Compare::lease(self.leader_key(), CompareOp::Equal, lease));
        }
        let txn = Txn::new().when(when).and_then([
            TxnOp::put(key, bytes.clone(), None),
            TxnOp::put(head, record.version.to_string(), None),
        ]);
        // Past its retries a txn's outcome is unknown: it may have been
        // sent and committed before the answer was lost.
        let resp = retried(|| {
            let mut c = self.client.clone();
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
        .map_err(|e| StoreError::Unconfirmed(e.to_string()))?;
        if resp.succeeded() {
            return Ok(());
        }
        // A try that failed in an election may still have committed: then
        // the version key holds exactly this record.
        let mut c = self.client.clone();
        let stored = c
            .get(self.version_key(record.version), None)
            .await
            .map_err(unavailable)?;
        if stored
            .kvs()
            .first()
            .is_some_and(|kv| kv.value() == bytes.as_slice())
        {
            return Ok(());
        }
        if fence.is_some() && !holds(&self.client, &self.leader_key(), fence).await {
            return Err(StoreError::NotLeader(
                "its lease on the controller's key is gone".into(),
            ));
        }
        Err(StoreError::Conflict(record.version))
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn load(&self) -> Result<Vec<VersionRecord>, StoreError> {
        self.range_from(self.versions()).await
    }

    async fn load_after(&self, version: u64) -> Result<Vec<VersionRecord>, StoreError> {
        self.range_from(self.version_key(version + 1)).await
    }

    async fn append(&self, record: &VersionRecord) -> Result<(), StoreError> {
        self.append_with(record, None).await
    }

    async fn append_as_leader(&self, record: &VersionRecord) -> Result<(), StoreError> {
        let Some(lease) = self.leadership.lease() else {
            return Err(StoreError::NotLeader(
                "its lease's deadline passed without a keep-alive".into(),
            ));
        };
        self.append_with(record, Some(lease)).await
    }

    async fn epoch(&self) -> Result<String, StoreError> {
        let key = format!("{}/epoch", self.prefix);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), new_epoch(), None)]);
        retried(|| {
            let mut c = self.client.clone();
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
        .map_err(unavailable)?;
        let resp = retried(|| {
            let mut c = self.client.clone();
            let key = key.clone();
            async move { c.get(key, None).await }
        })
        .await
        .map_err(unavailable)?;
        resp.kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            .ok_or_else(|| StoreError::Corrupt {
                path: key.into(),
                reason: "the epoch key vanished".into(),
            })
    }

    fn follow(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let store = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                // An event carries its version (up to MAX_VERSION_BYTES).
                let mut c = store
                    .client
                    .watch_client()
                    .max_decoding_message_size(MAX_MESSAGE);
                let watched = c
                    .watch(store.versions(), Some(WatchOptions::new().with_prefix()))
                    .await;
                match watched {
                    Ok((_watcher, mut stream)) => {
                        backoff = Duration::from_millis(100);
                        // Versions written while no watch was open.
                        if tx.send(()).await.is_err() {
                            return;
                        }
                        while let Ok(Some(resp)) = stream.message().await {
                            if resp.canceled() {
                                break;
                            }
                            if !resp.events().is_empty() && tx.send(()).await.is_err() {
                                return;
                            }
                        }
                        tracing::warn!("etcd watch ended; watching again");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch etcd; retrying");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
        tokio::spawn(campaign(
            self.client.clone(),
            self.leader_key(),
            self.replica.clone(),
            self.leadership.clone(),
        ));
        let store = self.clone();
        tokio::spawn(compact_forever(self.compact_every, move || {
            let store = store.clone();
            async move {
                if store.is_leader() {
                    store.compact_now().await.map(|_| ())
                } else {
                    Ok(())
                }
            }
        }));
        Some(rx)
    }

    fn follow_needed(&self) -> bool {
        true
    }

    fn is_leader(&self) -> bool {
        self.leadership.lease().is_some()
    }

    fn replica(&self) -> Option<&str> {
        Some(&self.replica)
    }

    async fn publish(&self, kind: &str, proxy: &str, json: Vec<u8>) {
        let key = format!("{}/{kind}/{}/{proxy}", self.prefix, self.replica);
        if let Err(e) = put_leased(&self.client, &self.shared, key, json).await {
            tracing::debug!(error = %e, kind, proxy, "not shared with the other replicas");
        }
    }

    async fn retain_shared(&self, kind: &str, keep: &HashSet<String>) {
        let dir = format!("{}/{kind}/{}/", self.prefix, self.replica);
        match retain(&self.client, &dir, keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                kind,
                deleted = n,
                "shared keys of forgotten proxies deleted"
            ),
            Err(e) => {
                tracing::warn!(error = %e, kind, "cannot delete shared keys of forgotten proxies")
            }
        }
    }

    async fn shared(&self, kind: &str) -> Vec<Vec<u8>> {
        let mut c = self.client.clone();
        match c
            .get(
                format!("{}/{kind}/", self.prefix),
                Some(GetOptions::new().with_prefix()),
            )
            .await
        {
            Ok(r) => r.kvs().iter().map(|kv| kv.value().to_vec()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, kind, "cannot read what the other replicas share");
                Vec::new()
            }
        }
    }

    fn remote_stats(&self) -> Option<tokio::sync::mpsc::Receiver<Vec<u8>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let store = self.clone();
        let prefix = format!("{}/stats/", self.prefix);
        let own = format!("{prefix}{}/", self.replica);
        tokio::spawn(async move {
            loop {
                let mut c = store.client.clone();
                if let Ok((_w, mut stream)) = c
                    .watch(prefix.clone(), Some(WatchOptions::new().with_prefix()))
                    .await
                {
                    while let Ok(Some(resp)) = stream.message().await {
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            if kv.key().starts_with(own.as_bytes()) || kv.value().is_empty() {
                                continue;
                            }
                            if tx.send(kv.value().to_vec()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Some(rx)
    }
}
