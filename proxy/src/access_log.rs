//! The access log: the record of one request ([`AccessRecord`], one JSON
//! line) and the writer, a dedicated thread. The request path only hands a finished line to a bounded
//! channel with `try_send`; when the writer falls behind, lines are dropped
//! and counted (`edgesteer_access_log_dropped_total`), never waited for.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

use prometheus::IntCounter;

/// Lines buffered between the request path and the writer thread; at
/// 100k lines/s (1,000 per `DRAIN_EVERY`) this holds 8 drains. The
/// channel writes every slot when it is made (32 bytes each), so this is
/// resident from start: 256 KiB (64k slots were 2 MiB of the idle floor).
const QUEUE: usize = 8 * 1024;
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

/// One access-log record. Fields borrow from the request and the snapshot,
/// and serialise straight into the output line: one allocation per line.
#[derive(serde::Serialize)]
pub struct AccessRecord<'a> {
    #[serde(serialize_with = "display")]
    pub ts: humantime::Rfc3339Timestamp,
    #[serde(serialize_with = "display")]
    pub client: IpAddr,
    pub country: Option<&'a str>,
    pub zone: Option<&'a str>,
    pub region: Option<&'a str>,
    #[serde(serialize_with = "display_opt")]
    pub backend: Option<SocketAddr>,
    pub track: Option<&'a str>,
    pub status: u16,
    pub method: &'a str,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub duration_ms: f64,
    pub upstream_ms: Option<f64>,
    pub bytes_sent: usize,
    pub attempts: usize,
    pub version: u64,
    pub reason: &'a str,
}

impl AccessRecord<'_> {
    /// The record as one JSON line, newline-terminated (empty if it could
    /// not be serialised, which [`AccessLog::write`] skips).
    pub fn to_line(&self) -> String {
        let mut line = Vec::with_capacity(384);
        if serde_json::to_writer(&mut line, self).is_err() {
            return String::new();
        }
        line.push(b'\n');
        String::from_utf8(line).unwrap_or_default()
    }
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_opt<T: std::fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}
