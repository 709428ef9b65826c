//! Structural check of a MaxMind DB before `maxminddb` reads it.
//!
//! `maxminddb` 0.26 trusts the file: a search tree larger than the file, a
//! record pointing before or past the data section, or a value whose size
//! runs off the end makes it index out of bounds (or underflow) and panic,
//! in `Reader::from_source` or in a later lookup. The fuzzer found this
//! (`fuzz/fuzz_targets/geo_db.rs`). So every database is checked here
//! first, with checked arithmetic only: the metadata, that the tree fits,
//! that every record is a node, "not found" or a pointer into the data
//! section, and that every value those pointers reach (and every pointer
//! inside them) is well-formed, in bounds, acyclic and of bounded depth
//! and size. A database that passes can be walked by any lookup without
//! leaving the buffer or recursing without end. Cost: one pass over
//! the tree and one decode per distinct record, at load only.

use std::collections::{HashMap, HashSet};

const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// Nesting deeper than this (maps in arrays in maps, pointers followed) is
/// refused, so a crafted record cannot exhaust the decoder's stack.
const MAX_DEPTH: u32 = 32;
/// Most values one record may decode to, pointers followed (a GeoIP2 City
/// record is a few hundred), so pointers shared in a diamond cannot make
/// one lookup decode exponentially many.
const MAX_VALUES: u64 = 100_000;

/// What is wrong with a database, for the load error.
pub(crate) type Problem = String;

/// Checks `buf` (a whole database file).
pub(crate) fn verify(buf: &[u8]) -> Result<(), Problem> {
    let marker = rfind(buf, METADATA_MARKER).ok_or("no metadata marker")?;
    let meta_start = marker + METADATA_MARKER.len();
    let meta = Meta::read(buf.get(meta_start..).unwrap_or_default())?;
    if ![24, 28, 32].contains(&meta.record_size) {
        return Err(format!(
            "record size {} is not 24, 28 or 32",
            meta.record_size
        ));
    }
    if meta.ip_version != 4 && meta.ip_version != 6 {
        return Err(format!("ip version {} is not 4 or 6", meta.ip_version));
    }
    if meta.node_count == 0 {
        return Err("empty search tree".into());
    }
    let tree_len = meta
        .node_count
        .checked_mul(meta.record_size)
        .map(|bits| bits / 4)
        .ok_or("search tree size overflows")?;
    let data_start = tree_len
        .checked_add(16)
        .ok_or("search tree size overflows")?;
    if data_start > marker {
        return Err(format!(
            "search tree of {} nodes needs {data_start} bytes, the file has {marker} before its metadata",
            meta.node_count
        ));
    }
    // `maxminddb` decodes from the data section start to the end of the
    // file; pointers must stay within it.
    let data = buf.get(data_start..).unwrap_or_default();
    let tree = buf.get(..tree_len).unwrap_or_default();
    let mut records = HashSet::new();
    for node in 0..meta.node_count {
        for side in 0..2 {
            let r = record(tree, meta.record_size, node, side).ok_or("search tree truncated")?;
            if r <= meta.node_count {
                continue; // another node, or "not found"
            }
            let offset = r
                .checked_sub(meta.node_count + 16)
                .filter(|&o| o < data.len())
                .ok_or_else(|| format!("node {node} points outside the data section"))?;
            records.insert(offset);
        }
    }
    let mut walk = Walk {
        data,
        done: HashMap::new(),
        active: HashSet::new(),
    };
    for offset in records {
        let (height, values) = walk
            .value(offset, 0)
            .map_err(|e| format!("record at data offset {offset}: {e}"))?;
        if height > MAX_DEPTH || values > MAX_VALUES {
            return Err(format!(
                "record at data offset {offset} decodes to {values} values {height} deep"
            ));
        }
    }
    Ok(())
}

/// The fields of the metadata map the reader depends on.
struct Meta {
    node_count: usize,
    record_size: usize,
    ip_version: usize,
}

impl Meta {
    fn read(meta: &[u8]) -> Result<Meta, Problem> {
        let (head, mut at) = control(meta, 0)?;
        if head.kind != Kind::Map {
            return Err("metadata is not a map".into());
        }
        let (mut node_count, mut record_size, mut ip_version) = (None, None, None);
        for _ in 0..head.size {
            let (key, key_at) = control(meta, at)?;
            let name = (key.kind == Kind::Str)
                .then(|| payload(meta, key_at, key.size))
                .flatten()
                .ok_or("metadata key is not a string")?;
            at = key_at + key.size;
            let (v, v_at) = control(meta, at)?;
            if matches!(v.kind, Kind::U16 | Kind::U32 | Kind::U64) {
                let n = payload(meta, v_at, v.size)
                    .ok_or("metadata value truncated")?
                    .iter()
                    .fold(0usize, |acc, &b| acc.wrapping_shl(8) | usize::from(b));
                match name {
                    b"node_count" => node_count = Some(n),
                    b"record_size" => record_size = Some(n),
                    b"ip_version" => ip_version = Some(n),
                    _ => {}
                }
            }
            at = skip(meta, at, 0)?;
        }
        Ok(Meta {
            node_count: node_count.ok_or("metadata has no node_count")?,
            record_size: record_size.ok_or("metadata has no record_size")?,
            ip_version: ip_version.ok_or("metadata has no ip_version")?,
        })
    }
}

/// Record `side` (0 left, 1 right) of `node`, as `maxminddb` reads it.
fn record(tree: &[u8], record_size: usize, node: usize, side: usize) -> Option<usize> {
    let base = node.checked_mul(record_size)? / 4;
    let be = |b: &[u8], first: usize| b.iter().fold(first, |acc, &x| (acc << 8) | usize::from(x));
    match record_size {
        24 => tree
            .get(base + side * 3..base + side * 3 + 3)
            .map(|b| be(b, 0)),
        28 => {
            let middle = *tree.get(base + 3)?;
            let high = if side == 0 {
                middle >> 4
            } else {
                middle & 0x0f
            };
            tree.get(base + side * 4..base + side * 4 + 3)
                .map(|b| be(b, usize::from(high)))
        }
        _ => tree
            .get(base + side * 4..base + side * 4 + 4)
            .map(|b| be(b, 0)),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pointer,
    Str,
    Double,
    Bytes,
    U16,
    U32,
    Map,
    I32,
    U64,
    U128,
    Array,
    Bool,
    Float,
}

/// A value's type and size, from its control byte(s).
struct Head {
    kind: Kind,
    size: usize,
}

/// Decodes the control byte(s) at `at`: the type, the size, and where the
/// payload starts. Pointers keep their raw 5 bits in `size`.
fn control(buf: &[u8], at: usize) -> Result<(Head, usize), Problem> {
    let byte = |i: usize| buf.get(i).copied().ok_or("value truncated");
    let c = byte(at)?;
    let mut at = at + 1;
    let kind = match c >> 5 {
        0 => {
            let ext = byte(at)?;
            at += 1;
            match usize::from(ext) + 7 {
                8 => Kind::I32,
                9 => Kind::U64,
                10 => Kind::U128,
                11 => Kind::Array,
                14 => Kind::Bool,
                15 => Kind::Float,
                t => return Err(format!("unsupported data type {t}")),
            }
        }
        1 => {
            return Ok((
                Head {
                    kind: Kind::Pointer,
                    size: usize::from(c & 0x1f),
                },
                at,
            ))
        }
        2 => Kind::Str,
        3 => Kind::Double,
        4 => Kind::Bytes,
        5 => Kind::U16,
        6 => Kind::U32,
        _ => Kind::Map,
    };
    let small = usize::from(c & 0x1f);
    let size = match small {
        29 => 29 + usize::from(byte(at)?),
        30 => 285 + ((usize::from(byte(at)?) << 8) | usize::from(byte(at + 1)?)),
        31 => {
            65_821
                + ((usize::from(byte(at)?) << 16)
                    | (usize::from(byte(at + 1)?) << 8)
                    | usize::from(byte(at + 2)?))
        }
        s => s,
    };
    at += match small {
        29 => 1,
        30 => 2,
        31 => 3,
        _ => 0,
    };
    let max = match kind {
        Kind::U16 => Some(2),
        Kind::U32 | Kind::I32 => Some(4),
        Kind::U64 => Some(8),
        Kind::U128 => Some(16),
        _ => None,
    };
    if max.is_some_and(|m| size > m) {
        return Err(format!("{kind:?} of {size} bytes"));
    }
    if (kind == Kind::Double && size != 8) || (kind == Kind::Float && size != 4) {
        return Err(format!("{kind:?} of {size} bytes"));
    }
    if kind == Kind::Bool && size > 1 {
        return Err(format!("boolean {size}"));
    }
    Ok((Head { kind, size }, at))
}

fn payload(buf: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    buf.get(at..at.checked_add(len)?)
}

/// The data section, checked value by value: each value once (`done`:
/// its height and how many values decoding it yields, pointers followed),
/// and a pointer back into a value being checked (`active`) is a cycle,
/// which the decoder would follow until its stack ran out.
struct Walk<'a> {
    data: &'a [u8],
    done: HashMap<usize, (u32, u64)>,
    active: HashSet<usize>,
}

impl Walk<'_> {
    /// Height and decoded size of the value at `offset`.
    fn value(&mut self, offset: usize, depth: u32) -> Result<(u32, u64), Problem> {
        if let Some(&r) = self.done.get(&offset) {
            return Ok(r);
        }
        if !self.active.insert(offset) {
            return Err(format!("pointer cycle through {offset}"));
        }
        let (_, height, values) = self.node(offset, depth)?;
        self.active.remove(&offset);
        self.done.insert(offset, (height, values));
        Ok((height, values))
    }

    /// Where the value at `at` ends, its height and decoded size.
    fn node(&mut self, at: usize, depth: u32) -> Result<(usize, u32, u64), Problem> {
        if depth > MAX_DEPTH {
            return Err("values nested too deep".into());
        }
        let data = self.data;
        let (head, at) = control(data, at)?;
        match head.kind {
            Kind::Pointer => {
                let (target, end) = pointer(data, head.size, at)?;
                if target >= data.len() {
                    return Err(format!("pointer to {target} past the data section"));
                }
                let (h, n) = self.value(target, depth + 1)?;
                Ok((end, h.saturating_add(1), n))
            }
            Kind::Map | Kind::Array => {
                let mut at = at;
                let (mut height, mut values) = (0u32, 1u64);
                for _ in 0..children(&head)? {
                    let (end, h, n) = self.node(at, depth + 1)?;
                    at = end;
                    height = height.max(h);
                    values = values.saturating_add(n);
                    if values > MAX_VALUES {
                        return Err(format!("a value decodes to over {MAX_VALUES} values"));
                    }
                }
                Ok((at, height.saturating_add(1), values))
            }
            _ => Ok((scalar_end(data, &head, at)?, 1, 1)),
        }
    }
}

/// The target of a pointer whose control bits are `bits5`, with its
/// payload at `at`, and where the pointer ends.
fn pointer(buf: &[u8], bits5: usize, at: usize) -> Result<(usize, usize), Problem> {
    let ss = (bits5 >> 3) & 0x3;
    let bits = bits5 & 0x7;
    let extra = payload(buf, at, ss + 1).ok_or("pointer truncated")?;
    let raw = extra
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let target = match ss {
        0 => (bits << 8) | raw,
        1 => ((bits << 16) | raw) + 2048,
        2 => ((bits << 24) | raw) + 526_336,
        _ => raw,
    };
    Ok((target, at + ss + 1))
}

/// How many values a map (keys and values) or array holds.
fn children(head: &Head) -> Result<usize, Problem> {
    if head.kind == Kind::Map {
        head.size
            .checked_mul(2)
            .ok_or_else(|| "map too large".into())
    } else {
        Ok(head.size)
    }
}

/// Where a scalar whose payload starts at `at` ends.
fn scalar_end(buf: &[u8], head: &Head, at: usize) -> Result<usize, Problem> {
    if head.kind == Kind::Bool {
        return Ok(at);
    }
    let p = payload(buf, at, head.size).ok_or("value runs past the end")?;
    if head.kind == Kind::Str {
        std::str::from_utf8(p).map_err(|_| "string is not UTF-8")?;
    }
    Ok(at + head.size)
}

/// Where the metadata value at `at` ends (metadata has no pointers).
fn skip(buf: &[u8], at: usize, depth: u32) -> Result<usize, Problem> {
    if depth > MAX_DEPTH {
        return Err("values nested too deep".into());
    }
    let (head, at) = control(buf, at)?;
    match head.kind {
        Kind::Pointer => Err("pointer in metadata".into()),
        Kind::Map | Kind::Array => {
            let mut at = at;
            for _ in 0..children(&head)? {
                at = skip(buf, at, depth + 1)?;
            }
            Ok(at)
        }
        _ => scalar_end(buf, &head, at),
    }
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}
