//! One query in, one answer out: the whole DNS answer path, on bytes.
//! It reads the query ([`crate::query`]), finds the name in the rendered
//! zone, asks [`answer`] for steered names, and writes the reply into a
//! reused buffer: header, the question as sent, the records (owners as
//! compression pointers), the SOA for negative answers, and the OPT with
//! the client-subnet echo. Nothing here allocates once the buffer has
//! grown to its working size.

use std::net::IpAddr;

use edgesteer_config::dns::answer::{answer, AnswerState, DnsDecision};
use edgesteer_config::dns::NameKind;
use edgesteer_config::model::{RegionId, RegionSet, RoutingTable};
use edgesteer_config::route::HealthView;
use edgesteer_geo::GeoLookup;

use crate::query::{
    parse, Edns, Malformed, Query, CLASS_IN, TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_AXFR, TYPE_CNAME,
    TYPE_HINFO, TYPE_IXFR, TYPE_NS, TYPE_OPT, TYPE_SOA,
};
use crate::render::{Rendered, RrSet};

/// The EDNS payload size we offer and honour at most (DNS flag day 2020).
pub const MAX_UDP: usize = 1232;

/// Response codes we send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rcode {
    NoError,
    FormErr,
    NxDomain,
    NotImp,
    Refused,
    BadVers,
}

impl Rcode {
    pub const ALL: [Rcode; 6] = [
        Rcode::NoError,
        Rcode::FormErr,
        Rcode::NxDomain,
        Rcode::NotImp,
        Rcode::Refused,
        Rcode::BadVers,
    ];

    /// The header's 4 bits and the OPT's upper 8 (BADVERS is 16).
    fn bits(self) -> (u16, u8) {
        match self {
            Rcode::NoError => (0, 0),
            Rcode::FormErr => (1, 0),
            Rcode::NxDomain => (3, 0),
            Rcode::NotImp => (4, 0),
            Rcode::Refused => (5, 0),
            Rcode::BadVers => (0, 1),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rcode::NoError => "noerror",
            Rcode::FormErr => "formerr",
            Rcode::NxDomain => "nxdomain",
            Rcode::NotImp => "notimp",
            Rcode::Refused => "refused",
            Rcode::BadVers => "badvers",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// How the query came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The class of an answer, for response rate limiting (RFC-style RRL
/// keys answers, NXDOMAINs and errors apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnswerClass {
    Answer,
    NoData,
    NxDomain,
    Error,
}

/// What was answered; for metrics, logs and rate limiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub rcode: Rcode,
    pub qtype: u16,
    /// The region whose edges were answered (steered names only).
    pub region: Option<RegionId>,
    pub state: Option<AnswerState>,
    pub class: AnswerClass,
    /// Whether the answer did not fit (UDP) and went out truncated.
    pub truncated: bool,
    /// A hash of the name asked (lower case), for rate limiting; 0 for
    /// NXDOMAINs and errors (which share a budget per client network
    /// whatever the name) and when no question was read.
    pub name_hash: u64,
    /// Where the question ends in the answer (12 + its length).
    pub question_end: usize,
    /// The length of the OPT record that ends the answer (0: none).
    pub opt_len: usize,
}

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
    let outcome = if q.edns.is_some_and(|e| e.version > 0) {
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

/// A FORMERR (or other refusal) for a query we could not read whole.
fn refuse(
    out: &mut Vec<u8>,
    id: u16,
    flags: u16,
    question: &[u8],
    edns: bool,
    rcode: Rcode,
) -> Outcome {
    let (low, high) = rcode.bits();
    let f = 0x8000 | (flags & 0x7800) | (flags & 0x0110) | low;
    header(
        out,
        id,
        f,
        u16::from(!question.is_empty()),
        0,
        0,
        u16::from(edns),
    );
    out.extend_from_slice(question);
    let before_opt = out.len();
    if edns {
        opt(out, high, None, 0);
    }
    Outcome {
        opt_len: out.len() - before_opt,
        rcode,
        qtype: 0,
        region: None,
        state: None,
        class: AnswerClass::Error,
        truncated: false,
        name_hash: 0,
        question_end: 12 + question.len(),
    }
}

#[allow(clippy::too_many_arguments)]
fn header(out: &mut Vec<u8>, id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) {
    for v in [id, flags, qd, an, ns, ar] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// The OPT record: our payload size, the upper rcode bits, version 0,
/// and the client-subnet echo (family, source and address as sent).
fn opt(out: &mut Vec<u8>, rcode_high: u8, ecs: Option<&crate::query::Ecs>, scope: u8) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&(MAX_UDP as u16).to_be_bytes());
    out.extend_from_slice(&[rcode_high, 0, 0, 0]);
    match ecs {
        Some(e) => {
            let len = 4 + e.addr_len as u16;
            out.extend_from_slice(&(4 + len).to_be_bytes());
            out.extend_from_slice(&crate::query::OPT_ECS.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&e.family.to_be_bytes());
            out.extend_from_slice(&[e.source, scope]);
            out.extend_from_slice(&e.addr[..e.addr_len]);
        }
        None => out.extend_from_slice(&0u16.to_be_bytes()),
    }
}

/// Writes a reply section by section and patches the counts at the end.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    id: u16,
    qflags: u16,
    question_end: usize,
    edns: Option<Edns>,
    qtype: u16,
    name_hash: u64,
    an: u16,
    ns: u16,
    ar: u16,
}

impl<'a> Writer<'a> {
    fn start(out: &'a mut Vec<u8>, q: &Query<'_>) -> Writer<'a> {
        header(out, q.id, 0, 1, 0, 0, 0);
        out.extend_from_slice(q.question);
        Writer {
            question_end: out.len(),
            out,
            id: q.id,
            qflags: q.flags,
            edns: q.edns,
            qtype: q.qtype,
            name_hash: xxhash_rust::xxh3::xxh3_64(q.lower.as_str().as_bytes()),
            an: 0,
            ns: 0,
            ar: 0,
        }
    }

    fn records(&mut self, owner: u16, set: &RrSet) -> u16 {
        for r in set.records() {
            self.out.extend_from_slice(&owner.to_be_bytes());
            self.out.extend_from_slice(r);
        }
        u16::try_from(set.len()).unwrap_or(u16::MAX)
    }

    fn answers(&mut self, owner: u16, set: &RrSet) {
        let n = self.records(owner, set);
        self.an = self.an.saturating_add(n);
    }

    fn authority(&mut self, owner: u16, set: &RrSet) {
        let n = self.records(owner, set);
        self.ns = self.ns.saturating_add(n);
    }

    fn glue(&mut self, bytes: &[u8], count: u16) {
        self.out.extend_from_slice(bytes);
        self.ar = self.ar.saturating_add(count);
    }

    fn hinfo_rfc8482(&mut self, ttl: u32) {
        self.out.extend_from_slice(&0xc00cu16.to_be_bytes());
        self.out.extend_from_slice(&TYPE_HINFO.to_be_bytes());
        self.out.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.out.extend_from_slice(&ttl.to_be_bytes());
        self.out.extend_from_slice(&9u16.to_be_bytes());
        self.out.extend_from_slice(b"\x07RFC8482\x00");
        self.an += 1;
    }

    /// Adds the OPT, sets the header, and truncates a UDP reply that does
    /// not fit the client's payload size (512 without EDNS, at most 1232).
    fn finish(
        &mut self,
        rcode: Rcode,
        authoritative: bool,
        region: Option<RegionId>,
        scope: u8,
        transport: Transport,
    ) -> Outcome {
        let (low, high) = rcode.bits();
        let ecs = self.edns.and_then(|e| e.ecs);
        let before_opt = self.out.len();
        if self.edns.is_some() {
            opt(self.out, high, ecs.as_ref(), scope);
            self.ar += 1;
        }
        // The OPT is written last, and again after a truncation: as long.
        let opt_len = self.out.len() - before_opt;
        let limit = match (transport, self.edns) {
            (Transport::Tcp, _) => usize::from(u16::MAX),
            (Transport::Udp, Some(e)) => usize::from(e.udp_size).clamp(512, MAX_UDP),
            (Transport::Udp, None) => 512,
        };
        let truncated = self.out.len() > limit;
        if truncated {
            // Header and question only (and the OPT): the client retries
            // over TCP for the whole answer.
            self.out.truncate(self.question_end);
            self.an = 0;
            self.ns = 0;
            self.ar = 0;
            if self.edns.is_some() {
                opt(self.out, high, ecs.as_ref(), scope);
                self.ar = 1;
            }
        }
        // QR, the opcode, RD and CD as asked; AA when it is our zone; TC.
        let mut flags = 0x8000 | (self.qflags & 0x7800) | (self.qflags & 0x0110) | low;
        if authoritative {
            flags |= 0x0400;
        }
        if truncated {
            flags |= 0x0200;
        }
        let h = [self.id, flags, 1, self.an, self.ns, self.ar];
        for (i, v) in h.iter().enumerate() {
            self.out[i * 2..i * 2 + 2].copy_from_slice(&v.to_be_bytes());
        }
        let class = match rcode {
            Rcode::NoError if self.an > 0 || truncated => AnswerClass::Answer,
            Rcode::NoError => AnswerClass::NoData,
            Rcode::NxDomain => AnswerClass::NxDomain,
            _ => AnswerClass::Error,
        };
        // Rate limiting keys answers by the name asked, but NXDOMAINs and
        // errors by their class alone (per zone: we serve one), as BIND's
        // RRL does: a flood of random names must share one budget, not
        // get a fresh one per name.
        let name_hash = match class {
            AnswerClass::Answer | AnswerClass::NoData => self.name_hash,
            AnswerClass::NxDomain | AnswerClass::Error => 0,
        };
        Outcome {
            rcode,
            qtype: self.qtype,
            region,
            state: None,
            class,
            truncated,
            name_hash,
            question_end: self.question_end,
            opt_len,
        }
    }
}

/// Turns a written reply (`outcome`'s) into its truncated form (RRL's
/// slip): header, question, TC set, no records but its OPT, which an EDNS
/// query's answer always carries (RFC 6891 7; it also holds a BADVERS's
/// upper rcode bits and the client subnet's echo).
pub fn slip(out: &mut Vec<u8>, outcome: &Outcome) {
    let (question_end, opt_len) = (outcome.question_end, outcome.opt_len);
    if out.len() < 12 || question_end > out.len() || opt_len > out.len() - question_end {
        return;
    }
    let opt_at = out.len() - opt_len;
    out.copy_within(opt_at.., question_end);
    out.truncate(question_end + opt_len);
    let flags = u16::from_be_bytes([out[2], out[3]]) | 0x0200;
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    let ar = u16::from(opt_len > 0);
    for (i, v) in [(6, 0u16), (8, 0), (10, ar)] {
        out[i..i + 2].copy_from_slice(&v.to_be_bytes());
    }
}
