//! Text -> [`TableSpec`], with the path of the offending field in every error.

use crate::error::{ConfigError, FieldError};
use crate::wire::TableSpec;

/// Parses a TOML table.
pub fn from_toml(text: &str) -> Result<TableSpec, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = path_of(e.path());
        let inner = e.into_inner();
        let reason = match inner.span() {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                format!("{} (line {line}, column {col})", inner.message())
            }
            None => inner.message().to_string(),
        };
        ConfigError::Parse(FieldError::new(path, reason))
    })
}

/// Parses a JSON table (the API's format).
pub fn from_json(text: &[u8]) -> Result<TableSpec, ConfigError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let spec: TableSpec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = path_of(e.path());
        ConfigError::Parse(FieldError::new(path, e.into_inner().to_string()))
    })?;
    de.end()
        .map_err(|e| ConfigError::Parse(FieldError::new(".", e.to_string())))?;
    Ok(spec)
}

/// The largest table file read (a table of 20,000 backends is a few MB).
pub const MAX_TABLE_BYTES: u64 = 64 << 20;

/// Reads a table file: JSON when its name ends in `.json`, else TOML.
/// The outer error is the file's (unreadable); the inner one the table's.
pub fn read_file(path: &std::path::Path) -> std::io::Result<Result<TableSpec, ConfigError>> {
    // A regular file of at most MAX_TABLE_BYTES: a FIFO or a device named
    // here must not hang or exhaust the process.
    let bytes = crate::pem::read_regular(path, MAX_TABLE_BYTES)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.reason))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))?;
    Ok(if path.extension().is_some_and(|e| e == "json") {
        from_json(text.as_bytes())
    } else {
        from_toml(&text)
    })
}

/// Renders a spec as TOML (for `edgesteer ctl get --toml` and files).
pub fn to_toml(spec: &TableSpec) -> Result<String, ConfigError> {
    toml::to_string_pretty(spec)
        .map_err(|e| ConfigError::Parse(FieldError::new(".", e.to_string())))
}

fn path_of(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s.is_empty() {
        ".".to_string()
    } else {
        s
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    /// A table path naming a device is refused by kind, not read until
    /// memory runs out.
    #[test]
    fn a_device_named_as_a_table_is_refused() {
        let e = super::read_file(std::path::Path::new("/dev/zero")).err();
        let e = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("character device"), "{e}");
    }
}
