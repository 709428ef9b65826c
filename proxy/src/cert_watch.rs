//! Certificate rotation for origins: the CA and client-certificate files
//! a table names are watched, and when one changes on disk the live table
//! is compiled again from the same spec and installed under the same
//! version.

/// Certificate rotation: the CA and client-certificate files a table
/// names are read when it compiles; when one of them changes on disk, the
/// live table is compiled again from the same spec and installed (same
/// version), so new connections use the new material while pooled ones
/// finish as they are. A file that does not load leaves the previous
/// material serving, with a warning.
#[derive(Default)]
pub struct CertWatch {
    version: Option<u64>,
    stamps: Vec<(std::path::PathBuf, Option<(std::time::SystemTime, u64)>)>,
}

fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl CertWatch {
    /// Called every few seconds, off the async runtime (it reads the files
    /// and compiles); returns whether a recompiled table went live.
    pub fn check(&mut self, steer: &crate::steer::Steering) -> bool {
        let snap = steer.current();
        if self.version != Some(snap.version) {
            // A new table: its files are the baseline.
            self.version = Some(snap.version);
            let mut paths: Vec<std::path::PathBuf> = Vec::new();
            for r in &snap.table.regions {
                let u = &r.upstream;
                paths.extend(u.ca.iter().map(|(p, _)| p.into()));
                if let Some(c) = &u.client {
                    paths.push(c.cert_path.clone().into());
                    paths.push(c.key_path.clone().into());
                }
            }
            paths.sort();
            paths.dedup();
            // A file written since the compile began reading may not be in
            // the table: counted as changed (no stamp), so it is reloaded.
            let read_at = snap.table.files_read_at;
            self.stamps = paths
                .into_iter()
                .map(|p| {
                    let s = stamp(&p).filter(|(modified, _)| *modified < read_at);
                    (p, s)
                })
                .collect();
            if self.stamps.iter().all(|(_, s)| s.is_some()) {
                return false;
            }
        }
        let now: Vec<_> = self.stamps.iter().map(|(p, _)| stamp(p)).collect();
        let changed: Vec<String> = self
            .stamps
            .iter()
            .zip(&now)
            .filter(|((_, old), new)| old != *new)
            .map(|((p, _), _)| p.display().to_string())
            .collect();
        if changed.is_empty() {
            return false;
        }
        match edgesteer_config::compile(&snap.spec) {
            Ok(table) => {
                // Over the snapshot it was compiled from only: a version
                // pushed meanwhile stays (its own compile read the files).
                if !steer.install_over(&snap, (*snap.spec).clone(), table) {
                    return false;
                }
                // Only now: a file caught half-written is tried again.
                for ((_, old), new) in self.stamps.iter_mut().zip(now) {
                    *old = new;
                }
                tracing::info!(files = ?changed, version = snap.version, "origin certificates changed on disk: reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(files = ?changed, error = %e, "origin certificates changed on disk but do not load; the previous ones keep serving");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// A table recompiled for new certificates goes live only over the
    /// snapshot it was compiled from: a version pushed meanwhile stays
    /// (putting the old version back would undo a push the watcher has
    /// already acknowledged).
    #[test]
    fn a_recompiled_table_never_replaces_a_newer_version() {
        let steer = crate::steer::covergen_for_tests();
        let compile = || edgesteer_config::compile(&steer.current().spec).unwrap();
        let v1 = steer.current();
        assert!(steer.install_over(&v1, (*v1.spec).clone(), compile()));
        let reinstalled = steer.current();
        assert_eq!(reinstalled.version, 1);
        assert!(!std::sync::Arc::ptr_eq(&reinstalled, &v1));

        // Version 2 goes live while version 1 is being recompiled.
        steer.install(2, (*v1.spec).clone(), compile());
        assert!(!steer.install_over(&reinstalled, (*v1.spec).clone(), compile()));
        assert_eq!(steer.current().version, 2);
    }
}
