//! One query in, one answer out: the whole DNS answer path, on bytes.
//! It reads the query ([`crate::query`]), finds the name in the rendered
//! zone, asks [`answer`] for steered names, and writes the reply into a
//! reused buffer (`write.rs`): header, the question as sent, the records (owners as
//! compression pointers), the SOA for negative answers, and the OPT with
//! the client-subnet echo. Nothing here allocates once the buffer has
//! grown to its working size.

use std::net::IpAddr;

use edgesteer_config::dns::answer::{answer, DnsDecision};
use edgesteer_config::dns::NameKind;
use edgesteer_config::model::{RegionSet, RoutingTable};
use edgesteer_config::route::HealthView;
use edgesteer_geo::GeoLookup;

use crate::query::{
    parse, Malformed, Query, CLASS_IN, TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_AXFR, TYPE_CNAME,
    TYPE_IXFR, TYPE_NS, TYPE_SOA,
};
use crate::render::Rendered;
use crate::write::{refuse, Writer};
pub use crate::write::{slip, AnswerClass, Outcome, Rcode, Transport, MAX_UDP};

/// What the answer path reads besides the query.
pub struct Env<'a, H: ?Sized, G: ?Sized> {
    pub table: &'a RoutingTable,
    pub health: &'a H,
    pub geo: &'a G,
    pub zone: Option<&'a Rendered>,
    /// Regions whose edges fail their health URL.
    pub edges_down: RegionSet,
    /// Merged client classes by network, when built for this table and
    /// geo database; else the database is asked directly.
    pub classes: Option<&'a crate::scope::ClassMap>,
}

/// Answers `msg` from `src` into `out`; `None` means send nothing.
pub fn respond<H: HealthView + ?Sized, G: GeoLookup + ?Sized>(
    env: &Env<'_, H, G>,
    msg: &[u8],
    src: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    out.clear();
    let q = match parse(msg) {
        Ok(q) => q,
        Err(Malformed::Drop) => return None,
        Err(Malformed::NotImp { id, flags }) => {
            return Some(refuse(out, id, flags, &[], false, Rcode::NotImp));
        }
        Err(Malformed::FormErr {
            id,
            flags,
            question_len,
            edns,
        }) => {
            let question = msg.get(12..12 + question_len).unwrap_or(&[]);
            return Some(refuse(out, id, flags, question, edns, Rcode::FormErr));
        }
    };
    let mut w = Writer::start(out, &q);
    let outcome = if (q.flags >> 11) & 0xf != 0 {
        w.finish(Rcode::NotImp, false, None, 0, transport)
    } else if q.edns.is_some_and(|e| e.version > 0) {
        w.finish(Rcode::BadVers, false, None, 0, transport)
    } else if q.qclass != CLASS_IN {
        w.finish(Rcode::Refused, false, None, 0, transport)
    } else {
        match env.zone {
            Some(z) if z.zone.contains(q.lower.as_str()) => {
                in_zone(env, z, &q, src, transport, &mut w)
            }
            // Not ours: REFUSED, without the authoritative bit.
            _ => w.finish(Rcode::Refused, false, None, 0, transport),
        }
    };
    Some(outcome)
}

/// A name at or under the apex.
fn in_zone<H: HealthView + ?Sized, G: GeoLookup + ?Sized>(
    env: &Env<'_, H, G>,
    z: &Rendered,
    q: &Query<'_>,
    src: IpAddr,
    transport: Transport,
    w: &mut Writer<'_>,
) -> Outcome {
    // Zone transfers are not offered.
    if q.qtype == TYPE_AXFR || q.qtype == TYPE_IXFR {
        return w.finish(Rcode::Refused, true, None, 0, transport);
    }
    let apex_ptr = 0xc000 | (12 + q.name_len - z.apex_wire_len) as u16;
    let Some(entry) = z.names.get(q.lower.as_str()) else {
        w.authority(apex_ptr, &z.soa_negative);
        return w.finish(Rcode::NxDomain, true, None, 0, transport);
    };
    let any = q.qtype == TYPE_ANY;
    // RFC 8482: ANY over UDP gets one synthesized HINFO, not every set.
    if any && transport == Transport::Udp {
        w.hinfo_rfc8482(z.zone.ttl.records);
        return w.finish(Rcode::NoError, true, None, 0, transport);
    }
    let mut region = None;
    let mut state = None;
    let mut scope = 0;
    if let Some(kind) = entry.steered {
        if any || q.qtype == TYPE_A || q.qtype == TYPE_AAAA {
            let (class, s) = locate(env, q, src);
            scope = s;
            let pin = match kind {
                NameKind::Geo => None,
                NameKind::Pin(r) => Some(r),
            };
            if let DnsDecision::Answer(a) =
                answer(env.table, &z.zone, class, pin, env.health, env.edges_down)
            {
                region = Some(a.region);
                state = Some(a.state);
                let sets = &z.edges[a.region.index()];
                if any || q.qtype == TYPE_A {
                    w.answers(0xc00c, &sets[0][a.state.index()]);
                }
                if any || q.qtype == TYPE_AAAA {
                    w.answers(0xc00c, &sets[1][a.state.index()]);
                }
            }
        }
    }
    if entry.apex && (any || q.qtype == TYPE_SOA) {
        w.answers(apex_ptr, &z.soa);
    }
    let ns = entry.apex && (any || q.qtype == TYPE_NS);
    if ns {
        w.answers(apex_ptr, &z.ns);
    }
    for (rtype, set) in &entry.sets {
        // A CNAME answers every type (the resolver follows it).
        if any || *rtype == q.qtype || *rtype == TYPE_CNAME {
            w.answers(0xc00c, set);
        }
    }
    if w.an == 0 {
        w.authority(apex_ptr, &z.soa_negative);
    }
    // The glue goes in the additional section, after every answer (an ANY
    // at the apex also answers its own sets, CAA for one): written before
    // them, it was counted as an answer and the CAA as additional.
    if ns {
        w.glue(&z.glue, z.glue_count);
    }
    let mut o = w.finish(Rcode::NoError, true, region, scope, transport);
    o.state = state;
    o
}

/// Where the client is: its subnet when the resolver sent one (a /0
/// source counts as none), else the resolver's own address. Returns its
/// class and the reply's scope.
///
/// Every bit the resolver sent is used, and the scope is the (merged)
/// network the subnet's address falls in. A subnet that spans networks
/// therefore gets the longer scope of the one it was answered for (RFC
/// 7871 7.2.1: not specific enough, send more bits), never a scope that
/// claims the answer for addresses it was not computed from: a /16 whose
/// halves are mainland China and Hong Kong must not be cached as one.
/// An IPv4-mapped subnet (`::ffff:0:0/96` and longer) is located as the
/// IPv4 one it is, as the HTTP plane locates a mapped client address.
fn locate<H: HealthView + ?Sized, G: GeoLookup + ?Sized>(
    env: &Env<'_, H, G>,
    q: &Query<'_>,
    src: IpAddr,
) -> (edgesteer_config::ClientClass, u8) {
    let class_of = |ip: IpAddr| {
        if let Some(hit) = env.classes.and_then(|m| m.lookup(ip)) {
            return hit;
        }
        let (geo, prefix) = env.geo.lookup_net(ip);
        (env.table.classify(geo.country, geo.continent), prefix)
    };
    match q.edns.and_then(|e| e.ecs).filter(|e| e.source > 0) {
        Some(e) => {
            let (ip, offset) = match e.mapped_v4() {
                Some(v4) => (IpAddr::V4(v4), 96),
                None => (e.masked(e.source), 0),
            };
            let (class, prefix) = class_of(ip);
            (class, offset + prefix)
        }
        None => (class_of(src).0, 0),
    }
}
