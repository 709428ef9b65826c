//! One resolved address of a backend ([`Endpoint`]): its availability
//! flags, probe and passive-failure streaks, ejection, smoothed RTT, and
//! the last probe report ([`ProbeReport`]) shown by `/v1/health`. The
//! backend, registry and table logic that drive these fields is in
//! `state.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

const NO_RTT: u32 = u32::MAX;

/// The last active probe of an endpoint, for `/v1/health`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ProbeReport {
    pub ok: bool,
    /// Status line, error, or "connected" for TCP probes.
    pub detail: String,
    pub rtt_us: Option<u32>,
    /// Milliseconds ago when reported.
    #[serde(skip)]
    pub at_ms: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Detail {
    pub(crate) last_probe: Option<ProbeReport>,
    pub(crate) eject_cause: Option<String>,
}

/// One resolved address of a backend.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub(crate) available: AtomicBool,
    pub(crate) active_healthy: AtomicBool,
    pub(crate) consecutive_ok: AtomicU32,
    pub(crate) consecutive_fail: AtomicU32,
    pub(crate) rtt_us: AtomicU32,
    pub(crate) passive_failures: AtomicU32,
    pub(crate) passive_5xx: AtomicU32,
    /// 0 when not ejected.
    pub(crate) ejected_until_ms: AtomicU64,
    /// The ejection multiplier (decays while the endpoint stays in).
    pub(crate) ejections: AtomicU32,
    /// When the last ejection ended (0: never ejected).
    pub(crate) ejection_ended_ms: AtomicU64,
    pub(crate) detail: Mutex<Detail>,
    /// Serialises writes of `available`, which is derived from two fields
    /// written by different threads (probes, ejections, the sweep): each
    /// writer changes its field, then re-derives under this lock, so the
    /// last derivation sees every change. Cold paths only.
    flag: Mutex<()>,
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            available: AtomicBool::new(true),
            active_healthy: AtomicBool::new(true),
            consecutive_ok: AtomicU32::new(0),
            consecutive_fail: AtomicU32::new(0),
            rtt_us: AtomicU32::new(NO_RTT),
            passive_failures: AtomicU32::new(0),
            passive_5xx: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            ejection_ended_ms: AtomicU64::new(0),
            detail: Mutex::new(Detail::default()),
            flag: Mutex::new(()),
        }
    }

    /// An address that joined a backend already serving from others (a
    /// DNS answer that changed): out until `healthy_after` probes pass, as
    /// a recovering one is, so traffic never reaches an unchecked address
    /// while checked ones can take it.
    pub fn pending(addr: SocketAddr) -> Self {
        let ep = Endpoint::new(addr);
        ep.active_healthy.store(false, Ordering::Relaxed);
        ep.available.store(false, Ordering::Relaxed);
        ep
    }

    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    pub fn is_active_healthy(&self) -> bool {
        self.active_healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) != 0
    }

    pub fn rtt_us(&self) -> Option<u32> {
        match self.rtt_us.load(Ordering::Relaxed) {
            NO_RTT => None,
            v => Some(v),
        }
    }

    /// Folds an RTT sample into the EWMA (new sample weighs 1/4).
    pub fn observe_rtt_us(&self, sample: u32) {
        let sample = sample.min(NO_RTT - 1);
        let prev = self.rtt_us.load(Ordering::Relaxed);
        let next = if prev == NO_RTT {
            sample
        } else {
            ((u64::from(prev) * 3 + u64::from(sample)) / 4) as u32
        };
        self.rtt_us.store(next, Ordering::Relaxed);
    }

    /// Re-derives `available` from the active state and the ejection.
    pub(crate) fn refresh(&self) {
        let _guard = self.flag.lock().unwrap_or_else(|p| p.into_inner());
        let ok = self.active_healthy.load(Ordering::SeqCst) && !self.is_ejected_now();
        self.available.store(ok, Ordering::SeqCst);
    }

    fn is_ejected_now(&self) -> bool {
        self.ejected_until_ms.load(Ordering::SeqCst) != 0
    }

    pub(crate) fn with_detail<R>(&self, f: impl FnOnce(&mut Detail) -> R) -> R {
        let mut guard = match self.detail.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Sets the active state directly (tests, admin overrides).
    pub fn set_active_healthy(&self, healthy: bool) {
        self.active_healthy.store(healthy, Ordering::SeqCst);
        self.refresh();
    }
}
