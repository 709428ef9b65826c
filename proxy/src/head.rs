//! Where a request head ends, read exactly as Pingora's HTTP/1 parser
//! reads it, so the intake's head deadline and size limit hold for every
//! byte sequence: a head the intake calls complete is one Pingora parses
//! without reading another byte, and one it calls partial is one Pingora
//! would wait for.
//!
//! Pingora parses with `httparse`; when that fails on the request line
//! (a token or version error) it percent-escapes the target's illegal
//! bytes (controls, space, `<`, `>`, `"`, non-ASCII) in a request line
//! shaped `METHOD TARGET HTTP/d[.d]` and parses again. [`head_state`]
//! does the same on a copy, only on that error path. Empty lines before
//! the request line (RFC 9112 §2.2) are dropped by the intake before this
//! is asked ([`empty_lines`]), so Pingora never skips any itself.
//! `fuzz/fuzz_targets/head_verdict.rs` checks the verdict against
//! Pingora's own `read_request` on the same bytes.

use std::sync::LazyLock;

use percent_encoding::{AsciiSet, CONTROLS};

/// How far a buffer holds a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// Pingora parses a whole head from these bytes.
    Complete,
    /// More bytes could still make a head.
    Partial,
    /// No more bytes can: Pingora answers it 400.
    Invalid,
}

/// Pingora's ceiling on header lines (httparse's array).
pub const MAX_HEADERS: usize = 256;

/// The bytes of empty lines (`\r\n` or `\n`) at the start of `buf`.
pub fn empty_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match buf.get(i..) {
            Some([b'\r', b'\n', ..]) => i += 2,
            Some([b'\n', ..]) => i += 1,
            _ => return i,
        }
    }
}

/// How far `buf` (which starts with no empty line) holds a request head.
/// Nearly every head is found by its blank line alone: with the request
/// line first, the first `\r\n\r\n` ends the head for httparse too (or
/// the head is invalid, which Pingora answers at once). Only a head that
/// has not ended is parsed.
pub fn head_state(buf: &[u8]) -> Head {
    // Built once: `memmem::find` builds its searcher on every call.
    static HEAD_END: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    if !matches!(buf.first(), Some(b'\r' | b'\n')) && HEAD_END.find(buf).is_some() {
        return Head::Complete;
    }
    match parse(buf) {
        Ok(state) => state,
        Err(httparse::Error::Token | httparse::Error::Version) => match escape_target(buf) {
            Some(escaped) => parse(&escaped).unwrap_or(Head::Invalid),
            None => Head::Invalid,
        },
        Err(_) => Head::Invalid,
    }
}

fn parse(buf: &[u8]) -> Result<Head, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    Ok(match httparse::Request::new(&mut headers).parse(buf)? {
        httparse::Status::Complete(_) => Head::Complete,
        httparse::Status::Partial => Head::Partial,
    })
}

/// The bytes of a target Pingora escapes before parsing again.
const ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'<').add(b'>').add(b'"');

/// `buf` with its request target's illegal bytes percent-escaped, when
/// its first line is shaped like a request line and anything changed.
fn escape_target(buf: &[u8]) -> Option<Vec<u8>> {
    static REQUEST_LINE: LazyLock<Option<regex::bytes::Regex>> =
        LazyLock::new(|| regex::bytes::Regex::new(r"^\w+ (?P<target>.+) HTTP/\d(?:\.\d)?").ok());
    let target = REQUEST_LINE.as_ref()?.captures(buf)?.name("target")?;
    let mut out = Vec::with_capacity(buf.len() + 32);
    out.extend_from_slice(&buf[..target.start()]);
    for part in percent_encoding::percent_encode(target.as_bytes(), ESCAPED) {
        out.extend_from_slice(part.as_bytes());
    }
    if out.len() == target.end() {
        return None;
    }
    out.extend_from_slice(&buf[target.end()..]);
    Some(out)
}

/// Whether a `Content-Length` value is one decimal number (RFC 9110
/// 8.6): never a list (`3, 3`), a sign (`+3`) or spaces.
pub fn is_length(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lines_are_counted_whole() {
        assert_eq!(empty_lines(b"\r\n\r\nGET"), 4);
        assert_eq!(empty_lines(b"\n\r\nGET"), 3);
        assert_eq!(
            empty_lines(b"\r"),
            0,
            "a lone CR may still become an empty line"
        );
        assert_eq!(empty_lines(b"\rX"), 0);
        assert_eq!(empty_lines(b"GET"), 0);
    }

    #[test]
    fn a_blank_line_ends_a_head_only_after_a_request_line() {
        assert_eq!(
            head_state(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Head::Complete
        );
        assert_eq!(head_state(b"GET / HTTP/1.1\r\nHost: a\r\n"), Head::Partial);
        // Leading empty lines are the intake's to drop; if they were
        // here, the head would not be complete.
        assert_eq!(
            head_state(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n"),
            Head::Partial
        );
    }

    #[test]
    fn a_target_pingora_escapes_is_a_head_still_arriving() {
        // httparse stops at the space; Pingora escapes it and reads on.
        assert_eq!(
            head_state(b"GET /a b HTTP/1.1\r\nHost: a\r\n"),
            Head::Partial
        );
        assert_eq!(
            head_state(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
            Head::Complete
        );
        assert_eq!(head_state(b"GET /a<b> HTTP/1.1\r\nX: 1\r\n"), Head::Partial);
        // Not shaped like a request line: nothing to escape.
        assert_eq!(head_state(b"GET /a b\r\n"), Head::Invalid);
        assert_eq!(head_state(b"G\x01T / HTTP/1.1\r\n"), Head::Invalid);
        assert_eq!(head_state(b" GET / HTTP/1.1\r\n"), Head::Invalid);
    }

    #[test]
    fn content_length_is_one_number() {
        assert!(is_length(b"0"));
        assert!(is_length(b"65536"));
        for bad in [
            &b"+3"[..],
            b"3, 3",
            b"-1",
            b"",
            b" 3",
            b"0x10",
            b"99999999999999999999",
        ] {
            assert!(!is_length(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
