//! The access log: one JSON line per request, written by a dedicated
//! thread. The request path only hands a finished line to a bounded
//! channel with `try_send`; when the writer falls behind, lines are dropped
//! and counted (`edgesteer_access_log_dropped_total`), never waited for.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

use prometheus::IntCounter;

/// Lines buffered between the request path and the writer thread.
const QUEUE: usize = 16 * 1024;

/// Where access-log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    File(PathBuf),
}

impl std::str::FromStr for Sink {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s == "-" {
            Sink::Stdout
        } else {
            Sink::File(s.into())
        })
    }
}

pub struct AccessLog {
    tx: SyncSender<String>,
    dropped: IntCounter,
}

impl AccessLog {
    pub fn start(sink: Sink, dropped: IntCounter) -> std::io::Result<AccessLog> {
        let mut out: Box<dyn Write + Send> = match &sink {
            Sink::Stdout => Box::new(std::io::stdout()),
            Sink::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut buf = std::io::BufWriter::with_capacity(64 * 1024, &mut out);
                while let Ok(line) = rx.recv() {
                    let _ = buf.write_all(line.as_bytes());
                    // Flush when the queue is drained, so lines appear promptly
                    // under light load and in large writes under heavy load.
                    while let Ok(more) = rx.try_recv() {
                        let _ = buf.write_all(more.as_bytes());
                    }
                    let _ = buf.flush();
                }
            })?;
        Ok(AccessLog { tx, dropped })
    }

    /// Queues one line (which must end in `\n`); an empty line is skipped.
    pub fn write(&self, line: String) {
        if line.is_empty() {
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(line) {
            self.dropped.inc();
        }
    }
}
