//! `[dns]` -> [`DnsZone`]. Every rule names the field it concerns.
//!
//! Zone safety is checked here, once: every region has edges, and every
//! edge address belongs to exactly one region and is no static record's
//! address. So an answer, which is always one region's edges, can only
//! carry addresses of that region, and the region is chosen inside the
//! client's allowed set by the same code as HTTP.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{DnsRegion, DnsTtls, DnsZone, RecordData, Rrl, Soa, StaticRecord};
use crate::check::Errors;
use crate::compile::lookup::{region_ref, RegionIds};
use crate::host::valid_host;
use crate::model::RegionId;
use crate::wire_dns::{DnsRecordSpec, DnsSpec};

/// Most addresses one region may answer with (a UDP answer of more is
/// truncated anyway; this bounds what a table can make us precompute).
const MAX_EDGES: usize = 64;
/// Most static records.
const MAX_RECORDS: usize = 1024;

pub(crate) fn dns_zone(
    spec: &DnsSpec,
    region_ids: &RegionIds,
    pins: &[(String, RegionId)],
    errs: &mut Errors,
) -> Option<DnsZone> {
    let apex = name(errs, "dns.zone", &spec.zone)?;
    let under = |n: &str| n == apex || n.ends_with(&format!(".{apex}"));
    let mut geo_names = Vec::new();
    errs.check(
        !spec.names.is_empty(),
        "dns.names",
        "at least one name is answered by geography, e.g. [\"api.covergen.ai\"]",
    );
    for (i, n) in spec.names.iter().enumerate() {
        let path = format!("dns.names[{i}]");
        if let Some(n) = name(errs, &path, n) {
            if errs.check(
                under(&n),
                &path,
                format!("`{n}` is not in the zone `{apex}`"),
            ) {
                geo_names.push(n);
            }
        }
    }
    let pinned: Vec<(String, RegionId)> = pins.iter().filter(|(h, _)| under(h)).cloned().collect();
    for (i, n) in geo_names.iter().enumerate() {
        errs.check(
            !pinned.iter().any(|(h, _)| h == n),
            format!("dns.names[{i}]"),
            format!("`{n}` is also a host pin in [hosts]; a name is either pinned or answered by geography"),
        );
    }
    let regions = regions(spec, region_ids, errs);
    let records = records(spec, &apex, errs);
    check_records(&records, &apex, (&geo_names, &pinned), &regions, errs);
    let ns = ns(spec, &apex, &records, errs);
    let ttl = ttls(spec, errs);
    let soa = soa(spec, &apex, &ns, errs);
    let rrl = rrl(spec, errs);
    Some(DnsZone {
        apex,
        geo_names,
        pinned,
        ns,
        soa: soa?,
        ttl,
        regions: regions?,
        records,
        rrl,
    })
}

/// A host name in normal form (lower case, no trailing dot), or an error.
fn name(errs: &mut Errors, path: &str, n: &str) -> Option<String> {
    let n = n.trim_end_matches('.').to_ascii_lowercase();
    // `_acme-challenge` and the like: underscores are fine in DNS names.
    let shape = n.replace('_', "a");
    errs.check(
        valid_host(&shape),
        path,
        format!("`{n}` is not a DNS name (labels of letters, digits, '-', '_', at most 253 bytes)"),
    )
    .then_some(n)
}

/// Each region's edges, by region index; every region needs at least one.
fn regions(spec: &DnsSpec, region_ids: &RegionIds, errs: &mut Errors) -> Option<Vec<DnsRegion>> {
    let mut out = vec![DnsRegion::default(); region_ids.len()];
    let mut owner: HashMap<IpAddr, &str> = HashMap::new();
    for (rname, r) in &spec.regions {
        let path = format!("dns.regions.{rname}");
        let Some(id) = region_ref(errs, &path, rname, region_ids) else {
            continue;
        };
        errs.check(
            r.addresses.len() <= MAX_EDGES,
            format!("{path}.addresses"),
            format!("{} addresses; at most {MAX_EDGES}", r.addresses.len()),
        );
        let edges = &mut out[id.index()];
        for (i, a) in r.addresses.iter().enumerate().take(MAX_EDGES) {
            let apath = format!("{path}.addresses[{i}]");
            let Ok(ip) = a.parse::<IpAddr>() else {
                errs.push(apath, format!("`{a}` is not an IPv4 or IPv6 address"));
                continue;
            };
            if let Some(other) = owner.insert(ip, rname) {
                errs.push(
                    apath,
                    format!("{ip} is also an edge of region `{other}`; an answer address belongs to exactly one region, so no zone's address reaches another zone's clients"),
                );
                continue;
            }
            match ip {
                IpAddr::V4(v4) => edges.v4.push(v4),
                IpAddr::V6(v6) => edges.v6.push(v6),
            }
        }
        edges.health_url = r.health_url.clone();
        if let Some(u) = &r.health_url {
            errs.check(
                health_url_ok(u),
                format!("{path}.health_url"),
                format!("`{u}` is not an http://host:port/path URL"),
            );
        }
    }
    let mut ok = true;
    let mut names: Vec<(&&str, &RegionId)> = region_ids.iter().collect();
    names.sort();
    for (rname, id) in names {
        let e = &out[id.index()];
        if e.v4.is_empty() && e.v6.is_empty() {
            ok = false;
            errs.push(
                format!("dns.regions.{rname}"),
                "no edge addresses: with [dns] set, every region needs at least one, so DNS can always name the region HTTP routes to",
            );
        }
    }
    ok.then_some(out)
}

/// `http://host[:port]/path`, plain HTTP (edges' health endpoints).
pub fn health_url_ok(u: &str) -> bool {
    let Some(rest) = u.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    !authority.is_empty() && rest.len() > authority.len() && !authority.contains('@')
}

fn records(spec: &DnsSpec, apex: &str, errs: &mut Errors) -> Vec<StaticRecord> {
    if spec.records.len() > MAX_RECORDS {
        errs.push(
            "dns.records",
            format!("{} records; at most {MAX_RECORDS}", spec.records.len()),
        );
        return Vec::new();
    }
    let ttl_default = spec.ttl.records.unwrap_or(DnsTtls::default().records);
    let mut out = Vec::new();
    for (i, r) in spec.records.iter().enumerate() {
        let path = format!("dns.records[{i}]");
        let Some(n) = name(errs, &format!("{path}.name"), &r.name) else {
            continue;
        };
        if !errs.check(
            n == apex || n.ends_with(&format!(".{apex}")),
            format!("{path}.name"),
            format!("`{n}` is not in the zone `{apex}`"),
        ) {
            continue;
        }
        let Some(data) = record_data(r, &path, errs) else {
            continue;
        };
        let ttl = errs
            .in_range(
                format!("{path}.ttl"),
                Some(r.ttl.unwrap_or(ttl_default)),
                0..=604_800,
                " seconds",
            )
            .unwrap_or(ttl_default);
        out.push(StaticRecord { name: n, ttl, data });
    }
    out
}

fn record_data(r: &DnsRecordSpec, path: &str, errs: &mut Errors) -> Option<RecordData> {
    let vpath = format!("{path}.value");
    let v = r.value.trim();
    let data = match r.rtype.to_ascii_uppercase().as_str() {
        "A" => v.parse().ok().map(RecordData::A),
        "AAAA" => v.parse().ok().map(RecordData::Aaaa),
        "CNAME" => {
            let t = v.trim_end_matches('.').to_ascii_lowercase();
            valid_host(&t.replace('_', "a")).then_some(RecordData::Cname(t))
        }
        "TXT" => (v.len() <= 4000).then(|| RecordData::Txt(r.value.clone())),
        "CAA" => caa(v),
        other => {
            errs.push(
                format!("{path}.type"),
                format!("`{other}` is not a record type served here (A, AAAA, CNAME, TXT, CAA)"),
            );
            return None;
        }
    };
    if data.is_none() {
        let want = match r.rtype.to_ascii_uppercase().as_str() {
            "A" => "an IPv4 address",
            "AAAA" => "an IPv6 address",
            "CNAME" => "a DNS name",
            "TXT" => "a text of at most 4000 bytes",
            _ => "`FLAGS TAG \"VALUE\"`, e.g. `0 issue \"letsencrypt.org\"`",
        };
        errs.push(vpath, format!("`{v}` is not {want}"));
    }
    data
}

/// `0 issue "letsencrypt.org"`.
fn caa(v: &str) -> Option<RecordData> {
    let mut parts = v.splitn(3, ' ');
    let flags = parts.next()?.parse::<u8>().ok()?;
    let tag = parts.next()?.to_string();
    let value = parts
        .next()?
        .trim()
        .strip_prefix('"')?
        .strip_suffix('"')?
        .to_string();
    let tag_ok =
        !tag.is_empty() && tag.len() <= 15 && tag.bytes().all(|b| b.is_ascii_alphanumeric());
    tag_ok.then_some(RecordData::Caa { flags, tag, value })
}

/// A steered name holds only its A/AAAA answer plus TXT and CAA; a
/// CNAME stands alone, so never at the apex (which holds the SOA and NS);
/// no static address may be an edge address.
fn check_records(
    records: &[StaticRecord],
    apex: &str,
    (geo, pinned): (&[String], &[(String, RegionId)]),
    regions: &Option<Vec<DnsRegion>>,
    errs: &mut Errors,
) {
    for (i, r) in records.iter().enumerate() {
        let path = format!("dns.records[{i}]");
        let steered = geo.contains(&r.name) || pinned.iter().any(|(h, _)| *h == r.name);
        let kind = r.data.rtype();
        if steered && !matches!(r.data, RecordData::Txt(_) | RecordData::Caa { .. }) {
            errs.push(
                format!("{path}.type"),
                format!("`{}` is answered by the table (geography or a pin); only TXT and CAA records may sit beside it", r.name),
            );
        }
        // Reported once, at the CNAME.
        let cname_clash = kind == 5
            && (r.name == apex
                || records
                    .iter()
                    .enumerate()
                    .any(|(j, o)| j != i && o.name == r.name));
        if cname_clash {
            let beside = if r.name == apex {
                "is the zone's apex, which holds its SOA and NS"
            } else {
                "has a CNAME and other records"
            };
            errs.push(
                format!("{path}.type"),
                format!("`{}` {beside}; a CNAME stands alone", r.name),
            );
        }
        let addr = match r.data {
            RecordData::A(a) => Some(IpAddr::V4(a)),
            RecordData::Aaaa(a) => Some(IpAddr::V6(a)),
            _ => None,
        };
        if let (Some(ip), Some(regions)) = (addr, regions) {
            let is_edge = regions.iter().any(|e| {
                e.v4.iter().any(|&a| IpAddr::V4(a) == ip)
                    || e.v6.iter().any(|&a| IpAddr::V6(a) == ip)
            });
            errs.check(
                !is_edge,
                format!("{path}.value"),
                format!("{ip} is a region's edge address; static records may not hand out edges outside the steering"),
            );
        }
    }
}

fn ns(spec: &DnsSpec, apex: &str, records: &[StaticRecord], errs: &mut Errors) -> Vec<String> {
    errs.check(
        !spec.ns.is_empty(),
        "dns.ns",
        "at least one name server, e.g. [\"ns1.covergen.ai\"]",
    );
    let mut out = Vec::new();
    for (i, n) in spec.ns.iter().enumerate() {
        let path = format!("dns.ns[{i}]");
        let Some(n) = name(errs, &path, n) else {
            continue;
        };
        let in_zone = n == apex || n.ends_with(&format!(".{apex}"));
        let glued = records
            .iter()
            .any(|r| r.name == n && matches!(r.data, RecordData::A(_) | RecordData::Aaaa(_)));
        errs.check(
            !in_zone || glued,
            &path,
            format!(
                "`{n}` is inside the zone, so it needs an A or AAAA record in dns.records (glue)"
            ),
        );
        out.push(n);
    }
    out
}

fn ttls(spec: &DnsSpec, errs: &mut Errors) -> DnsTtls {
    let d = DnsTtls::default();
    let t = &spec.ttl;
    let day = 0..=86_400;
    let mut get = |field: &str, v: Option<u32>, dflt: u32| {
        errs.in_range(
            format!("dns.ttl.{field}"),
            Some(v.unwrap_or(dflt)),
            day.clone(),
            " seconds",
        )
        .unwrap_or(dflt)
    };
    let ttl = DnsTtls {
        normal: get("normal", t.normal, d.normal),
        degraded: get(
            "degraded",
            t.degraded,
            d.degraded.min(t.normal.unwrap_or(d.normal)),
        ),
        fail_open: get("fail_open", t.fail_open, d.fail_open),
        negative: get("negative", t.negative, d.negative),
        records: get("records", t.records, d.records),
    };
    errs.check(
        ttl.degraded <= ttl.normal,
        "dns.ttl.degraded",
        format!(
            "{} is longer than dns.ttl.normal ({}); a degraded answer must expire first",
            ttl.degraded, ttl.normal
        ),
    );
    errs.check(
        ttl.fail_open <= ttl.degraded,
        "dns.ttl.fail_open",
        format!(
            "{} is longer than dns.ttl.degraded ({})",
            ttl.fail_open, ttl.degraded
        ),
    );
    ttl
}

fn soa(spec: &DnsSpec, apex: &str, ns: &[String], errs: &mut Errors) -> Option<Soa> {
    let s = &spec.soa;
    let mname = match &s.mname {
        Some(m) => name(errs, "dns.soa.mname", m)?,
        None => ns.first()?.clone(),
    };
    let rname = match &s.rname {
        Some(r) => name(errs, "dns.soa.rname", r)?,
        None => format!("hostmaster.{apex}"),
    };
    let mut secs = |field: &str, v: Option<u32>, dflt: u32| {
        errs.in_range(
            format!("dns.soa.{field}"),
            Some(v.unwrap_or(dflt)),
            1..=2_419_200,
            " seconds",
        )
        .unwrap_or(dflt)
    };
    Some(Soa {
        mname,
        rname,
        refresh: secs("refresh", s.refresh, 3600),
        retry: secs("retry", s.retry, 600),
        expire: secs("expire", s.expire, 604_800),
    })
}

fn rrl(spec: &DnsSpec, errs: &mut Errors) -> Rrl {
    let d = Rrl::default();
    let r = &spec.rrl;
    let rate = errs
        .in_range(
            "dns.rrl.responses_per_s",
            Some(r.responses_per_s.unwrap_or(d.rate)),
            0..=1_000_000,
            "",
        )
        .unwrap_or(d.rate);
    // A limit with no burst would refuse every answer: at least 1 unless
    // the limit is off (rate 0).
    let burst = errs
        .in_range(
            "dns.rrl.burst",
            Some(r.burst.unwrap_or(rate.saturating_mul(2))),
            u32::from(rate > 0)..=10_000_000,
            " (at least 1 while responses_per_s is above 0)",
        )
        .unwrap_or(d.burst);
    let slip = errs
        .in_range("dns.rrl.slip", Some(r.slip.unwrap_or(d.slip)), 0..=10, "")
        .unwrap_or(d.slip);
    Rrl { rate, burst, slip }
}
