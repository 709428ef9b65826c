//! Zone rules the audit found open: a CNAME at the apex, and a response
//! rate limit with no burst.

use super::{covergen, dns, only_error, record};
use crate::compile;

/// The apex holds the zone's SOA and NS, so a CNAME there would answer
/// beside them (RFC 1034 3.6.2, RFC 2181 10.1).
#[test]
fn a_cname_at_the_apex_is_refused() {
    let mut s = covergen();
    let n = dns(&mut s).records.len();
    dns(&mut s)
        .records
        .push(record("covergen.ai", "CNAME", "x.example.net"));
    let e = only_error(&s);
    assert_eq!(e.path, format!("dns.records[{n}].type"));
    assert!(
        e.reason.contains("apex") && e.reason.contains("a CNAME stands alone"),
        "{e}"
    );
}

/// With a limit on, a burst of 0 would refuse every UDP answer (half
/// truncated, half dropped): refused, naming the field. Off (rate 0), a
/// burst of 0 is what it is.
#[test]
fn a_response_limit_needs_a_burst() {
    let mut s = covergen();
    let rrl = &mut dns(&mut s).rrl;
    rrl.responses_per_s = Some(50);
    rrl.burst = Some(0);
    let e = only_error(&s);
    assert_eq!(e.path, "dns.rrl.burst");
    assert!(e.reason.contains("at least 1"), "{e}");
    dns(&mut s).rrl.burst = Some(1);
    assert!(compile(&s).is_ok());
    let rrl = &mut dns(&mut s).rrl;
    (rrl.responses_per_s, rrl.burst) = (Some(0), Some(0));
    assert!(compile(&s).is_ok());
}
