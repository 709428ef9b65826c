//! The lenient form of a request path that policy prefixes are matched in.

/// The path as a lenient backend would read it, for prefix matching only:
/// percent-escapes decoded, `\\` as `/`, repeated slashes collapsed, `.`
/// and `..` segments resolved. So `//v1/x`, `/%76%31/x` and `/a/../v1/x`
/// all match a `/v1/` prefix.
pub fn normalize_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex = |c: u8| (c as char).to_digit(16);
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                // An escaped backslash is a separator too (`/v1%5cx` must
                // not dodge a `/v1/` policy on origins that read it as `/`).
                let c = (h * 16 + l) as u8;
                decoded.push(if c == b'\\' { b'/' } else { c });
                i += 3;
                continue;
            }
        }
        decoded.push(if b == b'\\' { b'/' } else { b });
        i += 1;
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
