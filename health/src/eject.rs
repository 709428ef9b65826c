//! Passive outlier detection: what live requests report about an endpoint
//! ([`TableHealth::report`]), and ejections under the region's cap. The
//! request path only counts (relaxed atomics); a streak that crosses its
//! threshold takes the registry's ejection lock, so the cap check and the
//! ejection are one step, an endpoint is ejected once per streak, and the
//! multiplier decays after a healthy period.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use edgesteer_config::model::OutlierSettings;
use edgesteer_config::{BackendId, RegionId};

use crate::endpoint::Endpoint;
use crate::state::{now_ms, BackendState, Outcome, TableHealth};

impl TableHealth {
    /// Feeds the outcome of a live request into passive outlier detection.
    /// Returns true when this report ejected the endpoint.
    pub fn report(
        &self,
        backend: BackendId,
        addr: SocketAddr,
        outcome: Outcome,
        settings: &OutlierSettings,
        region: RegionId,
    ) -> bool {
        let Some(state) = self.state(backend) else {
            return false;
        };
        let Some(ep) = state.endpoint(addr) else {
            return false;
        };
        let (counter, threshold, cause) = match outcome {
            Outcome::Status(s) if s < 500 => {
                // Cleared only when set: a store on every success would
                // take the cache line from every other thread serving
                // this endpoint.
                for streak in [&ep.passive_failures, &ep.passive_5xx] {
                    if streak.load(Ordering::Relaxed) != 0 {
                        streak.store(0, Ordering::Relaxed);
                    }
                }
                return false;
            }
            Outcome::Status(_) => (
                &ep.passive_5xx,
                settings.consecutive_5xx,
                "consecutive 5xx responses",
            ),
            Outcome::ConnectFailure => (
                &ep.passive_failures,
                settings.consecutive_failures,
                "consecutive connect failures",
            ),
            Outcome::Reset => (
                &ep.passive_failures,
                settings.consecutive_failures,
                "consecutive resets or timeouts",
            ),
        };
        if threshold == 0 {
            return false;
        }
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if n < threshold || ep.is_ejected() {
            return false;
        }
        // The cold path: one ejection at a time, re-checked under the lock.
        let _guard = self.eject_lock.lock().unwrap_or_else(|p| p.into_inner());
        if ep.ejected_until_ms.load(Ordering::SeqCst) != 0 {
            return false; // another report ejected it meanwhile
        }
        // Envoy's max ejection percent: never let passive signals alone
        // take more than this share of a region's endpoints out.
        let (total, ejected) = self.region_endpoint_counts(region);
        if (ejected + 1) * 100 > total * settings.max_ejection_percent as usize {
            tracing::debug!(backend = %state.key, endpoint = %addr, ejected, total, "ejection skipped: region at its max ejection percent");
            return false;
        }
        let now = now_ms();
        let k = multiplier(&ep, settings, now);
        let dur = settings
            .base_ejection
            .saturating_mul(k)
            .min(settings.max_ejection);
        ep.ejected_until_ms
            .store(now + (dur.as_millis() as u64).max(1), Ordering::SeqCst);
        counter.store(0, Ordering::Relaxed);
        ep.refresh();
        state.recompute();
        let why = format!("{n} {cause}");
        tracing::warn!(backend = %state.key, region = %state.region, endpoint = %addr, cause = %why, ejection = k, cool_down = ?dur, "backend ejected (passive)");
        ep.with_detail(|d| d.eject_cause = Some(why));
        true
    }

    /// Endpoints of `region`, and how many of them are ejected. The states
    /// are this region's own, so the cap counts what it gates.
    fn region_endpoint_counts(&self, region: RegionId) -> (usize, usize) {
        let mut total = 0;
        let mut ejected = 0;
        let states = self
            .regions
            .get(region.index())
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|&i| self.backends.get(i));
        for s in states {
            let s: &BackendState = s;
            for ep in s.endpoints.load().iter() {
                total += 1;
                ejected += usize::from(ep.is_ejected());
            }
        }
        (total, ejected)
    }
}

/// The multiplier of the ejection starting now (under the ejection lock):
/// one more than the last, less one for each whole `max_ejection` the
/// endpoint has stayed in since its last ejection ended (at least 1).
pub(crate) fn multiplier(ep: &Endpoint, settings: &OutlierSettings, now: u64) -> u32 {
    let prev = ep.ejections.load(Ordering::SeqCst);
    let ended = ep.ejection_ended_ms.load(Ordering::SeqCst);
    let period = (settings.max_ejection.as_millis() as u64).max(1);
    let healthy_periods = if ended == 0 {
        0
    } else {
        now.saturating_sub(ended) / period
    };
    let decayed = u64::from(prev).saturating_sub(healthy_periods);
    let k = u32::try_from(decayed).unwrap_or(u32::MAX).saturating_add(1);
    ep.ejections.store(k, Ordering::SeqCst);
    k
}
