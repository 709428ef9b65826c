//! Answers rendered once per table version, as wire bytes: each region's
//! A and AAAA record sets for each answer state, the SOA, the NS set and
//! glue, and the static records by name. Every record's owner is a
//! compression pointer, written at answer time, so one rendering serves
//! every spelling of a name. A query then costs a lookup and a copy.

use std::collections::HashMap;

use edgesteer_config::dns::{DnsZone, NameKind, RecordData};

use crate::query::{TYPE_A, TYPE_AAAA, TYPE_NS, TYPE_SOA};

/// Rendered record sets without their owners: `(rrs, count)` where each
/// record in `rrs` starts at its TYPE field.
#[derive(Clone, Debug, Default)]
pub struct RrSet {
    /// Each record's bytes after the owner, back to back, with the offset
    /// where each starts (records get their owner prepended one by one).
    pub bytes: Vec<u8>,
    pub starts: Vec<usize>,
}

impl RrSet {
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Each record's bytes after the owner.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        let ends = self
            .starts
            .iter()
            .skip(1)
            .copied()
            .chain([self.bytes.len()]);
        self.starts
            .iter()
            .zip(ends)
            .map(|(&s, e)| &self.bytes[s..e])
    }

    fn push(&mut self, rtype: u16, ttl: u32, rdata: &[u8]) {
        self.starts.push(self.bytes.len());
        self.bytes.extend_from_slice(&rtype.to_be_bytes());
        self.bytes.extend_from_slice(&1u16.to_be_bytes());
        self.bytes.extend_from_slice(&ttl.to_be_bytes());
        // rdata is bounded by the table rules (names <= 255, TXT <= 4000).
        let len = u16::try_from(rdata.len()).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(rdata);
    }
}

/// What a name under the apex holds.
#[derive(Clone, Debug, Default)]
pub struct NameEntry {
    /// Answered by the table (geography or a pin).
    pub steered: Option<NameKind>,
    /// Static record sets by type.
    pub sets: Vec<(u16, RrSet)>,
    /// Whether this is the apex (SOA and NS live here).
    pub apex: bool,
}

/// One table version's zone, ready to answer from.
#[derive(Debug)]
pub struct Rendered {
    pub version: u64,
    pub zone: std::sync::Arc<DnsZone>,
    /// `[region][0 = A, 1 = AAAA][state]`.
    pub edges: Vec<[[RrSet; 3]; 2]>,
    /// The SOA, as an answer.
    pub soa: RrSet,
    /// The SOA in the authority section of a negative answer, its TTL the
    /// lesser of its own and the negative TTL (RFC 2308 §3).
    pub soa_negative: RrSet,
    pub ns: RrSet,
    /// A/AAAA records of in-zone name servers, with their full owner names.
    pub glue: Vec<u8>,
    pub glue_count: u16,
    /// Every name that exists, with empty non-terminals (no records).
    pub names: HashMap<String, NameEntry>,
    /// The apex in wire form, for locating it inside a question.
    pub apex_wire_len: usize,
}

impl Rendered {
    pub fn new(zone: std::sync::Arc<DnsZone>, version: u64) -> Rendered {
        let z = &*zone;
        let edges = z
            .regions
            .iter()
            .map(|r| {
                let ttls = [z.ttl.normal, z.ttl.degraded, z.ttl.fail_open];
                let v4 = ttls.map(|ttl| {
                    let mut s = RrSet::default();
                    for a in &r.v4 {
                        s.push(TYPE_A, ttl, &a.octets());
                    }
                    s
                });
                let v6 = ttls.map(|ttl| {
                    let mut s = RrSet::default();
                    for a in &r.v6 {
                        s.push(TYPE_AAAA, ttl, &a.octets());
                    }
                    s
                });
                [v4, v6]
            })
            .collect();
        let mut soa = RrSet::default();
        let mut soa_negative = RrSet::default();
        let mut rdata = name_wire(&z.soa.mname);
        rdata.extend(name_wire(&z.soa.rname));
        // The serial is the table version (RFC 1982 arithmetic wraps).
        for v in [
            version as u32,
            z.soa.refresh,
            z.soa.retry,
            z.soa.expire,
            z.ttl.negative,
        ] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        soa.push(TYPE_SOA, z.ttl.records, &rdata);
        soa_negative.push(TYPE_SOA, z.ttl.records.min(z.ttl.negative), &rdata);
        let mut ns = RrSet::default();
        for n in &z.ns {
            ns.push(TYPE_NS, z.ttl.records, &name_wire(n));
        }
        let (glue, glue_count) = glue(z);
        let names = names(z);
        Rendered {
            version,
            apex_wire_len: name_wire(&z.apex).len(),
            zone,
            edges,
            soa,
            soa_negative,
            ns,
            glue,
            glue_count,
            names,
        }
    }
}

/// A/AAAA records (full owner names) of the name servers inside the zone.
fn glue(z: &DnsZone) -> (Vec<u8>, u16) {
    let mut out = Vec::new();
    let mut n = 0u16;
    for ns in &z.ns {
        for r in z.records.iter().filter(|r| &r.name == ns) {
            let (rtype, rdata) = match &r.data {
                RecordData::A(a) => (TYPE_A, a.octets().to_vec()),
                RecordData::Aaaa(a) => (TYPE_AAAA, a.octets().to_vec()),
                _ => continue,
            };
            out.extend(name_wire(ns));
            let mut s = RrSet::default();
            s.push(rtype, r.ttl, &rdata);
            out.extend_from_slice(&s.bytes);
            n = n.saturating_add(1);
        }
    }
    (out, n)
}

/// Every name of the zone, with what it holds; ancestors up to the apex
/// exist as empty non-terminals (NODATA, never NXDOMAIN).
fn names(z: &DnsZone) -> HashMap<String, NameEntry> {
    let mut names: HashMap<String, NameEntry> = HashMap::new();
    names.entry(z.apex.clone()).or_default().apex = true;
    let touch = |n: &str, names: &mut HashMap<String, NameEntry>| {
        // Ancestors between the name and the apex.
        let mut cur = n;
        while let Some((_, parent)) = cur.split_once('.') {
            if parent.len() < z.apex.len() {
                break;
            }
            names.entry(parent.to_string()).or_default();
            cur = parent;
        }
    };
    for n in &z.geo_names {
        names.entry(n.clone()).or_default().steered = Some(NameKind::Geo);
        touch(n, &mut names);
    }
    for (n, r) in &z.pinned {
        names.entry(n.clone()).or_default().steered = Some(NameKind::Pin(*r));
        touch(n, &mut names);
    }
    for r in &z.records {
        let rdata = match &r.data {
            RecordData::A(a) => a.octets().to_vec(),
            RecordData::Aaaa(a) => a.octets().to_vec(),
            RecordData::Cname(t) => name_wire(t),
            RecordData::Txt(t) => txt_wire(t),
            RecordData::Caa { flags, tag, value } => {
                let mut v = vec![*flags, tag.len() as u8];
                v.extend_from_slice(tag.as_bytes());
                v.extend_from_slice(value.as_bytes());
                v
            }
        };
        let entry = names.entry(r.name.clone()).or_default();
        let rtype = r.data.rtype();
        match entry.sets.iter_mut().find(|(t, _)| *t == rtype) {
            Some((_, set)) => set.push(rtype, r.ttl, &rdata),
            None => {
                let mut set = RrSet::default();
                set.push(rtype, r.ttl, &rdata);
                entry.sets.push((rtype, set));
            }
        }
        touch(&r.name, &mut names);
    }
    names
}

/// A name (presentation form, no trailing dot) in wire form.
pub fn name_wire(n: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(n.len() + 2);
    for label in n.split('.').filter(|l| !l.is_empty()) {
        // Labels were checked at compile (<= 63 bytes).
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A text as character-strings of at most 255 bytes.
fn txt_wire(t: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.len() + t.len() / 255 + 1);
    let bytes = t.as_bytes();
    if bytes.is_empty() {
        out.push(0);
    }
    for chunk in bytes.chunks(255) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
    out
}
