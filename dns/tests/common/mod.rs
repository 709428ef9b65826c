//! What the answer-path tests share: the covergen table and its zone, a
//! query with an optional client subnet, and readers of an answer.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // each test file uses a part

use std::net::{IpAddr, Ipv4Addr};

use edgesteer_config::dns::DnsZone;
use edgesteer_config::model::RegionSet;
use edgesteer_config::route::AllHealthy;
use edgesteer_config::{load_toml, RoutingTable, COVERGEN_TOML};
use edgesteer_dns::render::Rendered;
use edgesteer_dns::respond::{respond, Env, Transport};
use edgesteer_geo::testdb::{build, Schema, SAMPLE};
use edgesteer_geo::GeoDb;
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
pub struct Fixture {
    pub table: RoutingTable,
    pub zone: Rendered,
    pub geo: GeoDb,
}

pub fn fixture() -> Fixture {
    let (_, table) = load_toml(COVERGEN_TOML).unwrap();
    let z: std::sync::Arc<DnsZone> = table.dns.clone().unwrap();
    Fixture {
        zone: Rendered::new(z, 42),
        table,
        geo: GeoDb::from_bytes(build(Schema::GeoIp2, SAMPLE)).unwrap(),
    }
}

pub fn query(name: &str, rtype: RecordType, subnet: Option<(&str, u8)>) -> Message {
    let mut m = Message::query();
    m.metadata.id = 0xbeef;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some((addr, source)) = subnet {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
            addr.parse().unwrap(),
            source,
            0,
        )));
        m.set_edns(e);
    }
    m
}

impl Fixture {
    /// The answer path's inputs: this table and zone, every backend
    /// healthy, `geo` (the fixture's own, or another), `classes` if given.
    pub fn env<'a>(
        &'a self,
        geo: &'a GeoDb,
        classes: Option<&'a edgesteer_dns::scope::ClassMap>,
    ) -> Env<'a, AllHealthy, GeoDb> {
        Env {
            table: &self.table,
            health: &AllHealthy,
            geo,
            zone: Some(&self.zone),
            edges_down: RegionSet::EMPTY,
            classes,
        }
    }

    pub fn ask_bytes(&self, msg: &[u8], from: &str, t: Transport) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        respond(
            &self.env(&self.geo, None),
            msg,
            from.parse().unwrap(),
            t,
            &mut out,
        )
        .map(|_| out)
    }

    /// The outcome of answering `q` from `from` over UDP.
    pub fn outcome(&self, q: &Message, from: &str) -> edgesteer_dns::respond::Outcome {
        let mut out = Vec::new();
        respond(
            &self.env(&self.geo, None),
            &q.to_vec().unwrap(),
            from.parse().unwrap(),
            Transport::Udp,
            &mut out,
        )
        .expect("an answer")
    }

    pub fn ask(&self, q: &Message, t: Transport) -> Message {
        let out = self
            .ask_bytes(&q.to_vec().unwrap(), "127.0.0.1", t)
            .expect("an answer");
        Message::from_vec(&out).expect("our answer parses")
    }
}

pub fn v4s(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

pub fn scope(m: &Message) -> Option<(IpAddr, u8, u8)> {
    match m
        .edns
        .as_ref()?
        .option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)?
    {
        EdnsOption::Subnet(s) => Some((s.addr(), s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

/// The A answer for `api.covergen.ai` to a resolver sending the client
/// subnet `subnet/source` over UDP: its IPv4 addresses and its scope.
pub fn a_for_subnet(
    env: &Env<'_, AllHealthy, GeoDb>,
    subnet: &str,
    source: u8,
) -> (Vec<Ipv4Addr>, u8) {
    let q = query("api.covergen.ai.", RecordType::A, Some((subnet, source)));
    let mut out = Vec::new();
    respond(
        env,
        &q.to_vec().unwrap(),
        "127.0.0.1".parse().unwrap(),
        Transport::Udp,
        &mut out,
    )
    .unwrap();
    let m = Message::from_vec(&out).unwrap();
    (v4s(&m), scope(&m).unwrap().2)
}
