#![no_main]
//! Differential: where the intake says a request head ends
//! (`proxy/src/head.rs`, compiled in here as it is in the proxy) against
//! Pingora's own HTTP/1 `read_request` on the same bytes, fed through an
//! in-memory stream that stays open (so Pingora waiting for more shows as
//! a pending read).
//!
//! The intake drops empty lines before a request line (RFC 9112 §2.2);
//! Pingora is given the bytes after them, as the intake hands them over.
//! Allowed to differ: the intake calls a head complete that Pingora
//! refuses as invalid (Pingora answers it 400 at once, without waiting),
//! and the intake refuses as invalid a head Pingora would still wait for
//! (the intake answers 400 at once). Never allowed: one says complete
//! while the other waits for more bytes (a head that escapes the intake's
//! deadline, or a request held back), or the intake refusing a head
//! Pingora would serve.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use libfuzzer_sys::fuzz_target;
use pingora_core::protocols::http::v1::server::HttpSession;
use tokio::io::AsyncWriteExt;

#[allow(dead_code)]
#[path = "../../proxy/src/head.rs"]
mod head;

use head::Head;

#[derive(Debug, PartialEq, Eq)]
enum Pingora {
    Complete,
    Waits,
    Invalid,
}

fn pingora(rt: &tokio::runtime::Runtime, bytes: &[u8]) -> Pingora {
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        if client.write_all(bytes).await.is_err() {
            return Pingora::Invalid;
        }
        let mut session = HttpSession::new(Box::new(server));
        let mut read = pin!(session.read_request());
        // Every byte is already in the stream: one poll reads them all.
        poll_fn(|cx| {
            Poll::Ready(match read.as_mut().poll(cx) {
                Poll::Ready(Ok(Some(_))) => Pingora::Complete,
                Poll::Ready(Ok(None)) => Pingora::Waits,
                Poll::Ready(Err(_)) => Pingora::Invalid,
                Poll::Pending => Pingora::Waits,
            })
        })
        .await
    })
}

thread_local! {
    static RT: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .ok();
}

fuzz_target!(|data: &[u8]| {
    let bytes = &data[head::empty_lines(data)..];
    let ours = head::head_state(bytes);
    let Some(theirs) = RT.with(|rt| rt.as_ref().map(|rt| pingora(rt, bytes))) else {
        return;
    };
    let agree = matches!(
        (ours, &theirs),
        (Head::Complete, Pingora::Complete | Pingora::Invalid)
            | (Head::Partial, Pingora::Waits | Pingora::Invalid)
            | (Head::Invalid, Pingora::Invalid | Pingora::Waits)
    );
    assert!(
        agree,
        "intake says {ours:?}, Pingora {theirs:?} on {:?}",
        String::from_utf8_lossy(bytes)
    );
});
