//! The lenient form of a request path that policy prefixes are matched in.

/// The path as a lenient backend would read it, for prefix matching only:
/// percent-escapes decoded (repeatedly: `%2576` is `v`, as a backend that
/// decodes twice reads it), `\\` as `/`, repeated slashes collapsed, `.`
/// and `..` segments resolved. So `//v1/x`, `/%76%31/x` and `/a/../v1/x`
/// all match a `/v1/` prefix, and normalising twice changes nothing.
pub fn normalize_path(path: &str) -> String {
    let mut decoded: Vec<u8> = Vec::with_capacity(path.len());
    for &b in path.as_bytes() {
        decoded.push(if b == b'\\' { b'/' } else { b });
        // Decode an escape as soon as its last digit arrives; what it
        // decodes to may complete an earlier `%` (`%%341` -> `%41` ->
        // `A`), so repeat. Each pass shrinks the buffer by two, so this is
        // linear, and no escape is left for a second normalisation to find.
        while let Some(c) = trailing_escape(&decoded) {
            decoded.truncate(decoded.len() - 3);
            // An escaped backslash is a separator too (`/v1%5cx` must
            // not dodge a `/v1/` policy on origins that read it as `/`).
            decoded.push(if c == b'\\' { b'/' } else { c });
        }
    }
    let decoded = String::from_utf8_lossy(&decoded);
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || decoded.ends_with('/') {
        out.push('/');
    }
    out
}

/// The byte a buffer's last three bytes escape, if they are `%XX`.
fn trailing_escape(buf: &[u8]) -> Option<u8> {
    let [b'%', h, l] = *buf.get(buf.len().checked_sub(3)?..)? else {
        return None;
    };
    let hex = |c: u8| (c as char).to_digit(16);
    Some((hex(h)? * 16 + hex(l)?) as u8)
}
