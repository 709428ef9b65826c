//! The idle proxy's memory (issue 30): mimalloc's arenas are committed as
//! used, not up front (`edgesteer_proxy::allocator`), so what start-up
//! allocated and freed does not stay resident.

use std::time::Duration;

use edgesteer_tests::*;

/// Anonymous memory (heap, arenas, stacks) of the idle proxy, in KiB. A
/// debug build holds about 9 MB of it with the covergen table; with
/// mimalloc's arena eager commit on, about 22 MB.
const MAX_ANON_KIB: u64 = 15 * 1024;

#[tokio::test]
async fn an_idle_proxy_keeps_what_start_up_freed_off_its_resident_memory() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid())).unwrap();
    let anon: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!("idle proxy: {anon} KiB anonymous");
    assert!(
        anon <= MAX_ANON_KIB,
        "the idle proxy holds {anon} KiB of anonymous memory (more than {MAX_ANON_KIB}): \
         is mimalloc committing whole arenas again (edgesteer_proxy::allocator)?"
    );
}
