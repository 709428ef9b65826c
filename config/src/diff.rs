//! Human-readable differences between two tables, for the audit log and
//! `edgesteer ctl diff`: one line per changed leaf, named by its path.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::wire::TableSpec;

/// `path: old -> new` lines, `+ path: value` for additions and
/// `- path: value` for removals, in path order.
pub fn diff(old: &TableSpec, new: &TableSpec) -> Vec<String> {
    let (a, b) = (flatten(old), flatten(new));
    let mut out = Vec::new();
    for (path, va) in &a {
        match b.get(path) {
            Some(vb) if vb != va => out.push(format!("{path}: {va} -> {vb}")),
            Some(_) => {}
            None => out.push(format!("- {path}: {va}")),
        }
    }
    for (path, vb) in &b {
        if !a.contains_key(path) {
            out.push(format!("+ {path}: {vb}"));
        }
    }
    out.sort_by(|x, y| strip(x).cmp(strip(y)));
    out
}

fn strip(line: &str) -> &str {
    line.trim_start_matches(['+', '-', ' '])
}

fn flatten(spec: &TableSpec) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let value = serde_json::to_value(spec).unwrap_or(Value::Null);
    walk(&value, String::new(), &mut out);
    out
}

fn walk(v: &Value, path: String, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(map) => {
            if map.is_empty() && !path.is_empty() {
                out.insert(path.clone(), "{}".into());
            }
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(child, p, out);
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                out.insert(path.clone(), "[]".into());
            }
            for (i, child) in items.iter().enumerate() {
                walk(child, format!("{path}[{i}]"), out);
            }
        }
        leaf => {
            out.insert(path, leaf.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, COVERGEN_TOML};

    #[test]
    fn names_each_changed_leaf() {
        let a = parse::from_toml(COVERGEN_TOML).unwrap();
        let mut b = a.clone();
        assert!(diff(&a, &b).is_empty());
        b.regions.get_mut("us-east").unwrap().backends[1].weight = 5;
        b.regions.get_mut("eu-west").unwrap().drain = true;
        b.hosts.remove("api-ap.covergen.ai");
        let d = diff(&a, &b);
        assert_eq!(
            d,
            [
                "- hosts.api-ap.covergen.ai: \"ap-southeast\"",
                "+ regions.eu-west.drain: true",
                "regions.us-east.backends[1].weight: 1 -> 5",
            ]
        );
    }
}
