//! A region's `backends`: addresses, weights and tracks, numbered into the
//! table-wide backend list and summed into each track's weighted set.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use crate::check::Errors;
use crate::host::valid_host;
use crate::model::{Backend, BackendAddr, BackendId, RegionId, Track, WeightedSet};
use crate::wire::BackendSpec;

/// Largest weight a backend may carry; keeps cumulative sums far from overflow.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// Largest number of backends in one table.
pub const MAX_BACKENDS: usize = 20_000;

/// One region's backends, as ids into the table's list.
pub(crate) struct RegionBackends {
    pub ids: Vec<BackendId>,
    pub tracks: [WeightedSet; 2],
}

/// Compiles the backends of region `id` (named `name`), appending them to
/// `backends`.
pub(crate) fn region_backends(
    name: &str,
    id: RegionId,
    specs: &[BackendSpec],
    backends: &mut Vec<Backend>,
    errs: &mut Errors,
) -> RegionBackends {
    errs.check(
        !specs.is_empty(),
        format!("regions.{name}.backends"),
        "at least one backend is required",
    );
    let mut ids = Vec::with_capacity(specs.len());
    let mut tracks = [WeightedSet::default(), WeightedSet::default()];
    let mut addrs = HashSet::new();
    for (j, b) in specs.iter().enumerate() {
        let path = format!("regions.{name}.backends[{j}]");
        let Some((addr, track)) = backend(&path, b, &mut addrs, errs) else {
            continue;
        };
        if backends.len() >= MAX_BACKENDS {
            errs.push(
                &path,
                format!("more than {MAX_BACKENDS} backends in the table"),
            );
            break;
        }
        let bid = BackendId(backends.len() as u32);
        if b.weight > 0 {
            let set = &mut tracks[track.index()];
            set.total += u64::from(b.weight);
            set.cumulative.push((set.total, bid));
        }
        ids.push(bid);
        backends.push(Backend {
            id: bid,
            region: id,
            addr,
            key: b.address.clone(),
            weight: b.weight,
            track,
        });
    }
    RegionBackends { ids, tracks }
}

/// One backend's address and track; `None` when any of its fields is
/// broken. `seen` holds the region's addresses so far.
fn backend(
    path: &str,
    b: &BackendSpec,
    seen: &mut HashSet<String>,
    errs: &mut Errors,
) -> Option<(BackendAddr, Track)> {
    let addr = backend_addr(&format!("{path}.address"), &b.address, errs)?;
    if !errs.check(
        seen.insert(b.address.clone()),
        format!("{path}.address"),
        format!("{} is listed twice in this region", b.address),
    ) {
        return None;
    }
    if !errs.check(
        b.weight <= MAX_WEIGHT,
        format!("{path}.weight"),
        format!("{} is over the maximum {MAX_WEIGHT}", b.weight),
    ) {
        return None;
    }
    let track = match b.track.as_deref() {
        None | Some("stable") => Track::Stable,
        Some("canary") => Track::Canary,
        Some(other) => {
            errs.push(
                format!("{path}.track"),
                format!("`{other}` is not a track; use stable or canary"),
            );
            return None;
        }
    };
    Some((addr, track))
}

/// `ip:port`, `[ipv6]:port` or `hostname:port`.
fn backend_addr(path: &str, s: &str, errs: &mut Errors) -> Option<BackendAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return errs
            .check(sa.port() != 0, path, "port 0 is not a backend port")
            .then_some(BackendAddr::Socket(sa));
    }
    let parsed = s
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)));
    match parsed {
        Some((host, port)) if port > 0 && valid_host(host) && host.parse::<IpAddr>().is_err() => {
            Some(BackendAddr::Host {
                host: host.to_ascii_lowercase(),
                port,
            })
        }
        _ => {
            errs.push(
                path,
                format!("`{s}` is not `ip:port`, `[ipv6]:port` or `hostname:port`"),
            );
            None
        }
    }
}
