//! The `edgesteer` command line. `main.rs` (and the test harness's copy of
//! the binary) call [`main`]; each command lives in its own module:
//! [`serve`] (`proxy`), [`control`], [`demo`] (`demo`, `backend`),
//! [`table`] (`validate`, table files) and [`crate::ctl`] (`ctl`).

mod control;
mod demo;
mod dns_args;
mod local;
mod redis_args;
mod serve;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use demo::DEMO_TOKEN;
pub use table::{read_table, summary};

#[derive(Parser, Debug)]
#[command(
    name = "edgesteer",
    version,
    about = "Global traffic-steering edge proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy with a routing table file.
    Proxy(Box<serve::ProxyArgs>),
    /// Check a routing table (TOML or JSON), or the table in a proxy's
    /// cache file (what its --cache wrote), and print a summary or every
    /// error.
    Validate {
        /// Table file (`.json` is read as JSON, anything else as TOML), or a
        /// proxy's table cache.
        file: PathBuf,
    },
    /// Start demo backends for all regions and the proxy with the covergen table.
    Demo(demo::DemoArgs),
    /// Run the config service (versioned tables, audit, push to proxies).
    Control(control::ControlArgs),
    /// Ops CLI over the config service API.
    Ctl(edgesteer_ctl::CtlArgs),
    /// Run one demo backend (for tests and experiments).
    Backend {
        #[arg(long)]
        region: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "stable")]
        track: String,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Serve TLS (h2 and HTTP/1.1) with a certificate generated now.
        #[arg(long)]
        tls: bool,
        /// Where the generated certificate and its CA (ca.pem) are written
        /// (default: a new directory under the system's temp dir).
        #[arg(long, value_name = "DIR", requires = "tls")]
        tls_dir: Option<std::path::PathBuf>,
    },
}

/// Entry point shared by every copy of the binary.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { file } => return table::validate(&file),
        Command::Proxy(args) => serve::run_proxy(*args),
        Command::Demo(args) => demo::run_demo(args),
        Command::Control(args) => control::run_control(args),
        Command::Ctl(args) => edgesteer_ctl::run(args),
        Command::Backend {
            region,
            name,
            track,
            listen,
            tls,
            tls_dir,
        } => demo::run_backend(
            region,
            name,
            track,
            listen,
            tls.then(|| {
                tls_dir.unwrap_or_else(|| {
                    std::env::temp_dir().join(format!("edgesteer-backend-{}", std::process::id()))
                })
            }),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgesteer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Pingora's debug logs print whole request headers (API keys, cookies,
/// `Authorization`), so they stay at `info` unless `RUST_LOG` names Pingora
/// itself: `RUST_LOG=debug` shows ours, not a client's secrets.
///
/// `pingora_core::connectors` (the module itself, not its `http`, `l4` and
/// `tls` submodules, which keep `info`) is off. Its one error,
/// "failed to acquire reusable stream", is a benign race, not a failure:
/// an idle pooled origin connection is watched by a task that Pingora
/// spawns on a random worker thread; when a request takes the connection,
/// it waits for that task to let go of the lock and then unwraps the
/// connection's `Arc`, which fails when the other thread has released the
/// lock but not yet dropped its reference. The request then opens a new
/// connection (the pooled one is closed) and is answered as usual; with
/// two threads this was about 5% of requests under steady load, each
/// logged at ERROR. The module's only other line is a warning that an
/// origin sent bytes on an idle connection (which is then closed too).
const PINGORA_QUIET: &str = "pingora_proxy=info,pingora_core=info,\
    pingora_core::connectors=off,pingora_core::connectors::http=info,\
    pingora_core::connectors::l4=info,pingora_core::connectors::tls=info";

fn init_tracing() {
    let wanted = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let directives = if wanted.contains("pingora") {
        wanted
    } else {
        format!("{wanted},{PINGORA_QUIET}")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{PINGORA_QUIET}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Tokens given as `[ROLE:]NAME=SECRET` flags, parsed here rather than by
/// clap, whose error would print the value, secret and all (to a terminal
/// or a journal): an error names the flag and the entry, never its value.
fn parse_tokens(flag: &str, raw: &[String]) -> anyhow::Result<Vec<edgesteer_control_api::Token>> {
    raw.iter()
        .enumerate()
        .map(|(i, t)| {
            t.parse()
                .map_err(|e| anyhow::anyhow!("{flag} entry {} (value not shown): {e}", i + 1))
        })
        .collect()
}
