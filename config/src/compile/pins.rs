//! `hosts`: host names pinned to a region. Here they are only checked to
//! exist; whether a client may use a pin is decided per request (421).

use super::lookup::{region_ref, RegionIds};
use crate::check::Errors;
use crate::host::valid_host;
use crate::model::RegionId;
use crate::wire::TableSpec;

/// `(lower-case host, region)` pairs.
pub(crate) fn pins(
    spec: &TableSpec,
    region_ids: &RegionIds,
    errs: &mut Errors,
) -> Vec<(String, RegionId)> {
    let mut pins = Vec::new();
    for (host, region) in &spec.hosts {
        let path = format!("hosts.\"{host}\"");
        if !errs.check(
            valid_host(host),
            &path,
            "not a valid host name (letters, digits, '-', '.', no port)",
        ) {
            continue;
        }
        let Some(r) = region_ref(errs, &path, region, region_ids) else {
            continue;
        };
        pins.push((host.to_ascii_lowercase(), r));
    }
    pins
}
