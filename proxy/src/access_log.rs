//! The access log: one JSON line per request, written by a dedicated
//! thread. The request path only hands a finished line to a bounded
//! channel with `try_send`; when the writer falls behind, lines are dropped
//! and counted (`edgesteer_access_log_dropped_total`), never waited for.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

use prometheus::IntCounter;

/// Lines buffered between the request path and the writer thread; at
/// 100k lines/s this holds more than one `DRAIN_EVERY`.
const QUEUE: usize = 64 * 1024;
/// How often the writer drains the queue while there is traffic.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

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
                let mut buf = std::io::BufWriter::with_capacity(256 * 1024, &mut out);
                // Park on the channel only when idle. Under load, wake every
                // 10 ms and drain everything queued into one write, so a
                // sender almost never finds a parked receiver to wake: no
                // futex wake and no context switch per line.
                while let Ok(first) = rx.recv() {
                    let _ = buf.write_all(first.as_bytes());
                    loop {
                        let mut drained = 0usize;
                        while let Ok(more) = rx.try_recv() {
                            let _ = buf.write_all(more.as_bytes());
                            drained += 1;
                        }
                        let _ = buf.flush();
                        if drained == 0 {
                            break;
                        }
                        std::thread::sleep(DRAIN_EVERY);
                    }
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
