//! `[dns]` compile rules, each with its field path, and `answer()` on the
//! covergen table.

use super::answer::{answer, AnswerState, DnsDecision};
use crate::error::FieldError;
use crate::model::{BackendId, RegionId, RegionSet};
use crate::route::{HealthView, Reason};
use crate::wire_dns::DnsRecordSpec;
use crate::{compile, parse, Country, TableSpec, COVERGEN_TOML};

fn covergen() -> TableSpec {
    parse::from_toml(COVERGEN_TOML).unwrap()
}

fn only_error(spec: &TableSpec) -> FieldError {
    let e = compile(spec).expect_err("the table compiled");
    assert_eq!(e.errors().len(), 1, "{e}");
    e.errors()[0].clone()
}

fn dns(spec: &mut TableSpec) -> &mut crate::wire_dns::DnsSpec {
    spec.dns.as_mut().unwrap()
}

#[test]
fn covergen_compiles_with_its_zone_and_pins() {
    let t = compile(&covergen()).unwrap();
    let z = t.dns.as_ref().unwrap();
    assert_eq!(z.apex, "covergen.ai");
    assert_eq!(z.geo_names, ["api.covergen.ai"]);
    assert_eq!(z.pinned.len(), 4);
    assert!(z.contains("api-cn.covergen.ai") && z.contains("covergen.ai"));
    assert!(!z.contains("xcovergen.ai") && !z.contains("covergen.ai.evil"));
    let cn = t.region_by_name("cn-east").unwrap();
    assert!(z.regions[cn.index()].v6.is_empty());
    assert_eq!(z.soa.mname, "ns1.covergen.ai");
}

#[test]
fn an_address_belongs_to_one_region() {
    let mut s = covergen();
    let eu = dns(&mut s).regions["eu-west"].addresses[0].clone();
    dns(&mut s)
        .regions
        .get_mut("cn-east")
        .unwrap()
        .addresses
        .push(eu);
    let e = only_error(&s);
    assert_eq!(e.path, "dns.regions.eu-west.addresses[0]", "{e}");
    assert!(e.reason.contains("exactly one region"), "{e}");
}

#[test]
fn every_region_needs_edges_and_known_names() {
    let mut s = covergen();
    dns(&mut s).regions.remove("us-west");
    let e = only_error(&s);
    assert_eq!(e.path, "dns.regions.us-west");
    let mut s = covergen();
    let r = dns(&mut s).regions["us-west"].clone();
    dns(&mut s).regions.insert("nowhere".into(), r);
    assert!(only_error(&s).reason.contains("unknown region `nowhere`"));
}

#[test]
fn names_records_and_ttls_are_checked() {
    let mut s = covergen();
    dns(&mut s).names = vec!["api.example.com".into()];
    assert_eq!(only_error(&s).path, "dns.names[0]");

    let mut s = covergen();
    dns(&mut s).names = vec!["api-us.covergen.ai".into()];
    assert!(only_error(&s).reason.contains("also a host pin"));

    let mut s = covergen();
    dns(&mut s).records.retain(|r| r.name != "ns2.covergen.ai");
    let e = only_error(&s);
    assert_eq!(e.path, "dns.ns[1]");
    assert!(e.reason.contains("glue"), "{e}");

    let record = |name: &str, t: &str, v: &str| DnsRecordSpec {
        name: name.into(),
        rtype: t.into(),
        value: v.into(),
        ttl: None,
    };
    let n = covergen().dns.unwrap().records.len();
    for (r, path, needle) in [
        (
            record("api.covergen.ai", "A", "192.0.2.9"),
            "type",
            "answered by the table",
        ),
        (
            record("www.covergen.ai", "A", "198.51.100.10"),
            "value",
            "edge address",
        ),
        (
            record("www.covergen.ai", "MX", "10 mx"),
            "type",
            "not a record type",
        ),
        (
            record("www.covergen.ai", "CAA", "0 issue letsencrypt.org"),
            "value",
            "FLAGS TAG",
        ),
        (
            record("www.covergen.ai", "AAAA", "1.2.3.4"),
            "value",
            "IPv6",
        ),
        (
            record("www.covergen.ai", "A", "2001:db8::1"),
            "value",
            "not an IPv4 address",
        ),
        (
            record("www.covergen.ai", "CNAME", "bad name!"),
            "value",
            "not a DNS name",
        ),
        (
            record("www.covergen.ai", "TXT", &"x".repeat(4001)),
            "value",
            "at most 4000 bytes",
        ),
    ] {
        let mut s = covergen();
        dns(&mut s).records.push(r.clone());
        let e = only_error(&s);
        assert_eq!(e.path, format!("dns.records[{n}].{path}"), "{r:?}: {e}");
        assert!(e.reason.contains(needle), "{r:?}: {e}");
    }

    let mut s = covergen();
    dns(&mut s).ttl.degraded = Some(120);
    assert_eq!(only_error(&s).path, "dns.ttl.degraded");
}

/// Every backend healthy but the ones listed.
struct Down(Vec<BackendId>);

impl HealthView for Down {
    fn is_healthy(&self, b: BackendId) -> bool {
        !self.0.contains(&b)
    }
    fn region_rtt_us(&self, _r: RegionId) -> Option<u32> {
        None
    }
}

/// Every backend healthy but those of the regions named.
fn down_in(t: &crate::RoutingTable, regions: Vec<&str>) -> Down {
    Down(
        (0..t.backends.len())
            .map(|i| BackendId(i as u32))
            .filter(|&b| regions.contains(&t.region(t.backend(b).region).name.as_str()))
            .collect(),
    )
}

#[test]
fn answers_follow_home_failover_and_fail_open_inside_the_zone() {
    let t = compile(&covergen()).unwrap();
    let z = t.dns.as_ref().unwrap();
    let name = |r: RegionId| t.region(r).name.clone();
    let at = |cc: &str, down: Vec<&str>| {
        let class = t.classify(Country::parse(cc), None);
        answer(&t, z, class, None, &down_in(&t, down), RegionSet::EMPTY)
    };
    let DnsDecision::Answer(a) = at("CN", vec![]) else {
        panic!()
    };
    assert_eq!(
        (name(a.region).as_str(), a.reason, a.state, a.ttl),
        ("cn-east", Reason::Home, AnswerState::Normal, 60)
    );
    let DnsDecision::Answer(a) = at("CN", vec!["cn-east"]) else {
        panic!()
    };
    assert_eq!(
        (name(a.region).as_str(), a.state, a.ttl),
        ("cn-north", AnswerState::Degraded, 15)
    );
    // Both China regions down: China's own home edges, short TTL; never
    // a region outside the zone although those are healthy.
    let DnsDecision::Answer(a) = at("CN", vec!["cn-east", "cn-north"]) else {
        panic!()
    };
    assert_eq!(
        (name(a.region).as_str(), a.state, a.ttl),
        ("cn-east", AnswerState::FailOpen, 5)
    );
    let DnsDecision::Answer(a) = at("DE", vec!["eu-west", "eu-central"]) else {
        panic!()
    };
    assert_eq!(
        (name(a.region).as_str(), a.state),
        ("eu-west", AnswerState::FailOpen)
    );
    // Edges down by their health URL count as the region down, for DNS.
    let class = t.classify(Country::parse("US"), None);
    let mut down = RegionSet::EMPTY;
    down.insert(t.region_by_name("us-east").unwrap());
    let DnsDecision::Answer(a) = answer(&t, z, class, None, &down_in(&t, vec![]), down) else {
        panic!()
    };
    assert_eq!(name(a.region), "us-west");
    // A pin across the zone: no answer (NODATA), as HTTP answers 421.
    let cn = t.region_by_name("cn-east").unwrap();
    let got = answer(
        &t,
        z,
        class,
        Some(cn),
        &down_in(&t, vec![]),
        RegionSet::EMPTY,
    );
    assert!(matches!(got, DnsDecision::PinOutsideZone { .. }), "{got:?}");
}

#[test]
fn a_home_with_one_backend_down_is_still_the_answer_but_degraded() {
    let t = compile(&covergen()).unwrap();
    let z = t.dns.as_ref().unwrap();
    let eu = t.region_by_name("eu-west").unwrap();
    let one = t.region(eu).tracks[0].members().next().unwrap();
    let class = t.classify(Country::parse("DE"), None);
    let DnsDecision::Answer(a) = answer(&t, z, class, None, &Down(vec![one]), RegionSet::EMPTY)
    else {
        panic!()
    };
    // Two of three still up: the region serves, with the short TTL that
    // brings clients back soon if it gets worse.
    assert_eq!(
        (a.region, a.reason, a.state, a.ttl),
        (eu, Reason::Home, AnswerState::Degraded, z.ttl.degraded)
    );
    assert_ne!(z.ttl.degraded, z.ttl.normal);
}

#[test]
fn explain_names_the_state_and_whether_http_agrees() {
    use super::explain::explain_dns;
    let t = compile(&covergen()).unwrap();
    let de = t.classify(Country::parse("DE"), None);
    let eu = t.region_by_name("eu-west").unwrap();
    let one = t.region(eu).tracks[0].members().next().unwrap();
    let ex = |h: &dyn HealthView| explain_dns(&t, "API.covergen.ai.", de, h, RegionSet::EMPTY);

    let v = ex(&Down(vec![]));
    assert_eq!(v["name"], "api.covergen.ai");
    assert_eq!(v["answer"], "addresses");
    assert_eq!(v["region"], "eu-west");
    assert_eq!(v["state"], "normal");
    assert_eq!(v["ttl"], 60);
    assert_eq!(v["http_region"], "eu-west");
    assert_eq!(v["agrees_with_http"], true);
    let addrs = v["addresses"].as_array().unwrap();
    assert!(!addrs.is_empty());
    let edges = &t.dns.as_ref().unwrap().regions[eu.index()];
    assert_eq!(addrs[0], edges.v4[0].to_string());

    assert_eq!(ex(&Down(vec![one]))["state"], "degraded");
    // The whole EU down: DNS fails open to the zone's own edges, HTTP
    // answers 503 there; they agree, and nothing leaves the zone.
    let v = ex(&down_in(&t, vec!["eu-west", "eu-central"]));
    assert_eq!(
        (
            &v["state"],
            &v["region"],
            &v["http_region"],
            &v["agrees_with_http"]
        ),
        (
            &"fail_open".into(),
            &"eu-west".into(),
            &serde_json::Value::Null,
            &true.into()
        )
    );

    // A pin across the zone: NODATA here, 421 over HTTP.
    let v = explain_dns(
        &t,
        "api-cn.covergen.ai",
        de,
        &Down(vec![]),
        RegionSet::EMPTY,
    );
    assert_eq!(
        (&v["answer"], &v["agrees_with_http"]),
        (&"nodata".into(), &true.into())
    );
    assert!(v["why"].as_str().unwrap().contains("cn-"), "{v}");
    for (name, why) in [
        ("api.example.com", "not in the zone"),
        ("covergen.ai", "not a steered"),
    ] {
        let v = explain_dns(&t, name, de, &Down(vec![]), RegionSet::EMPTY);
        assert!(v["why"].as_str().unwrap().contains(why), "{name}: {v}");
    }
}

#[test]
fn answer_states_index_the_ttl_tables_in_their_documented_order() {
    let states = [
        AnswerState::Normal,
        AnswerState::Degraded,
        AnswerState::FailOpen,
    ];
    assert_eq!(states.map(AnswerState::index), [0, 1, 2]);
    assert_eq!(
        states.map(AnswerState::as_str),
        ["normal", "degraded", "fail_open"]
    );
}

#[test]
fn an_edge_health_url_is_plain_http_with_a_host_and_a_path() {
    let with = |u: &str| {
        let mut s = covergen();
        dns(&mut s).regions.get_mut("eu-west").unwrap().health_url = Some(u.into());
        s
    };
    let t = compile(&with("http://192.0.2.10:8080/healthz")).unwrap();
    let eu = t.region_by_name("eu-west").unwrap();
    assert_eq!(
        t.dns.as_ref().unwrap().regions[eu.index()]
            .health_url
            .as_deref(),
        Some("http://192.0.2.10:8080/healthz")
    );
    for bad in [
        "https://192.0.2.10/healthz",
        "http:///healthz",
        "http://192.0.2.10:8080",
        "http://ops@192.0.2.10/healthz",
        "192.0.2.10/healthz",
    ] {
        let e = only_error(&with(bad));
        assert_eq!(e.path, "dns.regions.eu-west.health_url", "{bad}: {e}");
        assert!(
            e.reason.contains("not an http://host:port/path URL"),
            "{bad}: {e}"
        );
    }
}

fn record(name: &str, t: &str, v: &str) -> DnsRecordSpec {
    DnsRecordSpec {
        name: name.into(),
        rtype: t.into(),
        value: v.into(),
        ttl: None,
    }
}

#[test]
fn static_records_compile_to_their_data() {
    use super::RecordData;
    let mut s = covergen();
    dns(&mut s).records.extend([
        record("www.covergen.ai", "a", " 192.0.2.80 "),
        record("www.covergen.ai", "AAAA", "2001:db8:99::80"),
        record("docs.covergen.ai", "CNAME", "Docs-Host.Example.NET."),
        record("www.covergen.ai", "TXT", "v=spf1 -all"),
        record(
            "www.covergen.ai",
            "CAA",
            "128 iodef \"mailto:ops@covergen.ai\"",
        ),
    ]);
    let t = compile(&s).unwrap();
    let z = t.dns.as_ref().unwrap();
    let data: Vec<&RecordData> = z.records.iter().map(|r| &r.data).collect();
    for want in [
        RecordData::A("192.0.2.80".parse().unwrap()),
        RecordData::Aaaa("2001:db8:99::80".parse().unwrap()),
        RecordData::Cname("docs-host.example.net".into()),
        RecordData::Txt("v=spf1 -all".into()),
        RecordData::Caa {
            flags: 128,
            tag: "iodef".into(),
            value: "mailto:ops@covergen.ai".into(),
        },
    ] {
        assert!(data.contains(&&want), "{want:?} not in {data:?}");
    }
}

#[test]
fn static_records_keep_to_the_zone_rules() {
    let n = covergen().dns.unwrap().records.len();
    let errors = |extra: Vec<DnsRecordSpec>| {
        let mut s = covergen();
        dns(&mut s).records.extend(extra);
        match compile(&s) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .errors()
                .iter()
                .map(|e| (e.path.clone(), e.reason.clone()))
                .collect(),
        }
    };
    // A CNAME stands alone: the error is the CNAME's, and only its.
    let e = errors(vec![
        record("docs.covergen.ai", "TXT", "x"),
        record("docs.covergen.ai", "CNAME", "docs.example.net"),
    ]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, format!("dns.records[{}].type", n + 1));
    assert!(e[0].1.contains("a CNAME stands alone"), "{e:?}");
    // Alone, or beside records of other names, it is fine; so are two TXT.
    assert!(errors(vec![record(
        "docs.covergen.ai",
        "CNAME",
        "docs.example.net"
    )])
    .is_empty());
    assert!(errors(vec![
        record("docs.covergen.ai", "CNAME", "docs.example.net"),
        record("www.covergen.ai", "A", "192.0.2.80"),
    ])
    .is_empty());
    assert!(errors(vec![
        record("www.covergen.ai", "TXT", "a"),
        record("www.covergen.ai", "TXT", "b"),
    ])
    .is_empty());
    // An edge's IPv6 address is as off limits as its IPv4 one.
    let e = errors(vec![record("www.covergen.ai", "AAAA", "2001:db8:3::30")]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, format!("dns.records[{n}].value"));
    assert!(e[0].1.contains("edge address"), "{e:?}");
    // CAA tags: 1-15 letters and digits.
    for tag in ["is-sue", "abcdefghijklmnop", ""] {
        let e = errors(vec![record(
            "www.covergen.ai",
            "CAA",
            &format!("0 {tag} \"x\""),
        )]);
        assert_eq!(e.len(), 1, "{tag}: {e:?}");
        assert_eq!(e[0].0, format!("dns.records[{n}].value"), "{tag}");
    }
    assert!(errors(vec![record(
        "www.covergen.ai",
        "CAA",
        "0 abcdefghijklmno \"x\""
    )])
    .is_empty());
}

#[test]
fn record_count_name_servers_and_rrl_are_compiled() {
    // At most 1024 records.
    let mut s = covergen();
    let room = 1024 - dns(&mut s).records.len();
    let txt = |i: usize| record(&format!("t{i}.covergen.ai"), "TXT", "x");
    dns(&mut s).records.extend((0..room).map(txt));
    assert!(compile(&s).is_ok(), "1024 records");
    dns(&mut s).records.push(txt(room));
    let e = compile(&s).expect_err("1025 records compiled");
    // The first error names the cap (the name servers' glue, dropped
    // with the records, follows it).
    assert_eq!(e.errors()[0].path, "dns.records", "{e}");
    assert!(e.errors()[0].reason.contains("at most 1024"), "{e}");

    // The apex as a name server is inside the zone: it needs glue too.
    let mut s = covergen();
    dns(&mut s).ns = vec!["covergen.ai".into()];
    let e = only_error(&s);
    assert_eq!(e.path, "dns.ns[0]");
    assert!(e.reason.contains("glue"), "{e}");
    dns(&mut s)
        .records
        .push(record("covergen.ai", "A", "192.0.2.55"));
    assert!(compile(&s).is_ok());

    let mut s = covergen();
    let rrl = &mut dns(&mut s).rrl;
    rrl.responses_per_s = Some(7);
    rrl.slip = Some(3);
    let z = compile(&s).unwrap().dns.unwrap();
    assert_eq!((z.rrl.rate, z.rrl.burst, z.rrl.slip), (7, 14, 3));
    let d = super::Rrl::default();
    let z = compile(&covergen()).unwrap().dns.unwrap();
    assert_eq!(
        (z.rrl.rate, z.rrl.burst, z.rrl.slip),
        (d.rate, d.burst, d.slip)
    );
}

mod records;
