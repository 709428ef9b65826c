//! Reading a query off the wire, without allocating: the header, the one
//! question (its bytes kept as sent, so 0x20 mixed case is echoed), and
//! the OPT record with its client-subnet option (RFC 6891, RFC 7871).
//! Anything a server must refuse to read is a [`Malformed`], carrying
//! what the reply needs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest name in presentation form (RFC 1035 §2.3.4: 255 octets on the wire).
pub const MAX_NAME: usize = 255;

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_HINFO: u16 = 13;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_IXFR: u16 = 251;
pub const TYPE_AXFR: u16 = 252;
pub const TYPE_ANY: u16 = 255;
pub const TYPE_CAA: u16 = 257;
pub const CLASS_IN: u16 = 1;
/// EDNS option code of client subnet.
pub const OPT_ECS: u16 = 8;

/// A query as read.
#[derive(Clone, Debug)]
pub struct Query<'a> {
    pub id: u16,
    /// The header's second 16 bits (QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode).
    pub flags: u16,
    /// The question as sent: name, type, class.
    pub question: &'a [u8],
    /// Length of the name within `question`.
    pub name_len: usize,
    pub qtype: u16,
    pub qclass: u16,
    /// The name in lower case, dotted, no trailing dot; labels holding a
    /// byte no host name has are marked so they match nothing of ours.
    pub lower: NameBuf,
    pub edns: Option<Edns>,
}

/// A name in presentation form on the stack.
#[derive(Clone, Copy)]
pub struct NameBuf {
    buf: [u8; MAX_NAME],
    len: usize,
}

impl NameBuf {
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written (see `read_question`).
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The OPT record of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub ecs: Option<Ecs>,
}

/// A client-subnet option as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ecs {
    /// 1 (IPv4) or 2 (IPv6).
    pub family: u16,
    pub source: u8,
    /// The address bytes as sent (`ceil(source / 8)` of them).
    pub addr: [u8; 16],
    pub addr_len: usize,
}

impl Ecs {
    /// The subnet's address with every bit past `bits` (at most the
    /// source prefix) cleared.
    pub fn masked(&self, bits: u8) -> IpAddr {
        let bits = usize::from(bits.min(self.source));
        let mut a = [0u8; 16];
        a[..self.addr_len].copy_from_slice(&self.addr[..self.addr_len]);
        for (i, byte) in a.iter_mut().enumerate() {
            let keep = bits.saturating_sub(i * 8).min(8);
            *byte &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        }
        if self.family == 1 {
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(a))
        }
    }

    /// An IPv6 subnet inside `::ffff:0:0/96` (IPv4-mapped): its IPv4
    /// address, masked to the source's bits past the 96.
    pub fn mapped_v4(&self) -> Option<Ipv4Addr> {
        if self.family != 2 || self.source < 96 {
            return None;
        }
        let IpAddr::V6(v6) = self.masked(self.source) else {
            return None;
        };
        v6.to_ipv4_mapped()
    }
}

/// Why a query cannot be answered normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not worth an answer: shorter than a header, or a response
    /// (answering responses is how reflection loops start).
    Drop,
    /// NOTIMP: an opcode other than QUERY, in a message not shaped as a
    /// query (its sections are not read).
    NotImp { id: u16, flags: u16 },
    /// FORMERR: the header was read; the question too when `question_len` > 0.
    FormErr {
        id: u16,
        flags: u16,
        question_len: usize,
        edns: bool,
    },
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Reads a query. Only the shapes a stub or resolver sends are accepted:
/// one question, no answer or authority records, at most one OPT.
pub fn parse(msg: &[u8]) -> Result<Query<'_>, Malformed> {
    let (Some(id), Some(flags)) = (u16_at(msg, 0), u16_at(msg, 2)) else {
        return Err(Malformed::Drop);
    };
    if msg.len() < 12 || flags & 0x8000 != 0 {
        return Err(Malformed::Drop);
    }
    // Another opcode (NOTIFY, UPDATE, ...) is not implemented, whatever its
    // sections hold (RFC 1035 4.1.1): one shaped as a query is answered
    // NOTIMP with its question and OPT (`respond`), any other NOTIMP alone.
    let other_opcode = (flags >> 11) & 0xf != 0;
    let formerr = |question_len, edns| match other_opcode {
        true => Malformed::NotImp { id, flags },
        false => Malformed::FormErr {
            id,
            flags,
            question_len,
            edns,
        },
    };
    let counts = [4, 6, 8, 10].map(|i| u16_at(msg, i).unwrap_or(0));
    if counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1 {
        return Err(formerr(0, false));
    }
    let (lower, name_len) = read_name(&msg[12..]).ok_or(formerr(0, false))?;
    let qend = 12 + name_len + 4;
    let (Some(qtype), Some(qclass)) = (u16_at(msg, 12 + name_len), u16_at(msg, 14 + name_len))
    else {
        return Err(formerr(0, false));
    };
    let question = &msg[12..qend];
    let edns = if counts[3] == 1 {
        // FORMERR carries an OPT only when the query's record was one
        // (RFC 6891 7).
        let was_opt = msg.get(qend) == Some(&0) && u16_at(msg, qend + 1) == Some(TYPE_OPT);
        Some(read_opt(&msg[qend..]).ok_or(formerr(question.len(), was_opt))?)
    } else if qend == msg.len() {
        None
    } else {
        return Err(formerr(question.len(), false));
    };
    Ok(Query {
        id,
        flags,
        question,
        name_len,
        qtype,
        qclass,
        lower,
        edns,
    })
}

/// An uncompressed name (a query's first name has nothing to point at):
/// its presentation form and its length on the wire.
fn read_name(b: &[u8]) -> Option<(NameBuf, usize)> {
    let mut out = NameBuf {
        buf: [0; MAX_NAME],
        len: 0,
    };
    let mut i = 0;
    loop {
        let len = usize::from(*b.get(i)?);
        if len == 0 {
            return Some((out, i + 1));
        }
        // Compression pointers (0xc0) and the reserved label types.
        if len > 63 || i + 1 + len >= MAX_NAME {
            return None;
        }
        let label = b.get(i + 1..i + 1 + len)?;
        if out.len > 0 {
            out.buf[out.len] = b'.';
            out.len += 1;
        }
        for &c in label {
            let c = c.to_ascii_lowercase();
            let ok = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
            // A byte no host name of ours has (a dot inside a label,
            // binary): a marker that matches none of our names.
            out.buf[out.len] = if ok { c } else { b'#' };
            out.len += 1;
        }
        i += 1 + len;
    }
}

/// The OPT record that ends the message.
fn read_opt(b: &[u8]) -> Option<Edns> {
    // Root owner name, type OPT.
    if b.first() != Some(&0) || u16_at(b, 1)? != TYPE_OPT {
        return None;
    }
    let udp_size = u16_at(b, 3)?;
    let version = *b.get(6)?;
    let rdlen = usize::from(u16_at(b, 9)?);
    let rdata = b.get(11..11 + rdlen)?;
    if 11 + rdlen != b.len() {
        return None;
    }
    let mut ecs = None;
    let mut i = 0;
    while i < rdata.len() {
        let code = u16_at(rdata, i)?;
        let len = usize::from(u16_at(rdata, i + 2)?);
        let data = rdata.get(i + 4..i + 4 + len)?;
        if code == OPT_ECS {
            if ecs.is_some() {
                return None;
            }
            ecs = Some(read_ecs(data)?);
        }
        i += 4 + len;
    }
    Some(Edns {
        udp_size,
        version,
        ecs,
    })
}

/// RFC 7871 §6: family 1 or 2, source within the family's width, scope 0
/// in a query, exactly `ceil(source / 8)` address bytes, and no bit set
/// past the source prefix.
fn read_ecs(d: &[u8]) -> Option<Ecs> {
    let family = u16_at(d, 0)?;
    let source = *d.get(2)?;
    let scope = *d.get(3)?;
    let width = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    let addr_len = usize::from(source).div_ceil(8);
    let bytes = d.get(4..)?;
    if source > width || scope != 0 || bytes.len() != addr_len {
        return None;
    }
    if !source.is_multiple_of(8) {
        let last = bytes[addr_len - 1];
        if last & (0xffu8 >> (source % 8)) != 0 {
            return None;
        }
    }
    let mut addr = [0u8; 16];
    addr[..addr_len].copy_from_slice(bytes);
    Some(Ecs {
        family,
        source,
        addr,
        addr_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[&str], qtype: u16, opt: Option<&[u8]>) -> Vec<u8> {
        let mut m = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(opt.is_some()),
        ];
        for l in name {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        if let Some(rdata) = opt {
            m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
        m
    }

    fn ecs(family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
        let mut o = OPT_ECS.to_be_bytes().to_vec();
        o.extend_from_slice(&((4 + addr.len()) as u16).to_be_bytes());
        o.extend_from_slice(&family.to_be_bytes());
        o.extend_from_slice(&[source, scope]);
        o.extend_from_slice(addr);
        o
    }

    #[test]
    fn a_plain_query_reads_with_its_case_kept_and_lowered() {
        let m = query(&["ApI", "CoverGen", "ai"], TYPE_A, None);
        let q = parse(&m).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.lower.as_str(), "api.covergen.ai");
        assert_eq!(&q.question[1..4], b"ApI");
        assert_eq!(q.qtype, TYPE_A);
        assert!(q.edns.is_none());
    }

    #[test]
    fn client_subnet_is_read_and_checked() {
        let m = query(&["a"], TYPE_A, Some(&ecs(1, 24, 0, &[1, 2, 4])));
        let e = parse(&m).unwrap().edns.unwrap().ecs.unwrap();
        assert_eq!((e.family, e.source), (1, 24));
        assert_eq!(e.masked(24), IpAddr::from([1, 2, 4, 0]));
        assert_eq!(e.masked(16), IpAddr::from([1, 2, 0, 0]));
        // A bit past the source prefix, a non-zero scope, a wrong length,
        // an unknown family: FORMERR.
        for bad in [
            ecs(1, 23, 0, &[1, 2, 5]),
            ecs(1, 24, 8, &[1, 2, 4]),
            ecs(1, 24, 0, &[1, 2, 4, 0]),
            ecs(3, 8, 0, &[1]),
            ecs(1, 33, 0, &[1, 2, 3, 4, 5]),
        ] {
            let m = query(&["a"], TYPE_A, Some(&bad));
            assert!(
                matches!(parse(&m), Err(Malformed::FormErr { edns: true, .. })),
                "{bad:?}"
            );
        }
        let m = query(&["a"], TYPE_A, Some(&ecs(2, 0, 0, &[])));
        assert_eq!(parse(&m).unwrap().edns.unwrap().ecs.unwrap().source, 0);
    }

    #[test]
    fn odd_labels_match_nothing_and_bad_shapes_are_refused() {
        let m = query(&["evil.api", "covergen", "ai"], TYPE_A, None);
        assert_eq!(parse(&m).unwrap().lower.as_str(), "evil#api.covergen.ai");
        // A compression pointer as the question's name.
        let mut m = query(&[], TYPE_A, None);
        m[12] = 0xc0;
        m.insert(13, 12);
        assert!(matches!(parse(&m), Err(Malformed::FormErr { .. })));
        // A response, and a runt: dropped.
        let mut m = query(&["a"], TYPE_A, None);
        m[2] |= 0x80;
        assert_eq!(parse(&m).unwrap_err(), Malformed::Drop);
        assert_eq!(parse(&[1, 2, 3]).unwrap_err(), Malformed::Drop);
        // Trailing garbage.
        let mut m = query(&["a"], TYPE_A, None);
        m.push(0);
        assert!(matches!(parse(&m), Err(Malformed::FormErr { .. })));
    }
}
