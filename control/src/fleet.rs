//! The fleet register: every proxy the service has heard from (by watch or
//! ack), the version it applied or rejected, and when it was last seen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edgesteer_control_api::api::{Ack, FleetEntry};

/// What the service knows of one proxy.
#[derive(Clone, Debug)]
struct Seen {
    entry: FleetEntry,
    last_seen: Instant,
}

/// Most proxies the register holds; past it, new names are not listed
/// (and a warning is logged) until entries expire.
pub(crate) const MAX_PROXIES: usize = 10_000;
/// How long a proxy that is no longer heard from stays listed.
pub(crate) const DEFAULT_EXPIRY: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub(crate) struct FleetRegister {
    proxies: Mutex<HashMap<String, Seen>>,
    /// Entries not seen for longer (milliseconds) are dropped.
    expiry_ms: AtomicU64,
}

impl Default for FleetRegister {
    fn default() -> Self {
        FleetRegister {
            proxies: Mutex::default(),
            expiry_ms: AtomicU64::new(DEFAULT_EXPIRY.as_millis() as u64),
        }
    }
}

/// Why an ack was refused.
#[derive(Debug)]
pub(crate) struct BadStatus(pub String);

impl FleetRegister {
    /// Entries expire after `expiry` without news (default an hour).
    pub(crate) fn set_expiry(&self, expiry: Duration) {
        self.expiry_ms
            .store(expiry.as_millis() as u64, Ordering::Relaxed);
    }

    fn expiry(&self) -> Duration {
        Duration::from_millis(self.expiry_ms.load(Ordering::Relaxed))
    }

    fn note(&self, proxy: &str, f: impl FnOnce(&mut FleetEntry)) {
        if let Ok(mut proxies) = self.proxies.lock() {
            let expiry = self.expiry();
            proxies.retain(|_, s| s.last_seen.elapsed() < expiry);
            if proxies.len() >= MAX_PROXIES && !proxies.contains_key(proxy) {
                tracing::warn!(
                    proxy,
                    "fleet register full ({MAX_PROXIES}); not listing a new proxy"
                );
                return;
            }
            let seen = proxies.entry(proxy.to_string()).or_insert_with(|| Seen {
                entry: FleetEntry {
                    proxy: proxy.to_string(),
                    applied_version: None,
                    last_status: None,
                    last_rejection: None,
                    rejected_version: None,
                    last_seen_ms_ago: None,
                    watching: false,
                    epoch: None,
                    build: None,
                },
                last_seen: Instant::now(),
            });
            seen.last_seen = Instant::now();
            f(&mut seen.entry);
        }
    }

    /// A proxy opened a watch.
    pub(crate) fn watching(&self, proxy: &str) {
        self.note(proxy, |e| e.watching = true);
    }

    /// A proxy applied or rejected a version.
    pub(crate) fn ack(&self, a: &Ack) -> Result<(), BadStatus> {
        if let Some(build) = &a.build {
            let build: String = build.chars().take(64).collect();
            self.note(&a.proxy, |e| e.build = Some(build));
        }
        match a.status.as_str() {
            Ack::APPLIED => self.note(&a.proxy, |e| {
                // A new epoch restarts the numbering: a rejection of the
                // old epoch says nothing any more.
                if a.epoch.is_some() && a.epoch != e.epoch {
                    e.rejected_version = None;
                    e.last_rejection = None;
                }
                e.applied_version = Some(a.version);
                e.epoch = a.epoch.clone();
                // A rejection stays visible until a later version applies.
                match e.rejected_version {
                    Some(r) if r >= a.version => {}
                    _ => {
                        e.rejected_version = None;
                        e.last_rejection = None;
                        e.last_status = Some(Ack::APPLIED.into());
                    }
                }
            }),
            Ack::REJECTED => {
                tracing::warn!(proxy = %a.proxy, version = a.version, reason = ?a.reason, "a proxy rejected a table version");
                self.note(&a.proxy, |e| {
                    e.last_status = Some(Ack::REJECTED.into());
                    e.last_rejection = a.reason.clone();
                    e.rejected_version = Some(a.version);
                })
            }
            other => return Err(BadStatus(other.to_string())),
        }
        Ok(())
    }

    /// Every proxy, sorted by name.
    /// One proxy's entry, if listed.
    pub(crate) fn entry(&self, proxy: &str) -> Option<FleetEntry> {
        self.proxies
            .lock()
            .ok()
            .and_then(|p| p.get(proxy).map(|s| s.entry.clone()))
    }

    /// The expiry in milliseconds.
    pub(crate) fn expiry_ms(&self) -> u64 {
        self.expiry_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn list(&self) -> Vec<FleetEntry> {
        let mut list: Vec<FleetEntry> = self
            .proxies
            .lock()
            .map(|p| {
                p.values()
                    .filter(|s| s.last_seen.elapsed() < self.expiry())
                    .map(|s| FleetEntry {
                        last_seen_ms_ago: Some(s.last_seen.elapsed().as_millis() as u64),
                        ..s.entry.clone()
                    })
                    .collect()
            })
            .unwrap_or_default();
        list.sort_by(|a, b| a.proxy.cmp(&b.proxy));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_proxies_expire_from_the_view() {
        let f = FleetRegister::default();
        f.watching("p1");
        assert_eq!(f.list().len(), 1);
        f.set_expiry(Duration::ZERO);
        assert!(f.list().is_empty());
        // Expired entries are also dropped from the map, not just hidden.
        f.watching("p2");
        f.set_expiry(Duration::from_secs(60));
        let names: Vec<String> = f.list().into_iter().map(|e| e.proxy).collect();
        assert_eq!(names, ["p2"], "p1 was not dropped when p2 arrived");
    }
}
