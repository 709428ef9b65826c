//! Checks of the proxy's wire output shared by its own tests and the
//! end-to-end tests (feature `test-util`; never in the binary).

/// The body of a chunked answer (no trailers, no extensions, as Pingora
/// writes them); panics on a malformed frame. The size lines are
/// httparse's to parse.
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Ok(httparse::Status::Complete((at, size))) = httparse::parse_chunk_size(raw) else {
            panic!("a malformed or cut chunk size line");
        };
        let (chunk, rest) = raw[at..].split_at(size as usize);
        assert!(rest.starts_with(b"\r\n"), "no CRLF after a chunk of {size}");
        if size == 0 {
            assert_eq!(rest, b"\r\n", "after the last chunk");
            return body;
        }
        body.extend_from_slice(chunk);
        raw = &rest[2..];
    }
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn a_chunked_body_is_read_back_whole() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\na\r\n0123456789\r\n0\r\n\r\n"),
            b"abc0123456789"
        );
    }

    #[test]
    #[should_panic(expected = "no CRLF after a chunk of 3")]
    fn a_chunk_longer_than_its_size_is_refused() {
        dechunk(b"3\r\nabcd\r\n0\r\n\r\n");
    }

    #[test]
    #[should_panic(expected = "after the last chunk")]
    fn bytes_after_the_last_chunk_are_refused() {
        dechunk(b"0\r\n\r\nGET");
    }
}
