//! Slow readers over TLS (issue 30): rustls keeps the records it encrypted
//! for a client until the socket takes them, and to the proxy those bytes
//! are written, so its budget lets the next chunk in. `--tls-send-buffer`
//! (16 KiB, one record, by default; vendor/README.md part 14) caps that,
//! where rustls's own 64 KiB let a stalled TLS reader hold up to 48 KiB
//! more than a plaintext one.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use edgesteer_tests::*;

use crate::edge_slow_readers::{peak_rss, rss_kib, ANSWER};

const READERS: usize = 100;

/// A TLS client (trusting `ca_pem`) with a small receive window that asks
/// for the 1 MiB answer and then reads nothing.
async fn stalled_tls_reader(addr: std::net::SocketAddr, ca_pem: &str) -> TlsStream<TcpStream> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let req = format!("GET /bytes?n={ANSWER} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    tls
}

/// What one stalled TLS reader adds to the proxy's RSS (KiB), with the
/// proxy's `--tls-send-buffer` at `limit` (`None`: its default).
async fn per_stalled_tls_reader(wd: &Workdir, limit: Option<&str>) -> u64 {
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let dir = wd.path(&format!("pki-{}", limit.unwrap_or("default")));
    std::fs::create_dir_all(&dir).unwrap();
    let pki = make_pki(&dir, &[&["localhost"]]).unwrap();
    let mut extra_args = vec!["--send-buffer".to_string(), "65536".into()];
    if let Some(limit) = limit {
        extra_args.extend(["--tls-send-buffer".to_string(), limit.into()]);
    }
    let proxy = Proxy::start(ProxyConfig {
        table: wd.write_table("table.toml", &spec).unwrap(),
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        tls_certs: pki.leaves.clone(),
        extra_args,
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = proxy.tls.unwrap();
    // One answer read whole first: what the first request allocates once
    // is in the baseline.
    let mut warm = stalled_tls_reader(addr, &pki.ca_pem).await;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < ANSWER {
        let n = warm.read(&mut buf).await.unwrap();
        assert!(n > 0, "the warm-up answer ended after {got} bytes");
        got += n;
    }
    let before = rss_kib(proxy.pid());
    let mut readers = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        readers.push(stalled_tls_reader(addr, &pki.ca_pem).await);
    }
    let peak = peak_rss(proxy.pid(), before).await;
    let each = (peak - before) / READERS as u64;
    eprintln!(
        "--tls-send-buffer {limit:?}: RSS {before} KiB before, {peak} KiB peak: {each} KiB each"
    );
    drop(readers);
    each
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_reader_holds_one_record_in_rustls_not_four() {
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let rustls_default = per_stalled_tls_reader(&wd, Some("0")).await;
    let ours = per_stalled_tls_reader(&wd, None).await;
    assert!(
        rustls_default >= ours + 24,
        "a stalled TLS reader holds {ours} KiB with the default --tls-send-buffer and \
         {rustls_default} KiB with rustls's 64 KiB: the 16 KiB cap should save about 48 KiB"
    );
}
