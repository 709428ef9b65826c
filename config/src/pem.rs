//! The one loader of files a table or a flag names: certificates, keys,
//! CA bundles and secrets. Every such file is read through
//! [`read_bounded`]:
//! - only a regular file (after symlinks) is read: a FIFO, a device such
//!   as `/dev/zero`, a socket or a directory is refused with its kind;
//! - it is opened non-blocking, so a FIFO swapped in after the check
//!   cannot block the open, and checked again on the open descriptor;
//! - at most [`MAX_FILE_BYTES`] are read: a bigger file is refused
//!   ([`read_regular`] takes another cap, for tables and geo databases).
//!
//! These are blocking reads of at most 1 MiB. Callers on an async runtime
//! run them (or the compile that makes them) on a blocking thread.
//! PEM is parsed by `rustls-pki-types`, so nothing here adds a use of the
//! unmaintained `rustls-pemfile`.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The largest file read: a CA bundle of a few hundred certificates fits.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why a named file cannot be used: the file, and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub reason: String,
}

impl FileError {
    fn new(path: &Path, reason: impl Into<String>) -> FileError {
        FileError {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

fn kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn must_be_regular(path: &Path, meta: &std::fs::Metadata, max: u64) -> Result<(), FileError> {
    if !meta.file_type().is_file() {
        return Err(FileError::new(
            path,
            format!("is {}; only a regular file is read", kind(meta.file_type())),
        ));
    }
    if meta.len() > max {
        return Err(too_big(path, max));
    }
    Ok(())
}

fn too_big(path: &Path, max: u64) -> FileError {
    FileError::new(path, format!("is larger than {max} bytes; refused"))
}

/// The bytes of a regular file of at most [`MAX_FILE_BYTES`].
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, FileError> {
    read_regular(path, MAX_FILE_BYTES)
}

/// The bytes of a regular file of at most `max` bytes, with the checks of
/// [`read_bounded`] (for files larger than PEM: tables, geo databases).
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let cannot = |e: std::io::Error| FileError::new(path, format!("cannot read: {e}"));
    must_be_regular(path, &std::fs::metadata(path).map_err(cannot)?, max)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(cannot)?;
    must_be_regular(path, &file.metadata().map_err(cannot)?, max)?;
    let mut out = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| FileError::new(path, format!("cannot read: {e}")))?;
    if out.len() as u64 > max {
        return Err(too_big(path, max));
    }
    Ok(out)
}

/// A secret (token) file: its text, trimmed; an error when it is empty.
pub fn read_secret(path: &Path) -> Result<String, FileError> {
    let bytes = read_bounded(path)?;
    let text = String::from_utf8(bytes).map_err(|_| FileError::new(path, "is not UTF-8 text"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(FileError::new(path, "is empty"));
    }
    Ok(text.to_string())
}

/// Every certificate in a PEM file; an error when there is none.
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let pem = read_bounded(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FileError::new(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(FileError::new(
            path,
            "holds no PEM certificate (no BEGIN CERTIFICATE block)",
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, FileError> {
    let pem = read_bounded(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        FileError::new(
            path,
            format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused_by_kind() {
        let zero = read_bounded(Path::new("/dev/zero")).unwrap_err();
        assert!(zero.reason.contains("character device"), "{zero}");
        let dir = read_bounded(Path::new("/")).unwrap_err();
        assert!(dir.reason.contains("directory"), "{dir}");
        let tmp = tempfile_dir();
        let fifo = tmp.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.map(|s| s.success()).unwrap_or(false) {
            // Would block forever in a plain open() without a writer.
            let e = read_bounded(&fifo).unwrap_err();
            assert!(e.reason.contains("FIFO"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn a_file_past_the_cap_is_refused_and_one_at_the_cap_is_read() {
        let tmp = tempfile_dir();
        let at = tmp.join("at");
        std::fs::write(&at, vec![b'a'; MAX_FILE_BYTES as usize]).unwrap();
        assert_eq!(read_bounded(&at).unwrap().len() as u64, MAX_FILE_BYTES);
        let over = tmp.join("over");
        std::fs::write(&over, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let e = read_bounded(&over).unwrap_err();
        assert!(e.reason.contains("larger than"), "{e}");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn pem_without_a_certificate_names_the_file() {
        let tmp = tempfile_dir();
        let p = tmp.join("empty.pem");
        std::fs::write(&p, "just text\n").unwrap();
        let e = certs(&p).unwrap_err();
        assert_eq!(e.path, p);
        assert!(e.reason.contains("no PEM certificate"), "{e}");
        let e = private_key(&p).unwrap_err();
        assert!(e.reason.contains("no usable private key"), "{e}");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    fn tempfile_dir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "edgesteer-pem-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
