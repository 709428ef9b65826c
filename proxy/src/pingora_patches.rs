//! Checks of the vendored Pingora patches (vendor/README.md) on what
//! the proxy relies on, through Pingora's public API: Pingora's own
//! tests are not built here (vendor/ is outside the workspace).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora_core::protocols::http::v1::server::HttpSession;
use pingora_core::protocols::http::{HttpTask, ServerSession};
use pingora_core::protocols::Stream;
use pingora_http::ResponseHeader;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::proxy::EdgeProxy;

/// Pingora allocates a request's whole future when the request starts
/// and holds it until the answer is written: 1000 clients reading a
/// large answer slowly hold 1000 of them. The connect state (TCP, TLS,
/// h2 handshake: ~9 KiB) is boxed for the connect only and the custom
/// protocol's path is boxed (part 6), so the future is the proxying
/// state's size, not the connect's; and it keeps no second copy of the
/// sessions it moves into its callees (part 10). Unoptimised (as tests
/// build) it was 15,264 bytes before part 6, 9,104 before part 10 and
/// 6,224 after it; a Pingora upgrade or a hook that grows it fails here.
#[tokio::test]
async fn a_request_future_does_not_carry_the_connect_state() {
    const MAX: usize = 7 * 1024;
    let conf = Arc::new(pingora_core::server::configuration::ServerConf::default());
    let app = Arc::new(pingora_proxy::http_proxy(
        &conf,
        EdgeProxy::new(crate::steer::covergen_for_tests()),
    ));
    let (server, _client) = tokio::net::UnixStream::pair().unwrap();
    let stream: Stream = Box::new(pingora_core::protocols::l4::stream::Stream::from(server));
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    let request = pingora_core::apps::HttpServerApp::process_new_http(
        &app,
        ServerSession::new_http1(stream),
        &shutdown,
    );
    let size = std::mem::size_of_val(&*request);
    assert!(
        size <= MAX,
        "Pingora's request future is {size} bytes (at most {MAX}): held whole by every \
         request in flight; box the state that grew (see print-type-sizes)"
    );
}

/// How an answer's body is framed on the wire.
#[derive(Clone, Copy, Debug)]
enum Framing {
    Length,
    Chunked,
    UntilClose,
}

/// A client connected to a server socket over loopback with 4 KiB buffers
/// (a send buffer on the server's side, a receive buffer on the client's),
/// its request for `/` sent.
async fn small_buffered_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = TcpSocket::new_v4().unwrap();
    listener.set_send_buffer_size(4096).unwrap();
    listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = listener.listen(1).unwrap();
    let client = TcpSocket::new_v4().unwrap();
    client.set_recv_buffer_size(4096).unwrap();
    let mut client = client
        .connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    (client, server)
}

/// Bytes whose buffer says when it is freed.
struct Flagged {
    data: Vec<u8>,
    freed: Arc<AtomicBool>,
}

impl AsRef<[u8]> for Flagged {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Flagged {
    fn drop(&mut self) {
        self.freed.store(true, Ordering::SeqCst);
    }
}

/// A server session that has read a client's request over small buffers
/// (`small_buffered_pair`), with the proxy's compactor set; a body of `len`
/// counting bytes; that body as a chunk whose buffer says when it is freed;
/// and the flag it sets.
async fn stalling_session(
    len: usize,
) -> (
    tokio::net::TcpStream,
    HttpSession,
    Vec<u8>,
    Bytes,
    Arc<AtomicBool>,
) {
    let (client, server) = small_buffered_pair().await;
    let mut session = HttpSession::new(Box::new(
        pingora_core::protocols::l4::stream::Stream::from(server),
    ));
    session.read_request().await.unwrap();
    session.set_body_compactor(Some(pingora_proxy::pipe_budget::compact_chunk));
    let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let freed = Arc::new(AtomicBool::new(false));
    let chunk = Bytes::from_owner(Flagged {
        data: body.clone(),
        freed: freed.clone(),
    });
    (client, session, body, chunk, freed)
}

/// Writes `tasks` one at a time, each as the proxy's pipe hands a lone task
/// over (`response_duplex_vec` with one task).
fn write_one_by_one(mut session: HttpSession, tasks: Vec<HttpTask>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for task in tasks {
            session.response_duplex_vec(vec![task]).await.unwrap();
        }
    })
}

/// Waits up to 5 s for `freed` while the client reads nothing; whether it
/// was freed.
async fn freed_while_stalled(freed: &AtomicBool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !freed.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    freed.load(Ordering::SeqCst)
}

/// Reads the answer until `done` says the wire holds all of it (or the
/// connection closes), then waits for the writer; returns the wire's bytes
/// after the head.
async fn read_answer(
    client: &mut tokio::net::TcpStream,
    writer: tokio::task::JoinHandle<()>,
    done: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let mut wire = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 16 * 1024];
        while !done(&wire) {
            let n = client.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            wire.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .expect("the rest of the answer did not arrive");
    tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .unwrap()
        .unwrap();
    let end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    wire.split_off(end + 4)
}

/// Part 11: when a client stops reading in the middle of a chunk, the
/// chunk's read buffer is freed and only its unwritten rest is kept, in a
/// buffer of its size; the client still gets every byte once and in order.
/// (One chunk on its own takes the single-task path, `response_duplex`.)
#[tokio::test]
async fn a_chunk_a_stalled_client_is_inside_is_freed_and_its_rest_still_arrives() {
    const LEN: usize = 256 * 1024;
    let (mut client, session, body, chunk, freed) = stalling_session(LEN).await;
    let mut head = ResponseHeader::build(200, None).unwrap();
    head.insert_header("Content-Length", LEN).unwrap();
    let tasks = vec![
        HttpTask::Header(Box::new(head), false),
        HttpTask::Body(Some(chunk), true),
    ];
    let writer = write_one_by_one(session, tasks);
    // The client reads nothing: the write stalls inside the chunk.
    let was_freed = freed_while_stalled(&freed).await;
    assert!(
        !writer.is_finished(),
        "the write ended although the client read nothing"
    );
    assert!(
        was_freed,
        "a stalled client's chunk kept its whole buffer: it was not shrunk to its rest"
    );
    let got = read_answer(&mut client, writer, |wire| {
        wire.windows(4)
            .position(|w| w == b"\r\n\r\n")
            .is_some_and(|end| wire.len() - end - 4 >= LEN)
    })
    .await;
    assert_eq!(got.len(), LEN, "the answer's length on the wire");
    let first_bad = (0..LEN).find(|&i| got[i] != body[i]);
    assert_eq!(first_bad, None, "the answer's bytes on the wire");
}

/// Part 11 with the pipe's budget, as the proxy runs it: a chunk charged to
/// the budget, written with chunked framing to a client that reads nothing.
/// Its read buffer is freed while the write waits, its rest keeps the whole
/// charge (the next read from the origin still waits), the client then gets
/// every byte, and once the rest is written the whole charge comes back.
#[tokio::test]
async fn a_charged_chunk_a_stalled_client_is_inside_keeps_its_charge_not_its_buffer() {
    use pingora_proxy::pipe_budget::PipeBudget;
    const LEN: usize = 64 * 1024;
    let mut options = pingora_core::upstreams::peer::PeerOptions::new();
    options.response_buffer_limit = Some(2 * LEN);
    let budget = PipeBudget::for_h1_peer(Some(&options)).unwrap();
    let (mut client, session, body, chunk, freed) = stalling_session(LEN).await;
    let grant = budget.grant(usize::MAX).await.unwrap();
    assert_eq!(grant.len(), LEN, "the whole budget for the first read");
    let task = budget
        .charge_granted(HttpTask::Body(Some(chunk), false), grant)
        .await
        .unwrap();
    let mut head = ResponseHeader::build(200, None).unwrap();
    head.insert_header("Transfer-Encoding", "chunked").unwrap();
    let tasks = vec![
        HttpTask::Header(Box::new(head), false),
        task,
        HttpTask::Body(None, true),
    ];
    let writer = write_one_by_one(session, tasks);
    let was_freed = freed_while_stalled(&freed).await;
    assert!(!writer.is_finished(), "the write ended unread");
    assert!(
        was_freed,
        "a stalled client's charged chunk kept its read buffer (chunked framing)"
    );
    let waited = tokio::time::timeout(Duration::from_millis(50), budget.grant(usize::MAX)).await;
    assert!(
        waited.is_err(),
        "the stalled chunk's rest gave its charge back: the origin would be read further ahead"
    );
    let raw = read_answer(&mut client, writer, |wire| wire.ends_with(b"0\r\n\r\n")).await;
    assert!(
        raw.ends_with(b"0\r\n\r\n"),
        "the connection closed before the last chunk"
    );
    let got = crate::test_util::dechunk(&raw);
    assert_eq!(got.len(), LEN, "the answer's length after dechunking");
    assert!(got == body, "the answer's bytes after dechunking");
    let again = tokio::time::timeout(Duration::from_secs(2), budget.grant(usize::MAX))
        .await
        .expect("the written rest kept its charge")
        .unwrap();
    assert_eq!(
        again.len(),
        LEN,
        "the written rest gave back less than its charge"
    );
}

/// What a chunk holds (its budget's charge, an h2 frame's window) is given
/// back when its last reference drops, or taken over by its copy
/// (`held::take_holds`, as `compact_chunk` does): given back only when
/// what was taken drops, and the catch disarmed after, so a later chunk
/// gives back at once. A chunk with another reference gives nothing yet,
/// a rest compacted again keeps what the first rest held, and chunks
/// written to a TLS client keep theirs together until the flush.
#[test]
fn what_a_chunk_holds_is_given_back_or_taken_over_by_its_copy() {
    use pingora_core::protocols::http::held;
    use std::sync::atomic::AtomicUsize;
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    /// Bytes whose owner gives back two holds as it drops.
    struct Owner(Option<(Counted, Counted)>);
    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            b"abc"
        }
    }
    impl Drop for Owner {
        fn drop(&mut self) {
            if let Some((a, b)) = self.0.take() {
                held::give_back(a);
                held::give_back(b);
            }
        }
    }
    let given = Arc::new(AtomicUsize::new(0));
    let chunk = || {
        let holds = (Counted(given.clone()), Counted(given.clone()));
        Bytes::from_owner(Owner(Some(holds)))
    };
    let count = || given.load(Ordering::SeqCst);

    drop(chunk());
    assert_eq!(count(), 2, "a dropped chunk kept what it held");

    let holds = held::take_holds(chunk());
    assert_eq!(holds.len(), 2, "the copy did not take over both holds");
    assert_eq!(count(), 2, "given back while taken over");
    drop(holds);
    assert_eq!(count(), 4, "what was taken over was not given back");
    drop(chunk());
    assert_eq!(count(), 6, "the catch stayed armed after take_holds");

    let shared = chunk();
    let other = shared.clone();
    assert!(
        held::take_holds(shared).is_empty(),
        "taken from a chunk still referenced"
    );
    assert_eq!(count(), 6);
    drop(other);
    assert_eq!(count(), 8);

    // A rest compacted again (the client read some of it, then stalled
    // again) hands its holds on to the new rest.
    use pingora_proxy::pipe_budget::compact_chunk;
    let twice = compact_chunk(compact_chunk(chunk()));
    assert_eq!(count(), 8, "a rest compacted again gave back what it held");
    assert_eq!(&twice[..], b"abc");
    drop(twice);
    assert_eq!(count(), 10);

    // Written chunks over TLS (part 15): each chunk's holds join one
    // `Holds` until the flush, then all are given back, and the catch is
    // disarmed between chunks.
    let mut flushing = held::Holds::default();
    held::take_holds_into(&mut flushing, chunk());
    held::take_holds_into(&mut flushing, chunk());
    assert_eq!(flushing.len(), 4, "a written chunk's holds were not kept");
    assert_eq!(count(), 10, "given back before the flush");
    drop(chunk());
    assert_eq!(count(), 12, "the catch stayed armed after take_holds_into");
    flushing.give_back_all();
    assert!(flushing.is_empty());
    assert_eq!(count(), 16, "the flush did not give back what was kept");
}

/// Writes `batches` of body chunks as one answer through Pingora's
/// HTTP/1 server session (`response_duplex_vec`, as the proxy's pipe
/// does) to a client that reads slowly over a socket with a 4 KiB send
/// buffer, so writes stop wherever the buffer fills, inside chunks.
/// Returns the bytes the client got after the head, and the head.
async fn serve_in_batches(framing: Framing, batches: Vec<Vec<Bytes>>) -> (String, Vec<u8>) {
    let (mut client, server) = small_buffered_pair().await;
    let reader = tokio::spawn(async move {
        let mut wire = Vec::new();
        let mut buf = [0u8; 3000];
        loop {
            let n = client.read(&mut buf).await.unwrap();
            if n == 0 {
                return wire;
            }
            wire.extend_from_slice(&buf[..n]);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let mut session = HttpSession::new(Box::new(
        pingora_core::protocols::l4::stream::Stream::from(server),
    ));
    session.read_request().await.unwrap();
    // the proxy's compactor (part 11): writes stall inside chunks, which shrink to their rest
    session.set_body_compactor(Some(pingora_proxy::pipe_budget::compact_chunk));
    let total: usize = batches.iter().flatten().map(Bytes::len).sum();
    let mut head = ResponseHeader::build(200, None).unwrap();
    match framing {
        Framing::Length => head.insert_header("Content-Length", total).unwrap(),
        Framing::Chunked => head.insert_header("Transfer-Encoding", "chunked").unwrap(),
        Framing::UntilClose => head.insert_header("Connection", "close").unwrap(),
    }
    let mut tasks = vec![HttpTask::Header(Box::new(head), false)];
    let last = batches.len() - 1;
    for (i, batch) in batches.into_iter().enumerate() {
        tasks.extend(batch.into_iter().map(|c| HttpTask::Body(Some(c), false)));
        if i == last {
            tasks.push(HttpTask::Done);
        }
        session
            .response_duplex_vec(std::mem::take(&mut tasks))
            .await
            .unwrap();
    }
    drop(session);
    let wire = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .unwrap()
        .unwrap();
    let end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&wire[..end]).to_ascii_lowercase();
    (head, wire[end + 4..].to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Part 7: a batch of body chunks is written with vectored writes
    /// instead of a copy. However the socket cuts the writes, the client
    /// gets every byte once and in order, framed as announced.
    #[test]
    fn a_batch_of_chunks_arrives_whole_however_the_writes_are_cut(
        framing in prop_oneof![Just(Framing::Length), Just(Framing::Chunked), Just(Framing::UntilClose)],
        batches in proptest::collection::vec(
            proptest::collection::vec(1usize..20_000, 1..5), 1..4),
        seed in any::<u8>(),
    ) {
        let mut n = seed;
        let mut sent = Vec::new();
        let batches: Vec<Vec<Bytes>> = batches
            .into_iter()
            .map(|sizes| {
                sizes
                    .into_iter()
                    .map(|len| {
                        let chunk: Vec<u8> = (0..len)
                            .map(|_| {
                                n = n.wrapping_add(1) % 251;
                                n
                            })
                            .collect();
                        sent.extend_from_slice(&chunk);
                        Bytes::from(chunk)
                    })
                    .collect()
            })
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (head, raw) = rt.block_on(serve_in_batches(framing, batches));
        prop_assert!(head.starts_with("http/1.1 200"), "{}", head);
        let body = match framing {
            Framing::Chunked => crate::test_util::dechunk(&raw),
            Framing::Length | Framing::UntilClose => raw,
        };
        prop_assert_eq!(body.len(), sent.len(), "{:?}", framing);
        let first_bad = (0..sent.len()).find(|&i| body[i] != sent[i]);
        prop_assert_eq!(first_bad, None, "{:?}", framing);
    }
}
