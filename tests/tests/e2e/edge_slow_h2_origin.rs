//! Slow readers behind an h2 origin (issue 30): requests share the
//! origin's connection and its flow-control windows, so a stalled client's
//! answer waits in the proxy, at most one stream window of it
//! (`[upstream] h2_window_bytes`, vendor/README.md part 13), and never
//! starves another request on the connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use edgesteer::demo::DemoBackend;
use edgesteer_tests::*;

use crate::edge_slow_readers::{
    assert_bounded, read_answer, read_rest, stall_readers, stalled_reader, Answer, ANSWER,
};

/// A table of one region on one origin that speaks h2 over TLS, and the
/// origin.
pub(crate) async fn h2_origin(wd: &Workdir) -> (edgesteer_config::wire::TableSpec, DemoBackend) {
    let pki = edgesteer::demo::DemoPki::generate(&wd.path("pki")).unwrap();
    let origin = crate::origin_tls::origin("a", &pki.cert, &pki.key, None).await;
    let spec = crate::origin_tls::table(
        &[(origin.addr, 1)],
        crate::origin_tls::trusting(&pki),
        "interval_ms = 60000\ntimeout_ms = 1000",
    );
    (spec, origin)
}

/// Requests to an h2 origin share its connection's flow-control window.
/// With Pingora's default windows, 8 MiB per stream and per connection, a
/// stalled client's answer piled up in the proxy (610 KiB each here), and
/// sixteen stalled 1 MiB answers used up the connection's window: a new
/// request on it got its head and then nothing until its read timed out.
/// The table's `h2_window_bytes` (64 KiB by default) bounds each stream,
/// and the connection's window holds every stream's: also when a table
/// raises the stream's to 1 MiB, where each stalled answer is whole in
/// the proxy by choice. The send buffer is capped so the kernel does not
/// take the stalled answers off the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_requests_to_an_h2_origin_neither_pile_up_nor_starve_another() {
    const STALLED: usize = 16;
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let (mut spec, _origin) = h2_origin(&wd).await;
    for window in [None, Some(1 << 20)] {
        if let Some(upstream) = spec.regions.get_mut("r").and_then(|r| r.upstream.as_mut()) {
            upstream.h2_window_bytes = window;
        }
        let args = vec!["--send-buffer".to_string(), "65536".into()];
        let proxy = wd.start_proxy(&spec, true, args).await.unwrap();
        let (readers, before, peak) = stall_readers(&proxy, STALLED).await;
        let what = format!("stalled readers of an h2 origin (window {window:?})");
        if window.is_none() {
            // The h2 receive window, not the whole answer, waits here.
            assert_bounded(before, peak, STALLED, &what);
        } else {
            eprintln!("{what}: RSS {before} KiB before, {peak} KiB peak");
        }
        // A new request shares the stalled ones' connection to the origin.
        let mut fresh = stalled_reader(proxy.addr).await;
        assert_eq!(read_answer(&mut fresh).await, ANSWER, "window {window:?}");
        for mut r in readers {
            assert_eq!(read_answer(&mut r).await, ANSWER, "window {window:?}");
        }
    }
}

/// An h2 origin's window covers the whole way to the client: a chunk's
/// flow-control capacity goes back to the origin only once the client's
/// socket has taken the chunk (vendor/README.md part 13), so a stalled
/// client's answer has at most the stream's window (64 KiB by default)
/// anywhere between the origin and the kernel's buffers to the client,
/// whatever the pipe's budget. With the window given back as each frame
/// was read, the budget's chunks (96 KiB here) and a stalled chunk's rest
/// came on top of it. The origin (`counting_h2c_origin`) counts what the
/// window let it send; `ss` counts what the kernel holds between the
/// proxy and the client. Then, stalled for longer than the proxy waits on
/// an origin's read (the origin waits for the client now, not the proxy
/// for it), the client reads, and gets every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_answer_from_an_h2_origin_holds_at_most_its_window_in_the_proxy() {
    const WINDOW: u64 = 65_535;
    const PER_TRY_MS: u64 = 1000;
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let (origin, sent) = counting_h2c_origin(ANSWER).await;
    let upstream = edgesteer_config::wire::UpstreamSpec {
        alpn: Some(vec!["h2c".into()]),
        ..Default::default()
    };
    let mut spec = crate::origin_tls::table(
        &[(origin, 1)],
        upstream,
        "interval_ms = 60000\ntimeout_ms = 1000",
    );
    spec.limits.response_buffer_bytes = Some(256 * 1024);
    // The origin waits for the client here, and the proxy's read of it must
    // not time out meanwhile.
    spec.retry.per_try_timeout_ms = Some(PER_TRY_MS);
    let args = vec!["--send-buffer".to_string(), "65536".into()];
    let proxy = wd.start_proxy(&spec, true, args).await.unwrap();
    let mut reader = stalled_reader(proxy.addr).await;
    let port = proxy.addr.port();
    // Stalled, then twice more after reading some (a chunk's rest may be
    // cut and shrunk again).
    let mut got = Answer::default();
    let mut buf = vec![0u8; 16 * 1024];
    for round in 0..3 {
        let target = got.body + if round == 0 { 0 } else { 96 * 1024 };
        while got.body < target {
            let n = reader.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed after {} body bytes", got.body);
            got.feed(&buf[..n]);
        }
        let (from_origin, in_kernel) = settled(&sent, port).await;
        assert!(
            from_origin > 0 && (from_origin as usize) < ANSWER,
            "the origin sent {from_origin} bytes"
        );
        let delivered = got.body as u64 + in_kernel;
        let in_proxy = from_origin.saturating_sub(delivered);
        eprintln!(
            "round {round}: origin sent {from_origin}, the client read {} and the kernel holds \
             {in_kernel}: {in_proxy} in the proxy",
            got.body
        );
        assert!(
            in_proxy <= WINDOW,
            "round {round}: {in_proxy} bytes of a stalled answer in the proxy (the origin sent \
             {from_origin}, the client read {} and the kernel holds {in_kernel}), more than the \
             stream's window: the window was given back before the client took the bytes",
            got.body
        );
    }
    // Stalled for longer than a try may wait on the origin: still whole.
    tokio::time::sleep(Duration::from_millis(2 * PER_TRY_MS)).await;
    assert_eq!(read_rest(&mut reader, got).await, ANSWER);
}

/// What the origin has sent and what the kernel holds on the connection to
/// `port`, once neither has moved for a second.
async fn settled(sent: &AtomicU64, port: u16) -> (u64, u64) {
    let mut last = (u64::MAX, u64::MAX);
    let mut steady = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = (sent.load(Ordering::SeqCst), kernel_queues(port));
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
        if steady == 10 && now.0 > 0 {
            return now;
        }
    }
    panic!("the origin and the kernel did not settle in 10 s: last {last:?}");
}

/// An h2 origin without TLS that answers `/bytes` with `len` bytes and
/// anything else with two, sending each answer as its flow-control window
/// lets it; with the count of `/bytes` bytes it has sent.
async fn counting_h2c_origin(len: usize) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let count = sent.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((req, respond))) = conn.accept().await {
                    let counted = (req.uri().path() == "/bytes").then(|| count.clone());
                    tokio::spawn(send_counted(
                        respond,
                        if counted.is_some() { len } else { 2 },
                        counted,
                    ));
                }
            });
        }
    });
    (addr, sent)
}

/// Sends a `len`-byte answer on `respond` as the window allows, adding
/// what it sends to `count`.
async fn send_counted(
    mut respond: h2::server::SendResponse<bytes::Bytes>,
    len: usize,
    count: Option<Arc<AtomicU64>>,
) {
    let head = http::Response::builder()
        .status(200)
        .header("content-length", len)
        .body(())
        .unwrap();
    let Ok(mut body) = respond.send_response(head, false) else {
        return;
    };
    let mut left = len;
    while left > 0 {
        body.reserve_capacity(left);
        let n = match std::future::poll_fn(|cx| body.poll_capacity(cx)).await {
            Some(Ok(n)) => n.min(left),
            _ => return,
        };
        if n == 0 {
            continue;
        }
        if let Some(count) = &count {
            count.fetch_add(n as u64, Ordering::SeqCst);
        }
        left -= n;
        if body
            .send_data(bytes::Bytes::from(vec![b'x'; n]), left == 0)
            .is_err()
        {
            return;
        }
    }
}

/// The bytes the kernel holds on the established connections to or from
/// `port`: every socket's receive and send queues (`ss`'s Recv-Q and
/// Send-Q).
fn kernel_queues(port: u16) -> u64 {
    let filter = format!("( sport = :{port} or dport = :{port} )");
    crate::edge_slow_readers::ss_established("-tnH", &filter)
        .lines()
        .map(|line| {
            let mut cols = line
                .split_whitespace()
                .map(|c| c.parse::<u64>().unwrap_or(0));
            cols.next().unwrap_or(0) + cols.next().unwrap_or(0)
        })
        .sum()
}
