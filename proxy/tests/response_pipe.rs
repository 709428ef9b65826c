//! Vendor patch 1, as revised by part 9 (vendor/README.md): with a
//! response buffer limit, room in the request's pipe is taken before each
//! read of an HTTP/1 origin's body, the read is sized to it, and the read
//! buffer itself becomes the body chunk (no copy). A client that keeps up
//! gets reads of half the limit; a slow one holds no more than the budget.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use pingora_core::protocols::http::v1::client::HttpSession;
use pingora_core::protocols::http::HttpTask;
use pingora_core::upstreams::peer::{HttpPeer, PeerOptions};
use pingora_proxy::pipe_budget::{Grant, PipeBudget};
use tokio::io::AsyncWriteExt;

const LIMIT: usize = 32 * 1024;

fn options(limit: Option<usize>) -> PeerOptions {
    let mut options = PeerOptions::new();
    options.response_buffer_limit = limit;
    options
}

/// A client session on one end of a socket pair, with the peer options of
/// `limit`, and the origin's end.
fn session(limit: Option<usize>) -> (HttpSession, tokio::net::UnixStream) {
    let (ours, origin) = tokio::net::UnixStream::pair().unwrap();
    let mut peer = HttpPeer::new("127.0.0.1:1", false, String::new());
    peer.options = options(limit);
    let stream = pingora_core::protocols::l4::stream::Stream::from(ours);
    (
        HttpSession::new_with_options(Box::new(stream), &peer),
        origin,
    )
}

/// The capacity of the allocation `b` is the whole of (it must be the only
/// reference): a copy of the bytes has exactly their length, a read buffer
/// handed out whole has the size of the read.
fn capacity(b: Bytes) -> usize {
    b.try_into_mut().unwrap().capacity()
}

/// What the last read brought, for a grant as large as the room allows.
const FULL: usize = usize::MAX;

/// A grant, or a failure naming what held the room (a wait that never ends
/// would hang the suite instead of failing it).
async fn granted(budget: &PipeBudget, what: &str) -> Grant {
    match tokio::time::timeout(Duration::from_secs(2), budget.grant(FULL)).await {
        Ok(grant) => grant.unwrap(),
        Err(_) => panic!("no room for a read: {what}"),
    }
}

/// A body chunk that is not the last, as the upstream half reads one.
fn chunk(n: usize) -> HttpTask {
    HttpTask::Body(Some(Bytes::from(vec![b'x'; n])), false)
}

/// The origin sends `bytes`; the session reads the body with a read size
/// of `size`, and `got` collects what it returned.
async fn read_sent(
    session: &mut HttpSession,
    origin: &mut tokio::net::UnixStream,
    bytes: &[u8],
    size: usize,
    got: &mut Vec<u8>,
) -> Bytes {
    origin.write_all(bytes).await.unwrap();
    session.set_body_read_size(size);
    let chunk = session.read_body_bytes().await.unwrap().unwrap();
    got.extend_from_slice(&chunk);
    chunk
}

#[tokio::test(flavor = "current_thread")]
async fn a_length_delimited_body_is_read_at_the_size_asked_into_buffers_handed_out_whole() {
    let (mut session, mut origin) = session(Some(LIMIT));
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n".to_vec();
    wire.extend_from_slice(&body[..100]);
    origin.write_all(&wire).await.unwrap();
    session.read_response().await.unwrap();
    let mut got = Vec::new();

    // The 100 bytes that came with the head: a buffer of exactly their size.
    assert!(session.next_read_is_body());
    let first = session.read_body_bytes().await.unwrap().unwrap();
    assert_eq!(first.len(), 100);
    got.extend_from_slice(&first);
    assert_eq!(
        capacity(first),
        100,
        "the bytes read with the head were copied into a larger buffer"
    );

    // 3,000 bytes waiting, a read of up to 4,096: the chunk is that read's buffer.
    let second = read_sent(&mut session, &mut origin, &body[100..3100], 4096, &mut got).await;
    assert_eq!(second.len(), 3000);
    assert_eq!(
        capacity(second),
        4096,
        "the chunk is a copy of the read buffer, not the buffer itself"
    );

    // 1,000 bytes waiting, a read of up to 4,096: less than half of the
    // buffer, so the bytes are copied out and the buffer is not held.
    let short = read_sent(&mut session, &mut origin, &body[3100..4100], 4096, &mut got).await;
    assert_eq!(short.len(), 1000);
    assert_eq!(capacity(short), 1000, "a short read holds its whole buffer");

    // The rest waiting, a read of 1,000: no more is taken from the socket.
    let third = read_sent(&mut session, &mut origin, &body[4100..], 1000, &mut got).await;
    assert_eq!(
        third.len(),
        1000,
        "the read took more than it was given room for"
    );

    session.set_body_read_size(LIMIT / 2);
    while let Some(b) = session.read_body_bytes().await.unwrap() {
        assert!(b.len() <= LIMIT / 2);
        got.extend_from_slice(&b);
    }
    assert!(!session.next_read_is_body());
    assert_eq!(got, body, "the body arrived changed");
    assert_eq!(session.body_bytes_received(), 10_000);
}

#[tokio::test(flavor = "current_thread")]
async fn a_chunked_body_is_still_parsed_and_copied_out_whole() {
    let (mut session, mut origin) = session(Some(LIMIT));
    origin
        .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    session.read_response().await.unwrap();
    let mut got = Vec::new();
    session.set_body_read_size(4096);
    got.extend_from_slice(&session.read_body_bytes().await.unwrap().unwrap());
    // a chunk head split across reads: the parser's state is in the buffer
    origin.write_all(b"6\r\n wor").await.unwrap();
    session.set_body_read_size(4096);
    got.extend_from_slice(&session.read_body_bytes().await.unwrap().unwrap());
    origin.write_all(b"ld\r\n0\r\n\r\n").await.unwrap();
    while let Some(b) = session.read_body_bytes().await.unwrap() {
        got.extend_from_slice(&b);
    }
    assert_eq!(got, b"hello world");
}

#[tokio::test(flavor = "current_thread")]
async fn a_chunk_head_longer_than_the_next_read_still_parses() {
    let (mut session, mut origin) = session(Some(LIMIT));
    origin
        .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    session.read_response().await.unwrap();
    // A large read brings a chunk and the start of the next one's head: a
    // 3,000-byte extension, not yet ended.
    let mut wire = b"5\r\nhello\r\n6;e=".to_vec();
    wire.extend_from_slice(&[b'x'; 3000]);
    origin.write_all(&wire).await.unwrap();
    session.set_body_read_size(8192);
    let mut got = session.read_body_bytes().await.unwrap().unwrap().to_vec();
    // The next read is granted less than the partial head already holds.
    origin.write_all(b"\r\n world\r\n0\r\n\r\n").await.unwrap();
    session.set_body_read_size(1024);
    while let Some(b) = session.read_body_bytes().await.unwrap() {
        got.extend_from_slice(&b);
    }
    assert_eq!(got, b"hello world");
}

#[tokio::test(flavor = "current_thread")]
async fn a_read_cancelled_while_it_waits_leaves_no_larger_buffer_behind() {
    let (mut session, mut origin) = session(Some(LIMIT));
    origin
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n")
        .await
        .unwrap();
    session.read_response().await.unwrap();
    // A read of 4,096 waits for the origin and is dropped (the proxy's
    // select! does this when the request side wins the race).
    session.set_body_read_size(4096);
    let waited = tokio::time::timeout(Duration::from_millis(50), session.read_body_bytes()).await;
    assert!(
        waited.is_err(),
        "the origin sent nothing, yet a read finished"
    );
    // The next read is granted 6,000: its buffer, and so the chunk, is
    // that size, not the old buffer grown (to 8,192).
    origin.write_all(&[b'z'; 5000]).await.unwrap();
    session.set_body_read_size(6000);
    let b = session.read_body_bytes().await.unwrap().unwrap();
    assert_eq!(b.len(), 5000);
    assert_eq!(
        capacity(b),
        6000,
        "the chunk's buffer is larger than the read it was charged for"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_limit_body_bytes_are_copied_as_upstream_pingora_does() {
    let (mut session, mut origin) = session(None);
    origin
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n")
        .await
        .unwrap();
    session.read_response().await.unwrap();
    origin.write_all(&[b'y'; 3000]).await.unwrap();
    let b = session.read_body_bytes().await.unwrap().unwrap();
    assert_eq!(b.len(), 3000);
    assert_eq!(capacity(b), 3000);
}

#[tokio::test(flavor = "current_thread")]
async fn a_read_is_granted_all_the_room_up_to_half_the_limit() {
    let budget = PipeBudget::for_h1_peer(Some(&options(Some(LIMIT)))).unwrap();
    let grant = granted(&budget, "a new budget").await;
    assert_eq!(
        grant.len(),
        LIMIT / 2,
        "a client that keeps up gets reads of half the limit"
    );
    // A chunk in the pipe keeps its grant: the next read waits for room.
    let in_pipe = budget
        .charge_granted(chunk(grant.len()), grant)
        .await
        .unwrap();
    let mut next = Box::pin(budget.grant(FULL));
    let waited = tokio::time::timeout(Duration::from_millis(50), &mut next).await;
    assert!(
        waited.is_err(),
        "a read was granted room a chunk in the pipe still holds"
    );
    // Once the chunk is written (dropped), the waiting read gets all of it.
    drop(in_pipe);
    let next = tokio::time::timeout(Duration::from_secs(2), next).await;
    let next = next.expect("the waiting read was not given the room a written chunk freed");
    assert_eq!(
        next.unwrap().len(),
        LIMIT / 2,
        "a written chunk kept its room"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_read_takes_the_room_left_but_waits_for_at_least_a_page() {
    let budget = PipeBudget::for_h1_peer(Some(&options(Some(LIMIT)))).unwrap();
    // 10,000 bytes in the pipe: the next read may take the 6,384 left.
    let held = budget.charge(chunk(10_000)).await.unwrap();
    let grant = granted(&budget, "6,384 bytes free").await;
    assert_eq!(grant.len(), LIMIT / 2 - 10_000);
    drop((held, grant));
    // 1,000 bytes free: less than a page, so the read waits.
    let held = budget.charge(chunk(LIMIT / 2 - 1000)).await.unwrap();
    let mut next = Box::pin(budget.grant(FULL));
    let waited = tokio::time::timeout(Duration::from_millis(50), &mut next).await;
    assert!(
        waited.is_err(),
        "a read was granted less than a page of room"
    );
    drop(held);
    let next = tokio::time::timeout(Duration::from_secs(2), next).await;
    let next = next.expect("the waiting read was not given the room a dropped chunk freed");
    assert_eq!(next.unwrap().len(), LIMIT / 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_chunk_keeps_its_buffers_room_and_a_short_one_only_its_length() {
    let budget = PipeBudget::for_h1_peer(Some(&options(Some(LIMIT)))).unwrap();
    // Copied out of a read that filled less than half its buffer: its length.
    let short = budget.charge_granted(chunk(1000), granted(&budget, "start").await);
    let short = short.await.unwrap();
    let next = granted(&budget, "a short chunk held its whole grant").await;
    assert_eq!(
        next.len(),
        LIMIT / 2 - 1000,
        "a chunk copied out of a short read held more room than its bytes"
    );
    drop((short, next));
    // Half the buffer or more: the chunk is the buffer, and keeps all of it.
    let half = budget.charge_granted(chunk(LIMIT / 4), granted(&budget, "start").await);
    let half = half.await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(50), budget.grant(FULL)).await;
    assert!(
        waited.is_err(),
        "a chunk that is its read's buffer gave part of it back"
    );
    drop(half);
}

#[tokio::test(flavor = "current_thread")]
async fn reads_grow_while_they_fill_and_start_at_a_page() {
    let budget = PipeBudget::for_h1_peer(Some(&options(Some(LIMIT)))).unwrap();
    // The first read of a body (and after a trickle): a page, so a
    // connection waiting on a quiet origin waits with a small buffer.
    let first = tokio::time::timeout(Duration::from_secs(2), budget.grant(0)).await;
    assert_eq!(
        first.unwrap().unwrap().len(),
        4096,
        "a first read was not a page"
    );
    // Twice what the last read brought, up to half the limit.
    let next = tokio::time::timeout(Duration::from_secs(2), budget.grant(5000)).await;
    assert_eq!(
        next.unwrap().unwrap().len(),
        10_000,
        "a read did not grow with the last"
    );
    let full = tokio::time::timeout(Duration::from_secs(2), budget.grant(12_000)).await;
    assert_eq!(full.unwrap().unwrap().len(), LIMIT / 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_chunk_larger_than_its_grant_is_charged_its_length() {
    let budget = PipeBudget::for_h1_peer(Some(&options(Some(LIMIT)))).unwrap();
    // A chunked body's chunk parsed out of what an earlier, larger read
    // brought: 10,000 bytes under a grant of a page.
    let page = tokio::time::timeout(Duration::from_secs(2), budget.grant(0)).await;
    let page = page.unwrap().unwrap();
    assert_eq!(page.len(), 4096);
    let big = tokio::time::timeout(
        Duration::from_secs(2),
        budget.charge_granted(chunk(10_000), page),
    );
    let big = big
        .await
        .expect("the chunk waited for room that was free")
        .unwrap();
    let rest = granted(&budget, "the chunk took more than its length").await;
    assert_eq!(
        rest.len(),
        LIMIT / 2 - 10_000,
        "a chunk larger than its grant was charged only the grant"
    );
    drop((big, rest));
}

#[tokio::test(flavor = "current_thread")]
async fn the_last_chunk_and_other_tasks_give_their_grant_back() {
    let budget = PipeBudget::for_h1_peer(Some(&options(Some(LIMIT)))).unwrap();
    let last = HttpTask::Body(Some(Bytes::from_static(b"end")), true);
    let last = budget.charge_granted(last, granted(&budget, "start").await);
    let last = last.await.unwrap();
    let again = granted(&budget, "the last chunk of a body held it").await;
    assert_eq!(
        again.len(),
        LIMIT / 2,
        "the last chunk of a body held room in the pipe"
    );
    drop(again);
    let done = budget.charge_granted(HttpTask::Done, granted(&budget, "start").await);
    let done = done.await.unwrap();
    let again = granted(&budget, "a task with no body held it").await;
    assert_eq!(
        again.len(),
        LIMIT / 2,
        "a task with no body held room in the pipe"
    );
    drop((last, done, again));
}

/// Bytes whose buffer says when it is freed.
struct Flagged {
    data: Vec<u8>,
    freed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AsRef<[u8]> for Flagged {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Flagged {
    fn drop(&mut self) {
        self.freed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_stalled_chunk_shrunk_to_its_rest_frees_its_buffer_and_keeps_its_whole_charge() {
    use bytes::Buf;
    let budget = PipeBudget::for_h1_peer(Some(&options(Some(LIMIT)))).unwrap();
    let freed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let read: Vec<u8> = (0..LIMIT / 2).map(|i| (i % 251) as u8).collect();
    let expected = read[LIMIT / 2 - 1000..].to_vec();
    let buffer = Bytes::from_owner(Flagged {
        data: read,
        freed: freed.clone(),
    });
    let task = HttpTask::Body(Some(buffer), false);
    let task = budget.charge_granted(task, granted(&budget, "start").await);
    let HttpTask::Body(Some(mut chunk), false) = task.await.unwrap() else {
        panic!("a body chunk came back as another task");
    };
    // The client took all but the last 1000 bytes, then stopped reading.
    chunk.advance(LIMIT / 2 - 1000);
    let rest = pingora_proxy::pipe_budget::compact_chunk(chunk);
    assert_eq!(
        &rest[..],
        &expected[..],
        "the rest is not the unwritten bytes"
    );
    assert!(
        freed.load(std::sync::atomic::Ordering::SeqCst),
        "the chunk's read buffer outlived its compaction"
    );
    let waited = tokio::time::timeout(Duration::from_millis(50), budget.grant(FULL)).await;
    assert!(
        waited.is_err(),
        "compacting a stalled chunk gave its room back: the origin would be read further ahead"
    );
    drop(rest);
    let next = granted(&budget, "the compacted rest kept its charge once dropped").await;
    assert_eq!(
        next.len(),
        LIMIT / 2,
        "the compacted rest gave back less than the chunk's charge"
    );
    // An uncharged chunk (the last of a body) is copied the same way.
    let last = Bytes::from(vec![7u8; 5000]).slice(4000..);
    assert_eq!(
        &pingora_proxy::pipe_budget::compact_chunk(last)[..],
        &[7u8; 1000][..]
    );
}
