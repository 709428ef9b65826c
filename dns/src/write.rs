//! The reply, written into the answer path's reused buffer: header, the
//! question as sent, record sets (owners as compression pointers), the
//! OPT with the client-subnet echo, the UDP size cap and TC, and the
//! truncated form a rate-limited answer slips out as; with what an answer
//! was ([`Outcome`]: its rcode, class and sizes), which `respond.rs`
//! re-exports.

use edgesteer_config::dns::answer::AnswerState;
use edgesteer_config::model::RegionId;

use crate::query::{Edns, Query, CLASS_IN, TYPE_HINFO, TYPE_OPT};
use crate::render::RrSet;

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
    pub(crate) fn bits(self) -> (u16, u8) {
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

/// A FORMERR (or other refusal) for a query we could not read whole.
pub(crate) fn refuse(
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
pub(crate) struct Writer<'a> {
    out: &'a mut Vec<u8>,
    id: u16,
    qflags: u16,
    question_end: usize,
    edns: Option<Edns>,
    qtype: u16,
    name_hash: u64,
    pub(crate) an: u16,
    ns: u16,
    ar: u16,
}

impl<'a> Writer<'a> {
    pub(crate) fn start(out: &'a mut Vec<u8>, q: &Query<'_>) -> Writer<'a> {
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

    pub(crate) fn records(&mut self, owner: u16, set: &RrSet) -> u16 {
        for r in set.records() {
            self.out.extend_from_slice(&owner.to_be_bytes());
            self.out.extend_from_slice(r);
        }
        u16::try_from(set.len()).unwrap_or(u16::MAX)
    }

    pub(crate) fn answers(&mut self, owner: u16, set: &RrSet) {
        let n = self.records(owner, set);
        self.an = self.an.saturating_add(n);
    }

    pub(crate) fn authority(&mut self, owner: u16, set: &RrSet) {
        let n = self.records(owner, set);
        self.ns = self.ns.saturating_add(n);
    }

    pub(crate) fn glue(&mut self, bytes: &[u8], count: u16) {
        self.out.extend_from_slice(bytes);
        self.ar = self.ar.saturating_add(count);
    }

    pub(crate) fn hinfo_rfc8482(&mut self, ttl: u32) {
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
    pub(crate) fn finish(
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
