//! The intake's unit tests: head classification, which bodies are read
//! whole, and whole connections driven over an in-memory stream with the
//! clock paused (the head deadline for any bytes, trickled any way).

use super::*;
use proptest::prelude::*;

fn rules(buffer: usize) -> Rules {
    Rules {
        buffer_body_bytes: buffer,
        ..Rules::new(&DownstreamLimits::default())
    }
}

#[test]
fn heads_are_told_apart() {
    assert_eq!(
        head_state(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Head::Complete
    );
    assert_eq!(head_state(b"GET / HTTP/1.1\nHost: a\n\n"), Head::Complete);
    assert_eq!(head_state(b"GET / HTTP/1.1\r\nHost: a\r\n"), Head::Partial);
    assert_eq!(head_state(b"GE"), Head::Partial);
    // A TLS ClientHello on the plaintext port.
    assert_eq!(head_state(&[0x16, 0x03, 0x01, 0x02, 0x00]), Head::Invalid);
    assert_eq!(head_state(b"GET / HTTP/9.1\r\n"), Head::Invalid);
    // A target Pingora may still escape and accept: waited for.
    assert_eq!(head_state(b"GET /a\"b HTTP/1.1\r\n"), Head::Partial);
    assert_eq!(head_state(b"G\"T / HTTP/1.1\r\n"), Head::Invalid);
}

/// A head trickled a byte at a time is parsed once per line, not once per
/// byte (which made its cost grow with the square of its size); it is
/// still told complete, or invalid, when the line that decides it ends.
#[test]
fn a_trickled_head_is_parsed_once_per_line() {
    let head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Long: {}\r\nX-More: b\r\n\r\n",
        "v".repeat(20_000)
    );
    let mut j = Judged::default();
    let mut states = Vec::new();
    for n in 1..=head.len() {
        states.push(j.state(&head.as_bytes()[..n]));
    }
    assert_eq!(states.last(), Some(&Head::Complete));
    assert!(states[..states.len() - 1]
        .iter()
        .all(|s| *s == Head::Partial));
    assert_eq!(j.parses, 1 + 5, "the first byte, then once per line end");
    // A bad byte mid-line is refused when its line ends.
    let bad = b"GET / HTTP/1.1\r\nHo\x01st: a\r\n";
    let mut j = Judged::default();
    let last = (1..=bad.len()).map(|n| j.state(&bad[..n])).last();
    assert_eq!(last, Some(Head::Invalid));
}

#[test]
fn only_small_declared_bodies_are_buffered() {
    let post = |headers: &str| format!("POST /x HTTP/1.1\r\n{headers}\r\n").into_bytes();
    let r = rules(1024);
    let b = post("Content-Length: 10\r\n");
    assert_eq!(body_to_buffer(&b, &r), Some((b.len(), 10)));
    let b = post("content-length: 1025\r\n");
    assert_eq!(body_to_buffer(&b, &r), None);
    let b = post("Content-Length: 10\r\nExpect: 100-continue\r\n");
    assert_eq!(body_to_buffer(&b, &r), None);
    let b = post("Content-Length: 10\r\nTransfer-Encoding: chunked\r\n");
    assert_eq!(body_to_buffer(&b, &r), None);
    let b = post("Content-Length: 10\r\nContent-Length: 10\r\n");
    assert_eq!(body_to_buffer(&b, &r), None);
    let b = post("Content-Length: 0\r\n");
    assert_eq!(body_to_buffer(&b, &r), None);
    let b = post("Content-Length: 10\r\n");
    assert_eq!(body_to_buffer(&b, &rules(0)), None);
    let b = b"GET /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n".to_vec();
    assert_eq!(body_to_buffer(&b, &r), None);
}

proptest! {
    /// Any bytes at all: an answer, never a panic, and a body to
    /// buffer is never over the limit.
    #[test]
    fn any_bytes_get_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        // A complete head is one httparse parses whole (after escaping,
        // as Pingora does) or one ended by a blank line after a request
        // line; a partial one parses as partial. Asserted against
        // httparse directly, not restated from the intake.
        let state = head_state(&bytes);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = httparse::Request::new(&mut headers).parse(&bytes);
        match state {
            Head::Partial => prop_assert!(
                matches!(parsed, Ok(httparse::Status::Partial) | Err(httparse::Error::Token | httparse::Error::Version)),
                "partial, but httparse says {:?}", parsed
            ),
            Head::Invalid => prop_assert!(parsed.is_err(), "invalid, but httparse parses it: {:?}", parsed),
            // Whole as parsed, or as parsed once the target is escaped,
            // or ended by a blank line (and refused by Pingora at once).
            Head::Complete => prop_assert!(
                matches!(parsed, Ok(httparse::Status::Complete(_)) | Err(httparse::Error::Token | httparse::Error::Version))
                    || memchr::memmem::find(&bytes, b"\r\n\r\n").is_some(),
                "complete, but httparse says {:?}", parsed
            ),
        }
        // A body is buffered only for a whole head with one length.
        if let Some((head, len)) = body_to_buffer(&bytes, &rules(300)) {
            prop_assert!(len > 0 && len <= 300);
            prop_assert!(matches!(parsed, Ok(httparse::Status::Complete(n)) if n == head));
        }
    }

    /// A valid head cut anywhere is still arriving (never refused as
    /// garbage), and whole it is complete.
    #[test]
    fn a_valid_head_cut_anywhere_is_still_arriving(
        method in "(GET|POST|PUT|DELETE|OPTIONS)",
        path in "/[a-z0-9/._~-]{0,20}",
        headers in proptest::collection::vec(("[A-Za-z-]{1,10}", "[!-~]([ -~]{0,18}[!-~])?"), 0..8),
        cut in any::<proptest::sample::Index>(),
    ) {
        let lines: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
        let head = format!("{method} {path} HTTP/1.1\r\n{lines}\r\n");
        let head = head.as_bytes();
        prop_assert_eq!(head_state(head), Head::Complete);
        let cut = cut.index(head.len());
        prop_assert_eq!(head_state(&head[..cut]), Head::Partial, "cut at {}", cut);
    }
}

/// Runs one connection's wait for its first request over an in-memory
/// stream: `chunks` are written with the given pauses, then the writer
/// stays open. Returns what the intake decided and when (clock paused, so
/// the times are exact).
async fn connection(chunks: Vec<(u64, Vec<u8>)>, head_timeout: Duration) -> (Intake, Duration) {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let writer = tokio::spawn(async move {
        for (pause_ms, bytes) in chunks {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            if client.write_all(&bytes).await.is_err() {
                return;
            }
        }
        // Open, silent: only a deadline can end the wait now.
        std::future::pending::<()>().await;
    });
    let limits = DownstreamLimits {
        head_timeout,
        ..DownstreamLimits::default()
    };
    let rules = Rules::new(&limits);
    let start = Instant::now();
    let by = start + head_timeout;
    let mut stream: Stream = Box::new(server);
    let timer = std::pin::pin!(tokio::time::sleep_until(by));
    let got = next_request(
        &mut stream,
        Wait::First { by, h2c: false },
        &rules,
        &Closing::default(),
        timer,
    )
    .await;
    writer.abort();
    (got, start.elapsed())
}

/// Trickled one header line every 2 s after leading empty lines, or with
/// a space in the target: both are heads Pingora would finish only later,
/// and both end at the head deadline (10 s), not at Pingora's 60 s.
#[tokio::test(start_paused = true)]
async fn trickled_heads_end_at_the_head_deadline() {
    for start in [
        &b"\r\n\r\nGET / HTTP/1.1\r\n"[..],
        b"GET /a b HTTP/1.1\r\n",
        b"\r\n",
    ] {
        let mut chunks = vec![(0, start.to_vec())];
        for i in 0..20 {
            let line = if start == b"\r\n" {
                b"\r\n".to_vec()
            } else {
                format!("X-{i}: y\r\n").into_bytes()
            };
            chunks.push((2000, line));
        }
        let (got, took) = connection(chunks, Duration::from_secs(10)).await;
        assert!(
            matches!(got, Intake::Closed(Closed::HeadTimeout)),
            "{got:?}"
        );
        assert_eq!(
            took,
            Duration::from_secs(10),
            "{}",
            String::from_utf8_lossy(start)
        );
    }
}

/// A request after empty lines is served, without the empty lines.
#[tokio::test(start_paused = true)]
async fn empty_lines_are_dropped_before_the_request() {
    let chunks = vec![
        (0, b"\r\n\n".to_vec()),
        (500, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
    ];
    let (got, _) = connection(chunks, Duration::from_secs(10)).await;
    match got {
        Intake::Http1(buf) => assert!(buf.starts_with(b"GET / HTTP/1.1"), "{buf:?}"),
        other => panic!("{other:?}"),
    }
}

/// A head that arrives in one read is held in exactly its bytes: that
/// buffer becomes Pingora's parse buffer and lives as long as the request
/// (a stalled reader of a large answer holds it for minutes), so no spare
/// capacity rides with it. A head that needs more reads still grows.
#[tokio::test(start_paused = true)]
async fn a_head_read_whole_is_held_in_exactly_its_bytes() {
    let head = b"GET /v1/covers HTTP/1.1\r\nHost: api.covergen.ai\r\n\r\n".to_vec();
    let (got, _) = connection(vec![(0, head.clone())], Duration::from_secs(10)).await;
    match got {
        Intake::Http1(buf) => {
            assert_eq!(&buf[..], &head[..]);
            assert_eq!(buf.capacity(), head.len(), "spare capacity held");
        }
        other => panic!("{other:?}"),
    }
    let (first, rest) = head.split_at(10);
    let chunks = vec![(0, first.to_vec()), (100, rest.to_vec())];
    let (got, _) = connection(chunks, Duration::from_secs(10)).await;
    match got {
        Intake::Http1(buf) => assert_eq!(&buf[..], &head[..]),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Any bytes, trickled any way: the wait ends refused, with a whole
    /// head, or at the head deadline, and never after it.
    #[test]
    fn any_trickle_ends_by_the_head_deadline(
        chunks in proptest::collection::vec(
            (0u64..3000, proptest::collection::vec(prop_oneof![
                Just(b'\r'), Just(b'\n'), Just(b' '), Just(b':'), any::<u8>(),
                proptest::sample::select(b"GETPOST/ HTTP1.0".to_vec()),
            ], 0..40)),
            0..12,
        ),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let deadline = Duration::from_secs(5);
        let (got, took) = rt.block_on(connection(chunks, deadline));
        prop_assert!(took <= deadline, "ended after {:?}", took);
        match got {
            Intake::Http1(buf) => prop_assert_eq!(head_state(&buf), Head::Complete),
            Intake::Refused(_) => {}
            Intake::Closed(Closed::HeadTimeout) => prop_assert_eq!(took, deadline),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
