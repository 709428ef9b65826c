//! `edgesteer validate` on the shipped example and on broken tables.

use std::process::Command;

use edgesteer_tests::*;

fn validate(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(binary())
        .arg("validate")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_covergen() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/covergen.toml");
    let (code, out, err) = validate(&example);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: "), "{out}");
    assert!(out.contains("8 regions, 20 backends, zones [cn (isolated), eu], 4 host pins, default region us-east"), "{out}");
}

#[test]
fn validate_names_the_field_of_a_zone_crossing() {
    let wd = Workdir::new().unwrap();
    let mut spec = covergen();
    spec.regions.get_mut("cn-east").unwrap().failover = vec!["ap-southeast".into()];
    let path = wd.write_table("bad.toml", &spec).unwrap();
    let (code, out, err) = validate(&path);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("regions.cn-east.failover[0]: ap-southeast is outside zone cn"),
        "{err}"
    );

    // JSON tables, with an unknown field.
    let path = wd.path("bad.json");
    std::fs::write(
        &path,
        r#"{"default_region":"a","regions":{"a":{"backends":[],"colour":"red"}}}"#,
    )
    .unwrap();
    let (code, _, err) = validate(&path);
    assert_eq!(code, 1);
    assert!(
        err.contains("regions.a.colour: unknown field `colour`"),
        "{err}"
    );

    // A missing file is a usage error, not a crash.
    let (code, _, err) = validate(&wd.path("missing.toml"));
    assert_eq!(code, 2);
    assert!(err.contains("missing.toml"), "{err}");
}
