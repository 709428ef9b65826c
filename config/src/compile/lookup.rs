//! References between sections of the table: a region or country named
//! in one place and resolved here, with the error when it does not exist.

use std::collections::HashMap;

use crate::check::Errors;
use crate::geo_codes::Country;
use crate::model::RegionId;

/// Region ids by name.
pub(crate) type RegionIds<'a> = HashMap<&'a str, RegionId>;

/// An upper-case ISO-3166 alpha-2 code.
pub(crate) fn country(errs: &mut Errors, path: &str, code: &str) -> Option<Country> {
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Country::parse(code)
    } else {
        errs.push(
            path,
            format!("`{code}` is not an upper-case ISO-3166 alpha-2 country code"),
        );
        None
    }
}

/// The id of region `name`, or an error listing the regions there are.
pub(crate) fn region_ref(
    errs: &mut Errors,
    path: &str,
    name: &str,
    ids: &RegionIds,
) -> Option<RegionId> {
    match ids.get(name) {
        Some(&r) => Some(r),
        None => {
            let mut known: Vec<&&str> = ids.keys().collect();
            known.sort();
            errs.push(
                path,
                format!("unknown region `{name}`; regions: {}", list(known)),
            );
            None
        }
    }
}

/// `a, b, c`, or `(none)`.
pub(crate) fn list<I: IntoIterator<Item = T>, T: std::fmt::Display>(items: I) -> String {
    let v: Vec<String> = items.into_iter().map(|x| x.to_string()).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}
