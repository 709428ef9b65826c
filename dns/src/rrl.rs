//! Response rate limiting over UDP: each (client /24 or /56, name,
//! answer class) may get `rate` answers per second with `burst` at once
//! (NXDOMAINs and errors are keyed without the name, as BIND does, so
//! random names asked in a flood share one budget),
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
    let (family, net): (u8, u128) = match edgesteer_config::model::canonical_ip(src) {
        IpAddr::V4(v4) => (4, u128::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => (6, u128::from(v6) & !((1u128 << 72) - 1)),
    };
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&[family]);
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

    const CFG: Rrl = Rrl {
        rate: 10,
        burst: 2,
        slip: 2,
    };

    /// Spends `src`'s budget for one name (its burst), then says whether
    /// `other` still has its own.
    fn shares_budget(src: &str, other: &str) -> bool {
        let l = Limiter::default();
        let (a, b): (IpAddr, IpAddr) = (src.parse().unwrap(), other.parse().unwrap());
        let now = 5_000_000_000;
        for _ in 0..2 {
            assert_eq!(
                l.check_at(&CFG, a, 7, AnswerClass::Answer, now),
                Verdict::Send
            );
        }
        assert_ne!(
            l.check_at(&CFG, a, 7, AnswerClass::Answer, now),
            Verdict::Send
        );
        l.check_at(&CFG, b, 7, AnswerClass::Answer, now) != Verdict::Send
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_56_and_never_with_ipv4() {
        assert!(shares_budget(
            "2001:db8:0:1200::1",
            "2001:db8:0:12ff:ffff::9"
        ));
        assert!(!shares_budget("2001:db8:0:1200::1", "2001:db8:0:1300::1"));
        assert!(!shares_budget("2001:db8:0:1200::1", "2001:db9:0:1200::1"));
        // Networks that differ only in the top bit.
        assert!(!shares_budget("fd00::1", "7d00::1"));
        // An IPv4 /24 and the IPv6 network holding the same bits.
        assert!(!shares_budget("192.0.2.7", "::c000:207"));
        // A mapped address is its IPv4 client.
        assert!(shares_budget("192.0.2.7", "::ffff:192.0.2.99"));
    }

    #[test]
    fn no_slip_drops_every_refusal_and_rate_zero_sends_everything() {
        let l = Limiter::default();
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let no_slip = Rrl { slip: 0, ..CFG };
        let v: Vec<Verdict> = (0..6)
            .map(|_| l.check_at(&no_slip, a, 7, AnswerClass::Answer, 1_000_000_000))
            .collect();
        assert_eq!(v[..2], [Verdict::Send, Verdict::Send]);
        assert!(v[2..].iter().all(|&x| x == Verdict::Drop), "{v:?}");
        // check() on the process clock: rate 0 is off, any other rate limits.
        let off = Rrl { rate: 0, ..CFG };
        assert!((0..100).all(|_| l.check(&off, a, 8, AnswerClass::Answer) == Verdict::Send));
        let sent = (0..100)
            .filter(|_| l.check(&CFG, a, 8, AnswerClass::Answer) == Verdict::Send)
            .count();
        assert!(
            (2..=4).contains(&sent),
            "{sent} of 100 sent at 10/s, burst 2"
        );
    }
}
