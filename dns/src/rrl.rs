//! Response rate limiting over UDP: each (client /24 or /56, name,
//! answer class) may get `rate` answers per second with `burst` at once,
//! on the ratelimit crate's GCRA. Past that, every `slip`-th answer goes
//! out truncated (a real resolver retries over TCP, which is not limited)
//! and the rest are dropped, so a spoofed flood cannot turn this server
//! into an amplifier. Keys hash into a fixed table of cells: memory is
//! bounded whatever the flood, and a collision can only make two keys
//! share a budget.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use edgesteer_config::dns::Rrl;

use crate::respond::AnswerClass;

/// Cells in the table (a power of two); 8 bytes each.
const CELLS: usize = 1 << 16;

/// What to do with an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send it truncated (TC, no records).
    Slip,
    Drop,
}

pub struct Limiter {
    cells: Box<[AtomicU64]>,
    slips: AtomicU32,
    epoch: Instant,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            cells: (0..CELLS).map(|_| AtomicU64::new(0)).collect(),
            slips: AtomicU32::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Limiter {
    /// The verdict for one answer under `cfg` (rate 0: always send).
    /// `name` is the hash of the name asked (`Outcome::name_hash`).
    pub fn check(&self, cfg: &Rrl, src: IpAddr, name: u64, class: AnswerClass) -> Verdict {
        if cfg.rate == 0 {
            return Verdict::Send;
        }
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(cfg, src, name, class, now)
    }

    pub(crate) fn check_at(
        &self,
        cfg: &Rrl,
        src: IpAddr,
        name: u64,
        class: AnswerClass,
        now: u64,
    ) -> Verdict {
        let cell = &self.cells[slot(src, name, class)];
        let interval = edgesteer_config::ratelimit::LimitTier::interval_ns(cfg.rate);
        let tolerance = interval.saturating_mul(u64::from(cfg.burst));
        if edgesteer_ratelimit::gcra::check(cell, now, interval, tolerance).allowed {
            return Verdict::Send;
        }
        if cfg.slip > 0
            && self
                .slips
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(cfg.slip)
        {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

/// The client's /24 (IPv4) or /56 (IPv6), the name and the class, hashed.
fn slot(src: IpAddr, name: u64, class: AnswerClass) -> usize {
    let net: u128 = match edgesteer_config::model::canonical_ip(src) {
        IpAddr::V4(v4) => u128::from(u32::from(v4) & 0xffff_ff00),
        IpAddr::V6(v6) => u128::from(v6) & !((1u128 << 72) - 1) | (1u128 << 127),
    };
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&net.to_le_bytes());
    h.update(&name.to_le_bytes());
    h.update(&[class as u8]);
    (h.digest() as usize) & (CELLS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_subnet_is_limited_and_slips_every_other() {
        const X: u64 = 0x1234;
        const Y: u64 = 0x5678;
        let l = Limiter::default();
        let cfg = Rrl {
            rate: 10,
            burst: 5,
            slip: 2,
        };
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let b: IpAddr = "192.0.2.200".parse().unwrap();
        let now = 5_000_000_000;
        let sent = (0..5)
            .filter(|_| l.check_at(&cfg, a, X, AnswerClass::Answer, now) == Verdict::Send)
            .count();
        assert_eq!(sent, 5, "the burst passes");
        // Same /24, other host: the same budget, now spent.
        let v: Vec<Verdict> = (0..4)
            .map(|_| l.check_at(&cfg, b, X, AnswerClass::Answer, now))
            .collect();
        assert_eq!(
            v.iter().filter(|&&x| x == Verdict::Slip).count(),
            2,
            "{v:?}"
        );
        assert_eq!(
            v.iter().filter(|&&x| x == Verdict::Drop).count(),
            2,
            "{v:?}"
        );
        // Another /24, another name, another class: their own budgets.
        let c: IpAddr = "192.0.3.7".parse().unwrap();
        assert_eq!(
            l.check_at(&cfg, c, X, AnswerClass::Answer, now),
            Verdict::Send
        );
        assert_eq!(
            l.check_at(&cfg, a, Y, AnswerClass::Answer, now),
            Verdict::Send
        );
        assert_eq!(
            l.check_at(&cfg, a, X, AnswerClass::NxDomain, now),
            Verdict::Send
        );
        // A tenth of a second later, one more.
        assert_eq!(
            l.check_at(&cfg, a, X, AnswerClass::Answer, now + 100_000_000),
            Verdict::Send
        );
    }
}
