//! The limiter's unit tests: binding, evaluation, blocks and the outbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use crate::blocklist::{MAX_OUTBOX, MAX_REASON};
use std::time::SystemTime;

fn policies(toml_limits: &str) -> Vec<RateLimitPolicy> {
    let text = format!(
        "default_region = \"a\"\n[regions.a]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n{toml_limits}"
    );
    edgesteer_config::load_toml(&text).unwrap().1.rate_limits
}

#[test]
fn state_survives_reload_only_while_the_policy_is_unchanged() {
    let limiter = Limiter::new();
    let v1 = policies("[[rate_limits]]\nname = \"ip\"\nkey = \"client_ip\"\nrate = 5\n");
    let b1 = limiter.bind(&v1);
    let headers = HeaderMap::new();
    let req = Request {
        client: "192.0.2.1".parse().unwrap(),
        host: None,
        path: "/",
        headers: &headers,
    };
    let now = Instant::now();
    let allowed = |b: &Bound, p: &[RateLimitPolicy]| {
        (0..10)
            .filter(|_| matches!(limiter.evaluate(b, p, &req, now), Outcome::Allowed(_)))
            .count()
    };
    assert_eq!(allowed(&b1, &v1), 5);
    // Same policy (another table version, e.g. a weight changed): same state.
    let b2 = limiter.bind(&v1);
    assert!(Arc::ptr_eq(&b1.states[0], &b2.states[0]));
    assert_eq!(allowed(&b2, &v1), 0);
    // A new rate: fresh state.
    let v3 = policies("[[rate_limits]]\nname = \"ip\"\nkey = \"client_ip\"\nrate = 7\n");
    let b3 = limiter.bind(&v3);
    assert_eq!(allowed(&b3, &v3), 7);
    // Dropped tables release their state.
    drop((b1, b2));
    assert_eq!(limiter.live().len(), 1);
}

#[test]
fn ipv6_clients_count_per_64_and_v4_spellings_agree() {
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(ip_key(a), ip_key(b));
    assert_ne!(ip_key(a), ip_key(c));
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert_eq!(ip_key(v4), ip_key(mapped));
    assert_eq!(client_unit(mapped), v4);
    // Blocks follow the same unit.
    let limiter = Limiter::new();
    assert!(limiter.block(
        mapped,
        "admin",
        "t".into(),
        Duration::from_secs(9),
        Instant::now()
    ));
    assert!(limiter.blocked(v4).is_some());
    assert!(limiter.block(
        a,
        "admin",
        "t".into(),
        Duration::from_secs(9),
        Instant::now()
    ));
    assert!(limiter.blocked(b).is_some());
    assert!(limiter.blocked(c).is_none());
    assert!(limiter.unblock(b).is_some());
    assert!(limiter.blocked(a).is_none());
}

#[test]
fn block_changes_queue_for_the_fleet_newest_kept() {
    let limiter = Limiter::new();
    let a: IpAddr = "192.0.2.1".parse().unwrap();
    // No store: nothing to publish.
    limiter.block(
        a,
        "admin",
        "x".into(),
        Duration::from_secs(9),
        Instant::now(),
    );
    assert!(limiter.take_outbox().is_empty());
    limiter.expect_store(Duration::from_millis(50));
    limiter.block(
        a,
        "admin",
        "y".repeat(1000),
        Duration::from_secs(9),
        Instant::now(),
    );
    assert_eq!(limiter.blocked(a).unwrap().reason.len(), MAX_REASON);
    // A lift is published even when this proxy does not hold the block.
    let b: IpAddr = "192.0.2.2".parse().unwrap();
    assert!(limiter.unblock(b).is_none());
    let out = limiter.take_outbox();
    assert!(matches!(out[0], BlockEvent::Block { ip, .. } if ip == a));
    assert!(matches!(out[1], BlockEvent::Unblock { ip, .. } if ip == b));
    // Past the cap the oldest go, the newest stay.
    for _ in 0..MAX_OUTBOX {
        limiter.unblock(a);
    }
    limiter.unblock(b);
    let out = limiter.take_outbox();
    assert_eq!(out.len(), MAX_OUTBOX);
    assert!(matches!(out.last(), Some(BlockEvent::Unblock { ip, .. }) if *ip == b));
    // Applied from the stream: the same list, nothing re-published.
    limiter.apply_remote(BlockEvent::Block {
        ip: b,
        policy: "ip".into(),
        reason: "fleet".into(),
        until: SystemTime::now() + Duration::from_secs(60),
    });
    assert!(limiter.blocked(b).is_some());
    assert_eq!(limiter.block_count(), 1);
    limiter.apply_remote(BlockEvent::Unblock {
        ip: b,
        at: SystemTime::now(),
    });
    assert!(limiter.blocked(b).is_none());
    assert_eq!(limiter.block_count(), 0);
    assert!(limiter.take_outbox().is_empty());
}

#[test]
fn blocks_from_the_fleet_are_bounded_in_length_and_number() {
    use crate::blocklist::{MAX_BLOCK, MAX_REMOTE_BLOCKS};
    let limiter = Limiter::new();
    // 136 years, as a u32 of seconds allows: held 30 days at most.
    let far: IpAddr = "198.51.100.1".parse().unwrap();
    limiter.apply_remote(BlockEvent::Block {
        ip: far,
        policy: "ip".into(),
        reason: "fleet".into(),
        until: SystemTime::now() + Duration::from_secs(u64::from(u32::MAX)),
    });
    let held = limiter.blocked(far).unwrap();
    let left = held.until.duration_since(SystemTime::now()).unwrap();
    assert!(left <= MAX_BLOCK, "held for {left:?}");
    // The stream fills at most half the list; this proxy's own still fit.
    for i in 0..(MAX_REMOTE_BLOCKS as u32 + 10) {
        limiter.apply_remote(BlockEvent::Block {
            ip: IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
            policy: "ip".into(),
            reason: "fleet".into(),
            until: SystemTime::now() + Duration::from_secs(60),
        });
    }
    assert_eq!(limiter.block_count(), MAX_REMOTE_BLOCKS);
    let own: IpAddr = "203.0.113.9".parse().unwrap();
    assert!(limiter.block(
        own,
        "admin",
        "own".into(),
        Duration::from_secs(9),
        Instant::now()
    ));
}

#[test]
fn a_retried_publish_is_the_same_event_and_each_lift_its_own() {
    use crate::block_sync::event_id;
    let ip: IpAddr = "198.51.100.2".parse().unwrap();
    let until = SystemTime::now() + Duration::from_secs(60);
    let block = BlockEvent::Block {
        ip,
        policy: "ip".into(),
        reason: "r".into(),
        until,
    };
    assert_eq!(event_id(&block), event_id(&block.clone()));
    let lift = |ms: u64| BlockEvent::Unblock {
        ip,
        at: std::time::UNIX_EPOCH + Duration::from_millis(ms),
    };
    assert_eq!(event_id(&lift(5)), event_id(&lift(5)));
    assert_ne!(event_id(&lift(5)), event_id(&lift(6)));
    assert_ne!(event_id(&block), event_id(&lift(5)));
}

#[test]
fn blocks_apply_to_every_request_and_lift() {
    let limiter = Limiter::new();
    let p = policies("[[rate_limits]]\nname = \"ip\"\nkey = \"client_ip\"\nrate = 5\n");
    let b = limiter.bind(&p);
    let headers = HeaderMap::new();
    let client: IpAddr = "192.0.2.9".parse().unwrap();
    let req = Request {
        client,
        host: None,
        path: "/",
        headers: &headers,
    };
    let now = Instant::now();
    limiter.block(client, "admin", "test".into(), Duration::from_secs(60), now);
    assert_eq!(
        limiter.evaluate(&b, &p, &req, now),
        Outcome::Blocked { retry_after_s: 60 }
    );
    assert_eq!(limiter.blocks().len(), 1);
    assert!(limiter.unblock(client).is_some());
    assert!(matches!(
        limiter.evaluate(&b, &p, &req, now),
        Outcome::Allowed(_)
    ));
    assert!(limiter.unblock(client).is_none());
}

#[test]
fn ratelimit_header_formats_short_and_long_policy_names() {
    let v = Verdict {
        allowed: true,
        remaining: 7,
        reset_ns: 1_500_000_000,
        retry_after_ns: 0,
    };
    assert_eq!(ratelimit_header("per-ip", 10, &v), "\"per-ip\";r=7;t=2");
    // Past the stack buffer: formatted on the heap, same answer.
    let long = "p".repeat(200);
    assert_eq!(
        ratelimit_header(&long, 5, &v),
        format!("\"{long}\";r=5;t=2").as_str()
    );
}
