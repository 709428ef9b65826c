//! The access log: the record of one request ([`AccessRecord`], one JSON
//! line) and the writer, a dedicated thread. The request path only hands a finished line to a bounded
//! channel with `try_send`; when the writer falls behind, lines are dropped
//! and counted (`edgesteer_access_log_dropped_total`), never waited for.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use prometheus::IntCounter;

/// Lines buffered between the request path and the writer thread; at
/// 100k lines/s (1,000 per `DRAIN_EVERY`) this holds 8 drains. The
/// channel writes every slot when it is made (32 bytes each), so this is
/// resident from start: 256 KiB (64k slots were 2 MiB of the idle floor).
const QUEUE: usize = 8 * 1024;
/// Bytes of lines queued at most: a stalled sink (a blocked stdout pipe, a
/// restarting shipper) holds this much, whatever the lines' lengths.
const QUEUE_BYTES: usize = 4 << 20;
/// The writer's buffer: one write per drain.
const WRITE_BUF: usize = 256 * 1024;
/// Longest path or host a line carries (cut at a character boundary): a
/// request line may be 64 KiB, a log line need not.
const MAX_FIELD: usize = 1024;
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
    /// Bytes queued for the writer (see [`QUEUE_BYTES`]).
    queued: Arc<AtomicUsize>,
}

impl AccessLog {
    pub fn start(sink: Sink, dropped: IntCounter) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match &sink {
            Sink::Stdout => Box::new(std::io::stdout()),
            Sink::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        Self::writing_to(out, dropped)
    }

    /// The log with its writer thread writing to `out`.
    fn writing_to(
        mut out: Box<dyn Write + Send>,
        dropped: IntCounter,
    ) -> std::io::Result<AccessLog> {
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = queued.clone();
        let write = move |buf: &mut std::io::BufWriter<&mut Box<dyn Write + Send>>,
                          line: String| {
            let _ = buf.write_all(line.as_bytes());
            taken.fetch_sub(line.len(), Ordering::Relaxed);
        };
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut buf = std::io::BufWriter::with_capacity(WRITE_BUF, &mut out);
                // Park on the channel only when idle. Under load, wake every
                // 10 ms and drain everything queued into one write, so a
                // sender almost never finds a parked receiver to wake: no
                // futex wake and no context switch per line.
                while let Ok(first) = rx.recv() {
                    write(&mut buf, first);
                    loop {
                        let mut drained = 0usize;
                        while let Ok(more) = rx.try_recv() {
                            write(&mut buf, more);
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
        Ok(AccessLog {
            tx,
            dropped,
            queued,
        })
    }

    /// Queues one line (which must end in `\n`); an empty line is skipped.
    /// Dropped (and counted) when the queue is full, in lines or in bytes.
    pub fn write(&self, line: String) {
        if line.is_empty() {
            return;
        }
        let n = line.len();
        if self.queued.fetch_add(n, Ordering::Relaxed) + n > QUEUE_BYTES {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            self.dropped.inc();
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(line) {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            self.dropped.inc();
        }
    }
}

/// `s` cut to [`MAX_FIELD`] bytes at a character boundary.
pub fn clip(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that never returns: the sink has stalled.
    struct Stalled;

    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            loop {
                std::thread::park();
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Behind a stalled sink, long lines are dropped once the queue holds
    /// its bytes, not only its count of lines (8,192 lines of a 64 KiB
    /// path were half a gigabyte).
    #[test]
    fn a_stalled_sink_holds_at_most_the_queues_bytes() {
        let dropped = IntCounter::new("dropped", "d").unwrap_or_else(|_| unreachable!());
        let log = AccessLog::writing_to(Box::new(Stalled), dropped.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let line = format!("{}\n", "x".repeat(64 * 1024));
        let mut accepted = 0usize;
        for _ in 0..200 {
            let before = dropped.get();
            log.write(line.clone());
            accepted += usize::from(dropped.get() == before);
        }
        // The queue's bytes, plus what the writer took into its buffer
        // before the sink stalled it.
        let held = QUEUE_BYTES + WRITE_BUF + line.len();
        assert!(accepted * line.len() <= held, "{accepted} lines queued");
        assert!(accepted >= QUEUE_BYTES / line.len() - 1, "{accepted}");
        assert!(dropped.get() > 0);
    }

    #[test]
    fn long_fields_are_clipped_at_a_character_boundary() {
        assert_eq!(clip("/v1/x"), "/v1/x");
        let long = "é".repeat(MAX_FIELD);
        let c = clip(&long);
        assert!(
            c.len() <= MAX_FIELD && c.len() >= MAX_FIELD - 1,
            "{}",
            c.len()
        );
        assert!(long.starts_with(c));
    }
}
