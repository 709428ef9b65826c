//! Memory per slow reader (issue 26): clients that read a large answer
//! slowly hold back the origin through TCP, not the proxy's memory
//! (`[limits] response_buffer_bytes`, the patched Pingora pipe in
//! vendor/README.md), and every byte still arrives.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use edgesteer_tests::*;

const READERS: usize = 200;
pub(crate) const ANSWER: usize = 1024 * 1024;
/// What one stalled reader may add to the proxy's RSS, in KiB. A debug
/// build holds about 55 KiB per request in flight with the default
/// 32 KiB buffer (100 before vendor/README.md part 6 took the connect and
/// handshake states out of the long-lived futures); Pingora's own pipe
/// held about 690 KiB.
const PER_READER_KIB: u64 = 256;

pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A client with a small receive window that asks for the 1 MiB answer
/// and then reads nothing.
pub(crate) async fn stalled_reader(addr: std::net::SocketAddr) -> TcpStream {
    stalled_reader_with(addr, 4096).await
}

/// [`stalled_reader`] with a receive buffer of `rcvbuf` bytes.
async fn stalled_reader_with(addr: std::net::SocketAddr, rcvbuf: u32) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let req = format!("GET /bytes?n={ANSWER} HTTP/1.1\r\nHost: a\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// The proxy's RSS over 3 s (KiB): by then every origin has sent what
/// the proxy lets it (a loopback origin sends 1 MiB in milliseconds).
pub(crate) async fn peak_rss(pid: u32, from: u64) -> u64 {
    let mut peak = from;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(rss_kib(pid));
    }
    peak
}

/// One answer read whole first, so what the first request allocates once
/// (pools, the allocator's arenas) is in the baseline; then `n` stalled
/// readers: them, and the proxy's RSS before them and at its peak (KiB).
pub(crate) async fn stall_readers(proxy: &Proxy, n: usize) -> (Vec<TcpStream>, u64, u64) {
    let mut warm = stalled_reader(proxy.addr).await;
    assert_eq!(read_answer(&mut warm).await, ANSWER);
    let before = rss_kib(proxy.pid());
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        readers.push(stalled_reader(proxy.addr).await);
    }
    let peak = peak_rss(proxy.pid(), before).await;
    (readers, before, peak)
}

pub(crate) fn assert_bounded(before: u64, peak: u64, readers: usize, what: &str) {
    let per_reader = (peak - before) / readers as u64;
    eprintln!("{what}: RSS {before} KiB before, {peak} KiB peak: {per_reader} KiB each");
    assert!(
        per_reader <= PER_READER_KIB,
        "{readers} {what} of a 1 MiB answer took the proxy from {before} to {peak} KiB \
         ({per_reader} KiB each, more than {PER_READER_KIB}): the answer is buffered in the proxy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_of_a_large_answer_hold_back_the_origin_not_the_proxys_memory() {
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    let (mut readers, before, peak) = stall_readers(&proxy, READERS).await;
    assert_bounded(before, peak, READERS, "stalled HTTP/1.1 readers");

    // Others are still served meanwhile.
    let url = format!("http://{}/v1/covers", proxy.addr);
    assert!(answers(&reqwest::Client::new(), &url).await);
    // And a stalled reader that starts reading gets every byte, in order.
    let mut first = readers.swap_remove(0);
    assert_eq!(read_answer(&mut first).await, ANSWER);
}

/// A client that stops reading inside a chunk leaves the proxy only the
/// chunk's unwritten rest (vendor/README.md part 11), whether the origin
/// speaks HTTP/1 or h2 (each sets the compactor on its own path):
/// `edgesteer_stalled_chunks_compacted_total` counts the shrunk chunks,
/// and a stalled reader that reads again still gets every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_a_stalled_reader_is_inside_shrinks_to_its_rest_from_h1_and_h2_origins() {
    // Where the kernel stops taking a write depends on the client's window,
    // the proxy's send buffer (capped here) and the host's TCP memory: with
    // one window size every reader stops at the same place, a chunk's end
    // or inside it. Eight sizes, 512 B to 64 KiB (here 12 to 14 of the 16
    // stopped at least a page into a chunk), and readers that read a little
    // now and again until a chunk has shrunk, so each read is another stop.
    const STALLED: usize = 16;
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let (h2, _h2_origin) = crate::edge_slow_h2_origin::h2_origin(&wd).await;
    let (h1, _backends) = covergen_on_loopback().await.unwrap();
    for (origin, spec, version) in [("HTTP/1", h1, "HTTP/1.1"), ("h2", h2, "HTTP/2.0")] {
        let args = vec!["--send-buffer".to_string(), "65536".into()];
        let proxy = wd.start_proxy(&spec, true, args).await.unwrap();
        let echo: serde_json::Value = reqwest::get(proxy.url("/v1/covers"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echo["http_version"], version, "{origin} origin: {echo}");
        let mut readers = Vec::with_capacity(STALLED);
        for i in 0..STALLED {
            let s = stalled_reader_with(proxy.addr, 512 << (i % 8)).await;
            readers.push((s, Answer::default()));
        }
        // Stalled, then now and again a little read: each read lets the
        // proxy write again, and stop again somewhere inside a chunk.
        let mut buf = vec![0u8; 16 * 1024];
        let mut shrunk = 0.0;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let m = proxy.metrics().await.unwrap();
            shrunk = metric_value(&m, "edgesteer_stalled_chunks_compacted_total");
            if shrunk >= 1.0 {
                break;
            }
            for (s, got) in &mut readers {
                if let Ok(n) = s.try_read(&mut buf) {
                    got.feed(&buf[..n]);
                }
            }
        }
        assert!(
            shrunk >= 1.0,
            "{origin} origin: {STALLED} slow readers and no chunk shrunk to its rest: {}",
            proxy.metrics().await.unwrap()
        );
        eprintln!("{origin} origin: {shrunk} chunks shrunk to their rest");
        for (mut s, got) in readers {
            assert_eq!(read_rest(&mut s, got).await, ANSWER, "{origin} origin");
        }
    }
}

/// Reads one answer to its end; the body's length, after checking that
/// every byte is the demo backend's `x`.
pub(crate) async fn read_answer(s: &mut TcpStream) -> usize {
    read_rest(s, Answer::default()).await
}

/// Reads the rest of an answer `got` has the start of, as [`read_answer`].
pub(crate) async fn read_rest(s: &mut TcpStream, mut got: Answer) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.body < ANSWER {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("the answer did not finish within 30 s")
            .unwrap();
        assert!(n > 0, "the connection closed after {} body bytes", got.body);
        got.feed(&buf[..n]);
    }
    got.body
}

/// What has arrived of one answer: its head until it is whole, then the
/// count of body bytes, each checked to be the demo backend's `x`.
#[derive(Default)]
pub(crate) struct Answer {
    head: Vec<u8>,
    in_body: bool,
    pub(crate) body: usize,
}

impl Answer {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.in_body {
            self.count(bytes);
            return;
        }
        self.head.extend_from_slice(bytes);
        let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        let text = String::from_utf8_lossy(&self.head[..end]).to_string();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let rest = self.head.split_off(end + 4);
        self.in_body = true;
        self.count(&rest);
    }

    fn count(&mut self, body: &[u8]) {
        self.body += body.len();
        assert!(
            body.iter().all(|&b| b == b'x'),
            "a body byte is not the origin's"
        );
    }
}

/// The same over h2 (h2c to the plaintext listener): each client keeps
/// the protocol's default 64 KiB window and never reads, so the proxy's
/// writes wait on flow control; what waits behind them is bounded too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_h2_readers_are_bounded_the_same_way() {
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    // A first answer read whole, as the baseline (see above).
    let (_warm_conn, mut warm) = h2_stalled_stream(proxy.addr).await;
    let mut got = 0;
    while let Some(chunk) = warm.data().await {
        let chunk = chunk.unwrap();
        got += chunk.len();
        let _ = warm.flow_control().release_capacity(chunk.len());
    }
    assert_eq!(got, ANSWER);
    let before = rss_kib(proxy.pid());

    let mut held = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        held.push(h2_stalled_stream(proxy.addr).await);
    }
    let peak = peak_rss(proxy.pid(), before).await;
    assert_bounded(before, peak, READERS, "stalled h2 readers");
    drop(held);
}

/// An h2 connection (prior knowledge) with one GET of the 1 MiB answer;
/// the connection's task and the answer's body, not read.
async fn h2_stalled_stream(
    addr: std::net::SocketAddr,
) -> (tokio::task::JoinHandle<()>, h2::RecvStream) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(format!("http://a/bytes?n={ANSWER}"))
        .body(())
        .unwrap();
    let (answer, _) = client.send_request(req, true).unwrap();
    let answer = answer.await.unwrap();
    assert_eq!(answer.status(), 200);
    (task, answer.into_body())
}

/// A reader that drains its small window a little at a time makes the
/// proxy queue several chunks behind each write, and write them together
/// (vendor/README.md part 7; writes cut inside a chunk are
/// `pingora_patches`' property test). Through the whole proxy, every byte
/// still arrives once and in order, with a `Content-Length` and chunked:
/// the answer counts `i % 251`, so a byte lost, repeated or reordered
/// shows at its offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_every_byte_once_and_in_order() {
    const LEN: usize = 1024 * 1024;
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let proxy = wd.start_proxy(&spec, true, vec![]).await.unwrap();
    for chunked in [false, true] {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(proxy.addr).await.unwrap();
        let req = format!(
            "GET /bytes?n={LEN}&pattern=1&chunked={} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            u8::from(chunked)
        );
        s.write_all(req.as_bytes()).await.unwrap();
        // Nothing read at first: the answer queues in the proxy up to its
        // buffer, so what follows goes out in batches of chunks.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut wire = Vec::with_capacity(LEN + 64 * 1024);
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
                .await
                .expect("the answer did not finish within 60 s")
                .unwrap();
            if n == 0 {
                break;
            }
            wire.extend_from_slice(&buf[..n]);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let end = wire
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("no end of head");
        let head = String::from_utf8_lossy(&wire[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(
            head.contains("transfer-encoding: chunked"),
            chunked,
            "framing: {head}"
        );
        let raw = &wire[end + 4..];
        let body = if chunked {
            edgesteer_proxy::test_util::dechunk(raw)
        } else {
            raw.to_vec()
        };
        assert_eq!(body.len(), LEN, "chunked: {chunked}");
        if let Some(at) = (0..LEN).find(|&i| body[i] != (i % 251) as u8) {
            panic!(
                "chunked: {chunked}: byte {at} is {}, not {}",
                body[at],
                at % 251
            );
        }
    }
}

/// `ss FLAGS state established FILTER`'s output.
pub(crate) fn ss_established(flags: &str, filter: &str) -> String {
    let out = std::process::Command::new("ss")
        .args([flags, "state", "established", filter])
        .output()
        .expect("ss (iproute2; scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "ss failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The send queue and send buffer (`ss`'s `w` and `tb`, bytes) of the
/// proxy's end of each established connection on `port`.
fn send_queues(port: u16) -> Vec<(u64, u64)> {
    let text = ss_established("-tmnH", &format!("( sport = :{port} )"));
    let field = |mem: &str, key: &str| {
        mem.split(',')
            .find_map(|kv| kv.strip_prefix(key)?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {key} in ss's skmem:({mem})"))
    };
    text.split("skmem:(")
        .skip(1)
        .map(|rest| {
            let mem = &rest[..rest.find(')').unwrap()];
            (field(mem, "w"), field(mem, "tb"))
        })
        .collect()
}

/// `--send-buffer N` caps what the kernel holds for a client that reads
/// slowly: the proxy's socket to a stalled reader keeps a send buffer of
/// 2N (the kernel doubles SO_SNDBUF; N is under the default
/// `net.core.wmem_max`, 212,992, which would clamp it) and queues no
/// more, so the rest of the answer waits behind the pipe's bound, at the
/// origin. Without it the kernel's autotuning lets the socket take the
/// whole 1 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_send_buffer_bounds_what_the_kernel_holds_for_a_stalled_reader() {
    const CAP: u64 = 100_000;
    // Not beside the 200-reader tests: under the host's TCP memory
    // pressure the kernel stops growing autotuned buffers.
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let mut queued = Vec::new();
    for cap in [None, Some(CAP)] {
        let args = cap.map_or(vec![], |c| vec!["--send-buffer".into(), c.to_string()]);
        let proxy = wd.start_proxy(&spec, true, args).await.unwrap();
        let _reader = stalled_reader(proxy.addr).await;
        // Until the queue is past what the capped buffer could hold (or,
        // capped, past half of it): the answer has been offered.
        let port = proxy.addr.port();
        let full = cap.map_or(4 * CAP, |c| c);
        wait_until(Duration::from_secs(10), || async move {
            send_queues(port).iter().any(|&(w, _)| w > full)
        })
        .await;
        let sockets = send_queues(port);
        let (w, tb) = *sockets.iter().max().expect("the stalled reader's socket");
        eprintln!("send buffer cap {cap:?}: queued {w} bytes, send buffer {tb}");
        if cap.is_some() {
            assert_eq!(tb, 2 * CAP, "the socket's send buffer is not the cap");
            assert!(
                w <= tb + 64 * 1024,
                "{w} bytes queued past a {tb}-byte buffer"
            );
        }
        queued.push(w);
    }
    assert!(
        queued[0] > 4 * CAP,
        "without the cap the kernel queued only {} bytes: the comparison shows nothing",
        queued[0]
    );
}
