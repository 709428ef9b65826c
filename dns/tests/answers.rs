#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
//! The answer path on the covergen table, read back with hickory-proto
//! (an independent DNS implementation): client subnets from four zones,
//! no subnet, a /0 subnet, NODATA for AAAA where a region has no IPv6,
//! NXDOMAIN, REFUSED, 0x20 case, the 1232-byte cap and TC, BADVERS,
//! FORMERR for a subnet with bits past its prefix, RFC 8482 ANY, and a
//! refused zone transfer. Client-subnet scopes are in `scopes.rs`.

mod common;

use common::{fixture, query, scope, v4s, Fixture};
use edgesteer_config::COVERGEN_TOML;
use edgesteer_dns::render::Rendered;
use edgesteer_dns::respond::{Rcode, Transport};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

#[test]
fn each_subnet_gets_its_regions_edges_over_udp_and_tcp() {
    let f = fixture();
    for t in [Transport::Udp, Transport::Tcp] {
        for (subnet, want) in [
            ("36.1.1.0", "203.0.113.80"), // CN -> cn-east
            ("5.0.1.0", "198.51.100.30"), // DE -> eu-west
            ("3.3.3.0", "198.51.100.10"), // US -> us-east
            ("43.0.1.0", "203.0.113.10"), // HK -> ap-southeast
        ] {
            let m = f.ask(
                &query("api.covergen.ai.", RecordType::A, Some((subnet, 24))),
                t,
            );
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative && !m.metadata.recursion_available);
            assert_eq!(m.metadata.id, 0xbeef);
            let got = v4s(&m);
            assert!(got.contains(&want.parse().unwrap()), "{subnet}: {got:?}");
            assert_eq!(got.len(), 2, "{subnet}: {got:?}");
            assert!(m.answers.iter().all(|r| r.ttl == 60));
            // Family, source and address echoed; scope no longer than /24.
            let (addr, source, sc) = scope(&m).expect("ECS echoed");
            assert_eq!((addr, source), (subnet.parse().unwrap(), 24));
            assert!((8..=24).contains(&sc), "scope {sc}");
        }
    }
}

#[test]
fn no_subnet_or_a_zero_source_locates_the_resolver() {
    let f = fixture();
    // The resolver's own address is in China.
    let q = query("api.covergen.ai.", RecordType::A, None);
    let out = f
        .ask_bytes(&q.to_vec().unwrap(), "36.1.1.1", Transport::Udp)
        .unwrap();
    let m = Message::from_vec(&out).unwrap();
    assert!(v4s(&m).contains(&"203.0.113.80".parse().unwrap()), "{m:?}");
    assert!(m.edns.is_none(), "no OPT without one in the query");
    // A /0 source counts as none: the resolver (US) decides, scope 0.
    let q = query("api.covergen.ai.", RecordType::A, Some(("0.0.0.0", 0)));
    let out = f
        .ask_bytes(&q.to_vec().unwrap(), "3.3.3.3", Transport::Udp)
        .unwrap();
    let m = Message::from_vec(&out).unwrap();
    assert!(v4s(&m).contains(&"198.51.100.10".parse().unwrap()), "{m:?}");
    assert_eq!(scope(&m).map(|s| s.2), Some(0));
}

#[test]
fn negative_answers_are_well_formed() {
    let f = fixture();
    // China's edges have no IPv6: NODATA with the SOA, never NXDOMAIN.
    let m = f.ask(
        &query("api.covergen.ai.", RecordType::AAAA, Some(("36.1.1.0", 24))),
        Transport::Udp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let soa = m.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(s) => Some(s.clone()),
        _ => None,
    });
    let soa = soa.expect("SOA in the authority section");
    // RFC 2308: a negative answer's SOA lives no longer than the negative TTL.
    assert_eq!(m.authorities[0].ttl, 60);
    assert_eq!(soa.serial, 42, "the serial is the table version");
    assert_eq!(soa.minimum, 60);
    // An unknown name under the apex: NXDOMAIN with the SOA.
    let m = f.ask(
        &query("nope.covergen.ai.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities.len(), 1);
    // An empty non-terminal (api.covergen.ai has _acme-challenge below
    // it; here a name whose child exists): NODATA.
    let m = f.ask(
        &query("api.covergen.ai.", RecordType::TXT, None),
        Transport::Udp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    // Outside the apex: REFUSED, not authoritative.
    let m = f.ask(&query("example.com.", RecordType::A, None), Transport::Udp);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    // Zone transfers: refused.
    let m = f.ask(
        &query("covergen.ai.", RecordType::AXFR, None),
        Transport::Tcp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn mixed_case_is_echoed_as_sent() {
    let f = fixture();
    let m = f.ask(
        &query("aPi.CoVeRgEn.aI.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(m.queries[0].name().to_ascii(), "aPi.CoVeRgEn.aI.");
    assert_eq!(m.answers[0].name.to_ascii(), "aPi.CoVeRgEn.aI.");
    assert_eq!(v4s(&m).len(), 2);
}

#[test]
fn pins_answer_inside_the_zone_only() {
    let f = fixture();
    let m = f.ask(
        &query("api-cn.covergen.ai.", RecordType::A, Some(("36.1.1.0", 24))),
        Transport::Udp,
    );
    assert!(v4s(&m).contains(&"203.0.113.80".parse().unwrap()));
    // A US client asking for the China pin: NODATA (HTTP says 421).
    let m = f.ask(
        &query("api-cn.covergen.ai.", RecordType::A, Some(("3.3.3.0", 24))),
        Transport::Udp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "{m:?}");
    // And a China client asking for the US pin.
    let m = f.ask(
        &query("api-us.covergen.ai.", RecordType::A, Some(("36.1.1.0", 24))),
        Transport::Udp,
    );
    assert!(m.answers.is_empty(), "{m:?}");
}

#[test]
fn edns_versions_and_bad_subnets_are_refused_by_rcode() {
    let f = fixture();
    let mut q = query("api.covergen.ai.", RecordType::A, Some(("3.3.3.0", 24)));
    q.edns.as_mut().unwrap().set_version(1);
    let m = f.ask(&q, Transport::Udp);
    // 16: BADVERS in an OPT answer (hickory names the shared code BADSIG).
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert!(m.answers.is_empty());
    // A subnet with a bit past its source prefix: FORMERR (hand-made,
    // since hickory masks what it sends).
    let mut raw = query("api.covergen.ai.", RecordType::A, Some(("3.3.2.0", 23)))
        .to_vec()
        .unwrap();
    let n = raw.len();
    assert_eq!(raw[n - 1], 2, "the subnet's last byte ends the message");
    raw[n - 1] = 3; // 3.3.3.0 with a /23 source: bit 24 set
    let out = f.ask_bytes(&raw, "127.0.0.1", Transport::Udp).unwrap();
    assert_eq!(
        Message::from_vec(&out).unwrap().metadata.response_code,
        ResponseCode::FormErr
    );
    raw[n - 1] = 2; // and put back, it is answered
    let out = f.ask_bytes(&raw, "127.0.0.1", Transport::Udp).unwrap();
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    // Garbage and responses: no answer at all.
    assert!(f
        .ask_bytes(&[0, 1, 2], "127.0.0.1", Transport::Udp)
        .is_none());
    let mut resp = query("api.covergen.ai.", RecordType::A, None)
        .to_vec()
        .unwrap();
    resp[2] |= 0x80;
    assert!(f.ask_bytes(&resp, "127.0.0.1", Transport::Udp).is_none());
}

/// Response rate limiting keys an answer by its name, but NXDOMAINs and
/// errors without it: a spoofed flood of random names from one network
/// meets one budget (it once got a fresh one per name, and every reply
/// went out).
#[test]
fn random_names_share_one_rate_limit_budget() {
    use edgesteer_dns::respond::AnswerClass;
    use edgesteer_dns::rrl::{Limiter, Verdict};
    let f = fixture();
    let a = |name: &str| f.outcome(&query(name, RecordType::A, None), "192.0.2.7");
    let (x, y) = (a("r1x.covergen.ai."), a("r2y.covergen.ai."));
    assert_eq!(
        (x.class, y.class),
        (AnswerClass::NxDomain, AnswerClass::NxDomain)
    );
    assert_eq!(x.name_hash, y.name_hash);
    let (x, y) = (a("a.example.com."), a("b.example.com."));
    assert_eq!((x.class, y.class), (AnswerClass::Error, AnswerClass::Error));
    assert_eq!(x.name_hash, y.name_hash);
    // Names that exist keep a budget each.
    let (x, y) = (a("api.covergen.ai."), a("api-eu.covergen.ai."));
    assert_eq!(
        (x.class, y.class),
        (AnswerClass::Answer, AnswerClass::Answer)
    );
    assert_ne!(x.name_hash, y.name_hash);
    // Through the limiter: a burst of 3 at once, then random names are
    // refused.
    let cfg = edgesteer_config::dns::Rrl {
        rate: 1,
        burst: 3,
        slip: 0,
    };
    let l = Limiter::default();
    let src = "192.0.2.7".parse().unwrap();
    let sent = (0..10)
        .map(|i| a(&format!("rand{i}.covergen.ai.")))
        .filter(|o| l.check(&cfg, src, o.name_hash, o.class) == Verdict::Send)
        .count();
    assert_eq!(sent, 3, "the burst, not one per name");
}

/// A slipped answer (rate limited, sent truncated so a resolver retries
/// over TCP) keeps its OPT and the subnet's echo; without EDNS it has none.
#[test]
fn a_slipped_answer_keeps_its_opt() {
    let f = fixture();
    for (subnet, edns) in [(Some(("36.1.1.0", 24)), true), (None, false)] {
        let q = query("api.covergen.ai.", RecordType::A, subnet);
        let outcome = f.outcome(&q, "192.0.2.7");
        let mut out = f
            .ask_bytes(&q.to_vec().unwrap(), "192.0.2.7", Transport::Udp)
            .unwrap();
        edgesteer_dns::respond::slip(&mut out, &outcome);
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation && m.answers.is_empty(), "{m:?}");
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.edns.is_some(), edns, "{m:?}");
        if edns {
            assert_eq!(
                scope(&m).map(|s| (s.0, s.1)),
                Some(("36.1.1.0".parse().unwrap(), 24))
            );
        }
    }
}

/// An UPDATE (a record in the authority section) and a NOTIFY (its SOA
/// in the answer section) are NOTIMP, not FORMERR: the opcode is read
/// before the sections' shape (RFC 1035 4.1.1).
#[test]
fn other_opcodes_are_not_implemented_whatever_their_sections() {
    let f = fixture();
    let question = b"\x08covergen\x02ai\x00\x00\x06\x00\x01";
    let record =
        b"\x03api\x08covergen\x02ai\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x01\x02\x03\x04";
    // (opcode, answer count, authority count): UPDATE, NOTIFY.
    for (opcode, an, ns) in [(5u8, 0u8, 1u8), (4, 1, 0)] {
        let mut msg = vec![0x12, 0x34, opcode << 3, 0, 0, 1, 0, an, 0, ns, 0, 0];
        msg.extend_from_slice(question);
        msg.extend_from_slice(record);
        let out = f.ask_bytes(&msg, "127.0.0.1", Transport::Udp).unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NotImp,
            "opcode {opcode}"
        );
        assert_eq!(m.metadata.id, 0x1234);
    }
    // A NOTIFY shaped as a query, with EDNS: NOTIMP with its question and
    // an OPT (RFC 6891 7).
    let mut q = query("covergen.ai.", RecordType::SOA, Some(("5.0.1.0", 24)));
    q.metadata.op_code = hickory_proto::op::OpCode::Notify;
    let m = f.ask(&q, Transport::Udp);
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    assert!(m.edns.is_some() && m.queries.len() == 1, "{m:?}");
}

/// A FORMERR answers with an OPT only when the query's additional record
/// was an OPT (RFC 6891 7): a broken OPT gets one, a lone other record
/// (a TSIG) does not.
#[test]
fn a_formerr_carries_an_opt_only_for_an_opt() {
    let f = fixture();
    let base = query("api.covergen.ai.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let with = |rr: &[u8]| {
        let mut msg = base.clone();
        msg[11] = 1; // ARCOUNT
        msg.extend_from_slice(rr);
        let out = f.ask_bytes(&msg, "127.0.0.1", Transport::Udp).unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        m.edns.is_some()
    };
    // Root name, type OPT, then a length past the message's end.
    assert!(with(b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x09"));
    // Root name, type TSIG (250), class ANY, no data.
    assert!(!with(b"\x00\x00\xfa\x00\xff\x00\x00\x00\x00\x00\x00"));
}

#[test]
fn any_over_udp_is_minimal_and_big_answers_truncate() {
    let f = fixture();
    let m = f.ask(
        &query("api.covergen.ai.", RecordType::ANY, None),
        Transport::Udp,
    );
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), RecordType::HINFO);
    let m = f.ask(
        &query("api.covergen.ai.", RecordType::ANY, None),
        Transport::Tcp,
    );
    assert!(m.answers.len() >= 3, "{m:?}");
    // ANY at the apex over TCP (found by the dns_query fuzz target): the
    // apex's own sets are answers, the NS glue is additional. The glue was
    // written before the CAA, so it was read as an answer and the CAA as
    // additional.
    let m = f.ask(
        &query("covergen.ai.", RecordType::ANY, None),
        Transport::Tcp,
    );
    let types = |rs: &[hickory_proto::rr::Record]| {
        let mut t: Vec<RecordType> = rs.iter().map(|r| r.record_type()).collect();
        t.sort();
        t
    };
    let mut want = vec![
        RecordType::SOA,
        RecordType::NS,
        RecordType::NS,
        RecordType::CAA,
    ];
    want.sort();
    assert_eq!(types(&m.answers), want, "{m:?}");
    assert!(
        m.additionals
            .iter()
            .all(|r| r.record_type() == RecordType::A),
        "{m:?}"
    );
    assert_eq!(m.additionals.len(), 2, "{m:?}");

    // A region with 64 edges answers 64 A records: over 512 bytes
    // without EDNS, so TC over UDP; whole over TCP.
    let mut spec = edgesteer_config::parse::from_toml(COVERGEN_TOML).unwrap();
    let us = spec
        .dns
        .as_mut()
        .unwrap()
        .regions
        .get_mut("us-east")
        .unwrap();
    us.addresses = (0..64).map(|i| format!("198.18.0.{i}")).collect();
    let table = edgesteer_config::compile(&spec).unwrap();
    let zone = Rendered::new(table.dns.clone().unwrap(), 7);
    let g = Fixture {
        table,
        zone,
        geo: fixture().geo,
    };
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_ascii("api.covergen.ai.").unwrap(),
        RecordType::A,
    ));
    let m = g.ask(&q, Transport::Udp);
    assert!(m.metadata.truncation, "{m:?}");
    assert!(m.answers.is_empty());
    let m = g.ask(&q, Transport::Tcp);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 64);
    // With EDNS, 64 records (about 1 KiB) fit in one datagram.
    let mut e = Edns::new();
    e.set_max_payload(4096);
    q.set_edns(e.clone());
    let m = g.ask(&q, Transport::Udp);
    assert_eq!(m.answers.len(), 64);

    // A 3000-byte TXT asked with a 4096-byte EDNS buffer: the reply is
    // capped at 1232 bytes, so TC; over TCP it comes whole.
    let mut spec = edgesteer_config::parse::from_toml(COVERGEN_TOML).unwrap();
    spec.dns
        .as_mut()
        .unwrap()
        .records
        .push(edgesteer_config::wire_dns::DnsRecordSpec {
            name: "big.covergen.ai".into(),
            rtype: "TXT".into(),
            value: "x".repeat(3000),
            ttl: None,
        });
    let table = edgesteer_config::compile(&spec).unwrap();
    let zone = Rendered::new(table.dns.clone().unwrap(), 8);
    let g = Fixture {
        table,
        zone,
        geo: fixture().geo,
    };
    let mut q = query("big.covergen.ai.", RecordType::TXT, None);
    q.set_edns(e);
    let out = g
        .ask_bytes(&q.to_vec().unwrap(), "127.0.0.1", Transport::Udp)
        .unwrap();
    assert!(out.len() <= 1232, "{} bytes", out.len());
    let m = Message::from_vec(&out).unwrap();
    assert!(m.metadata.truncation && m.answers.is_empty());
    assert_eq!(m.max_payload(), 1232, "we offer 1232");
    let m = g.ask(&q, Transport::Tcp);
    assert_eq!(m.answers.len(), 1);
    let _ = Rcode::ALL;
}
