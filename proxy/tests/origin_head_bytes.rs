//! Vendor patch 8 (vendor/README.md): an origin's response head is kept
//! in bytes of its own size, not in the read buffer it arrived in (4 KiB
//! or more, most of it the start of the body). Pingora's header values
//! point into those bytes and the header lives as long as the request, so
//! the read buffer used to be held by every request in flight.
//!
//! A test binary of its own: it counts the process's live heap bytes
//! through a global allocator (`common/counting.rs`), which tests running
//! beside it would move.

#![allow(clippy::unwrap_used)]
#[path = "common/counting.rs"]
mod counting;

use pingora_core::protocols::http::v1::client::HttpSession;
use tokio::io::AsyncWriteExt;

/// What a session holds once it has read an origin's head, and what
/// dropping the parsed header gives back once the session is gone: the
/// header's maps and the bytes its values are cut from. The answer comes
/// in one read (a 60-byte head and 3,000 bytes of body), so with the
/// read buffer kept, or the values cut from it, more than 4 KiB stays.
#[tokio::test(flavor = "current_thread")]
async fn an_origin_head_is_held_in_bytes_of_its_own_size() {
    const MAX: isize = 2048;
    const BODY_BUFFER: isize = 64 * 1024;
    let (ours, mut origin) = tokio::net::UnixStream::pair().unwrap();
    let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\nX-Origin: a\r\n\r\n".to_vec();
    answer.extend_from_slice(&[b'x'; 3000]);
    origin.write_all(&answer).await.unwrap();

    let stream = pingora_core::protocols::l4::stream::Stream::from(ours);
    let mut session = HttpSession::new(Box::new(stream));
    let before = counting::live();
    let header = session.read_resp_header_parts().await.unwrap();
    // While the request is in flight the session holds the body reader's
    // buffer (Pingora's 64 KiB `BODY_BUFFER_SIZE`, with the 3,000 bytes
    // read past the head copied in), the head and two headers' maps (the
    // session's and this clone): 1,406 bytes over the body buffer, 5,526
    // if the session kept the read buffer it no longer needs.
    let held = counting::live() - before - BODY_BUFFER;
    assert!(
        held < 3 * 1024,
        "the session holds {held} bytes besides its body buffer while the answer is \
         read: it kept the read buffer the head came in"
    );
    let mut body = 0;
    while let Some(chunk) = session.read_body_bytes().await.unwrap() {
        body += chunk.len();
    }
    assert_eq!(body, 3000, "the body read past the head was lost");
    assert_eq!(header.headers["x-origin"], "a");
    drop(session);

    let with_header = counting::live();
    drop(header);
    let freed = with_header - counting::live();
    assert!(
        freed < MAX,
        "a parsed origin head holds {freed} bytes (at most {MAX}): its values are cut \
         from the read buffer, held for the whole request"
    );
}
