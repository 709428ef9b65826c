//! Routing tables as TOML and JSON, through to `compile()`.
//!
//! Input: the first byte picks the form. `t`: the rest is TOML text;
//! `j`: JSON text; anything else: a table generated as wire structs from
//! the rest (see `edgesteer_fuzz::gen_table`) and serialised to both. A
//! refused table names a field on every error; an accepted one holds only
//! in-range references (`check_table`), and survives the trip to TOML and
//! JSON and back unchanged (the config service stores JSON, operators
//! read TOML).
#![no_main]

use arbitrary::Unstructured;
use edgesteer_config::parse::{from_json, from_toml, to_toml};
use edgesteer_config::{compile, diff, TableSpec};
use edgesteer_fuzz::{check_errors, check_table, gen_table};
use libfuzzer_sys::fuzz_target;

fn accept(spec: &TableSpec) {
    let table = match compile(spec) {
        Ok(t) => t,
        Err(e) => return check_errors(&e),
    };
    check_table(&table);
    let json = serde_json::to_vec(spec).expect("an accepted table serialises to JSON");
    let back = from_json(&json).unwrap_or_else(|e| panic!("own JSON refused: {e}"));
    assert_eq!(&back, spec, "JSON round trip changed the table");
    let text = to_toml(spec).unwrap_or_else(|e| panic!("accepted table has no TOML form: {e}"));
    let back = from_toml(&text).unwrap_or_else(|e| panic!("own TOML refused: {e}\n{text}"));
    assert_eq!(&back, spec, "TOML round trip changed the table");
    assert!(diff::diff(spec, &back).is_empty(), "diff of equal tables");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        b't' => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            match from_toml(text) {
                Ok(spec) => accept(&spec),
                Err(e) => check_errors(&e),
            }
        }
        b'j' => match from_json(rest) {
            Ok(spec) => accept(&spec),
            Err(e) => check_errors(&e),
        },
        _ => {
            let Ok(spec) = gen_table(&mut Unstructured::new(rest)) else {
                return;
            };
            // Whatever we generate must parse back from both forms.
            if let Ok(text) = to_toml(&spec) {
                if let Ok(back) = from_toml(&text) {
                    accept(&back);
                }
            }
            if let Ok(json) = serde_json::to_vec(&spec) {
                if let Ok(back) = from_json(&json) {
                    accept(&back);
                }
            }
        }
    }
});
