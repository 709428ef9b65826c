//! The process lifecycle: where its runtime files live (the upgrade socket
//! and the pid file, in a directory only this user can enter), what each
//! signal means, taking the listeners over from a running proxy
//! (`--upgrade`), and telling systemd (`sd_notify`) which process serves.
//!
//! Signals, as Pingora defines them, with one change:
//! - SIGTERM: stop accepting, let in-flight requests and keep-alive
//!   connections finish within `--grace-period`, exit 0.
//! - SIGQUIT: hand the listening sockets to the new process waiting on the
//!   upgrade socket; both accept for 5 s (Pingora's overlap), during
//!   which every HTTP/1.1 response here says `Connection: close`, so
//!   keep-alive clients move to the new process between requests rather
//!   than racing the close of an idle connection; then drain as SIGTERM
//!   does (idle connections closed, h2 sent GOAWAY). **Only when a new process
//!   is waiting**: Pingora alone would shut down even when nobody took the
//!   sockets; here a SIGQUIT with no successor is logged and ignored, and
//!   this process keeps serving. A successor is waiting when a socket is
//!   *listening* on the upgrade socket's path (the kernel's list of Unix
//!   sockets, `/proc/net/unix`), not merely when the file exists: a file
//!   left by a killed `--upgrade` is no successor. (Connecting to it to
//!   find out would take the one connection the successor accepts.)
//! - SIGINT: exit at once.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Set once the listeners are being handed over or closed: every
/// HTTP/1.1 response from then on says `Connection: close`.
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Whether this process is handing over or shutting down.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// Set once SIGTERM, SIGINT and SIGQUIT are handled. Before that (the
/// moments between the listeners starting and Pingora's main loop) a
/// SIGTERM would end the process with no drain and no cleanup, so the
/// admin `/healthz` answers 503 until then.
static SIGNALS_ARMED: AtomicBool = AtomicBool::new(false);

/// Whether a signal now ends this process gracefully.
pub fn signals_armed() -> bool {
    SIGNALS_ARMED.load(Ordering::Relaxed)
}

/// How long a SIGQUIT waits for a successor's upgrade socket to appear.
const SUCCESSOR_WAIT: Duration = Duration::from_secs(5);

/// The directory of a proxy's runtime files: the upgrade socket and the
/// pid file. Private to this user (mode 0700): whoever can connect to the
/// upgrade socket is handed the listening sockets.
#[derive(Clone, Debug)]
pub struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// The default: systemd's `$RUNTIME_DIRECTORY`, else
    /// `$XDG_RUNTIME_DIR/edgesteer`, else `/run/edgesteer` for root, else
    /// `/tmp/edgesteer-UID`.
    pub fn default_path() -> PathBuf {
        if let Some(d) = std::env::var_os("RUNTIME_DIRECTORY").filter(|d| !d.is_empty()) {
            // systemd may list several, separated by ':'.
            let first = d.to_string_lossy().split(':').next().map(PathBuf::from);
            if let Some(p) = first {
                return p;
            }
        }
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d).join("edgesteer");
        }
        let uid = nix::unistd::geteuid();
        if uid.is_root() {
            PathBuf::from("/run/edgesteer")
        } else {
            std::env::temp_dir().join(format!("edgesteer-{uid}"))
        }
    }

    /// Creates the directory (mode 0700) if needed, and refuses one that
    /// another user owns or that others may enter. The path is made
    /// canonical, so the upgrade socket has the same absolute name in both
    /// processes of an upgrade whatever their working directories.
    pub fn prepare(path: &Path) -> anyhow::Result<RuntimeDir> {
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
        {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "creating the runtime directory {} (give --runtime-dir)",
                        path.display()
                    )
                })
            }
        }
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("reading the runtime directory {}", path.display()))?;
        let uid = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() {
            anyhow::bail!(
                "the runtime directory {} is not a directory; give --runtime-dir",
                path.display()
            );
        }
        if meta.uid() != uid {
            anyhow::bail!("the runtime directory {} belongs to uid {}, not to this user ({uid}): whoever owns it could take the listening sockets at the next upgrade; remove it or give --runtime-dir", path.display(), meta.uid());
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!("the runtime directory {} has mode {mode:o}: other users could reach the upgrade socket and take the listening sockets; `chmod 700 {}` or give --runtime-dir", path.display(), path.display());
        }
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("resolving the runtime directory {}", path.display()))?;
        Ok(RuntimeDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a new process waits for the listening sockets.
    pub fn upgrade_sock(&self) -> PathBuf {
        self.path.join("upgrade.sock")
    }

    /// The serving process's pid; `--upgrade` signals the process it names.
    pub fn pid_file(&self) -> PathBuf {
        self.path.join("proxy.pid")
    }

    /// Records this process as the one serving (written, then renamed).
    pub fn write_pid(&self) -> std::io::Result<()> {
        let tmp = self.path.join(format!(".proxy.pid.{}", std::process::id()));
        std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
        std::fs::rename(&tmp, self.pid_file())
    }

    /// Removes the pid file if it still names this process (a successor
    /// may have written its own).
    pub fn remove_pid(&self) {
        if read_pid(&self.pid_file()) == Some(std::process::id()) {
            let _ = std::fs::remove_file(self.pid_file());
        }
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is a running `edgesteer proxy` (so a stale pid file never
/// gets an unrelated process signalled).
fn is_edgesteer_proxy(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|b| *b == 0);
    let exe = args.next().unwrap_or_default();
    let named = String::from_utf8_lossy(exe).contains("edgesteer");
    named && args.any(|a| a == b"proxy" || a == b"demo")
}

/// `--upgrade`: once this process's upgrade socket is up, asks the
/// process named by the pid file to hand its listeners over (SIGQUIT).
/// Refused (before anything binds) when the pid file is missing or names
/// no running edgesteer proxy: there is nobody to take the sockets from,
/// and Pingora would only give up seconds later with `EAGAIN`. Runs on
/// its own thread, because Pingora's bootstrap blocks while it waits for
/// the sockets.
pub fn request_handoff(dir: &RuntimeDir) -> anyhow::Result<()> {
    let pid_file = dir.pid_file();
    let old = match read_pid(&pid_file).filter(|p| *p != std::process::id()) {
        Some(pid) if is_edgesteer_proxy(pid) => pid,
        Some(pid) => anyhow::bail!(
            "--upgrade: no running proxy found in the runtime directory {}: its proxy.pid names pid {pid}, which is not a running edgesteer proxy. Start the proxy without --upgrade, or give the --runtime-dir of the proxy to replace",
            dir.path().display()
        ),
        None => anyhow::bail!(
            "--upgrade: no running proxy found in the runtime directory {} (no readable proxy.pid there). Start the proxy without --upgrade, or give the --runtime-dir of the proxy to replace",
            dir.path().display()
        ),
    };
    let sock = dir.upgrade_sock();
    // A socket left by a crashed upgrade would look like ours: the
    // bootstrap replaces it anyway, so drop it before waiting for it.
    let _ = std::fs::remove_file(&sock);
    let spawned = std::thread::Builder::new()
        .name("upgrade-handoff".into())
        .spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while listening(&sock) != Some(true) {
                if Instant::now() > deadline {
                    tracing::error!(sock = %sock.display(), "--upgrade: the upgrade socket never appeared; not signalling the running proxy");
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let pid = nix::unistd::Pid::from_raw(old as i32);
            match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT) {
                Ok(()) => tracing::info!(pid = old, "asked the running proxy for its listeners"),
                Err(e) => tracing::error!(pid = old, error = %e, "--upgrade: cannot signal the running proxy; send it SIGQUIT"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "--upgrade: cannot start the hand-off thread; send SIGQUIT to the running proxy");
    }
    Ok(())
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Whether a socket is listening on `path`, from the kernel's list of
/// Unix sockets (`/proc/net/unix`: flags, then the bound path last);
/// `None` when that list cannot be read. A socket file whose process has
/// gone is not in the list. Reading it connects to nothing, so it never
/// takes the one connection a successor accepts.
fn listening(path: &Path) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    Some(listening_in(&table, path))
}

fn listening_in(table: &str, path: &Path) -> bool {
    /// `__SO_ACCEPTCON`: the socket listens.
    const ACCEPTING: u32 = 1 << 16;
    let suffix = format!(" {}", path.display());
    table.lines().skip(1).any(|line| {
        line.ends_with(&suffix)
            && line
                .split_ascii_whitespace()
                .nth(3)
                .and_then(|flags| u32::from_str_radix(flags, 16).ok())
                .is_some_and(|flags| flags & ACCEPTING != 0)
    })
}

/// What a SIGQUIT found on the upgrade socket's path.
#[derive(Debug, PartialEq, Eq)]
enum Successor {
    /// A new process listens there: hand the listeners over.
    Waiting,
    /// Nothing there.
    Absent,
    /// A socket file nobody listens on (left by a killed `--upgrade`).
    Stale,
}

/// The signals of a proxy process (see the module docs).
pub struct Signals {
    /// `None`: this process hands nothing over (the demo).
    upgrade_sock: Option<PathBuf>,
}

impl Signals {
    pub fn new(dir: Option<&RuntimeDir>) -> Signals {
        Signals {
            upgrade_sock: dir.map(RuntimeDir::upgrade_sock),
        }
    }

    /// Waits up to [`SUCCESSOR_WAIT`] for a new process to listen on the
    /// upgrade socket.
    async fn successor_waiting(&self) -> Successor {
        let Some(sock) = &self.upgrade_sock else {
            return Successor::Absent;
        };
        let deadline = tokio::time::Instant::now() + SUCCESSOR_WAIT;
        loop {
            if is_socket(sock) {
                match listening(sock) {
                    Some(true) => return Successor::Waiting,
                    // Without the kernel's list, the file is all there is.
                    None => {
                        tracing::warn!(sock = %sock.display(), "cannot read /proc/net/unix to check that a new process listens on the upgrade socket; handing over to whoever made it");
                        return Successor::Waiting;
                    }
                    // Maybe a successor about to replace it: keep looking.
                    Some(false) => {}
                }
            }
            if tokio::time::Instant::now() > deadline {
                return if is_socket(sock) {
                    Successor::Stale
                } else {
                    Successor::Absent
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn listen(kind: SignalKind, name: &str) -> Option<Signal> {
    match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(signal = name, error = %e, "cannot install the signal handler; that signal will not be handled");
            None
        }
    }
}

async fn next(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let mut quit = listen(SignalKind::quit(), "SIGQUIT");
        let mut term = listen(SignalKind::terminate(), "SIGTERM");
        let mut int = listen(SignalKind::interrupt(), "SIGINT");
        SIGNALS_ARMED.store(true, Ordering::Relaxed);
        loop {
            tokio::select! {
                _ = next(&mut quit) => {
                    let sock = self.upgrade_sock.as_deref().unwrap_or(Path::new("(none)")).display();
                    match self.successor_waiting().await {
                        Successor::Waiting => {
                            // No STOPPING=1: the service goes on, in the new
                            // process, which tells systemd its pid when it serves.
                            tracing::info!(%sock, "SIGQUIT: handing the listeners to the new process, then draining");
                            DRAINING.store(true, Ordering::Relaxed);
                            return ShutdownSignal::GracefulUpgrade;
                        }
                        Successor::Stale => tracing::warn!(%sock, wait = ?SUCCESSOR_WAIT, "SIGQUIT but nobody listens on the upgrade socket (left by an `edgesteer proxy --upgrade` that exited or was killed?); still serving. To upgrade, start `edgesteer proxy --upgrade` with the same --runtime-dir (it replaces the socket)"),
                        Successor::Absent => tracing::warn!(%sock, wait = ?SUCCESSOR_WAIT, "SIGQUIT but no new process is waiting for the listeners (start `edgesteer proxy --upgrade` with the same --runtime-dir); still serving"),
                    }
                }
                _ = next(&mut term) => {
                    tracing::info!("SIGTERM: no longer accepting; draining in-flight requests, then exiting");
                    DRAINING.store(true, Ordering::Relaxed);
                    notify("STOPPING=1");
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = next(&mut int) => {
                    tracing::info!("SIGINT: exiting now");
                    return ShutdownSignal::FastShutdown;
                }
            }
        }
    }
}

/// Tells systemd (`Type=notify`, `NotifyAccess=all`) something about this
/// process, e.g. `READY=1\nMAINPID=…`. Without `$NOTIFY_SOCKET`, nothing.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty()) else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), &path)?;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Tells systemd this process now serves (the first start, or the new
/// process of an upgrade taking over the main pid).
pub fn notify_ready() {
    notify(&format!("READY=1\nMAINPID={}", std::process::id()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_dir_others_can_enter_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rt");
        let rt = RuntimeDir::prepare(&dir).unwrap();
        let mode = std::fs::metadata(rt.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = RuntimeDir::prepare(&dir).unwrap_err().to_string();
        assert!(err.contains("mode 755"), "{err}");
    }

    #[test]
    fn the_pid_file_names_this_process_until_a_successor_writes_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::prepare(&tmp.path().join("rt")).unwrap();
        rt.write_pid().unwrap();
        assert_eq!(read_pid(&rt.pid_file()), Some(std::process::id()));
        assert!(
            !is_edgesteer_proxy(std::process::id()),
            "a test binary is no proxy"
        );
        std::fs::write(rt.pid_file(), "1\n").unwrap();
        rt.remove_pid();
        assert_eq!(read_pid(&rt.pid_file()), Some(1), "a successor's pid stays");
    }

    #[test]
    fn only_a_socket_someone_listens_on_is_a_successor() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::prepare(&tmp.path().join("rt")).unwrap();
        let sock = rt.upgrade_sock();
        assert_eq!(listening(&sock), Some(false), "no socket yet");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(listening(&sock), Some(true));
        drop(listener);
        assert!(is_socket(&sock), "the file stays behind");
        assert_eq!(listening(&sock), Some(false), "a stale socket file");
        // A longer path ending in ours is another socket.
        let table = "Num RefCount Protocol Flags Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01  1234 /x/run/upgrade.sock\n";
        assert!(!listening_in(table, Path::new("/run/upgrade.sock")));
        assert!(listening_in(table, Path::new("/x/run/upgrade.sock")));
    }

    #[test]
    fn sd_notify_reaches_the_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify_ready();
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 128];
        let n = sock.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("READY=1\nMAINPID="), "{got}");
    }
}
