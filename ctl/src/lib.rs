//! `edgesteer ctl`: the ops CLI over the config service API. Output is for
//! people by default and JSON with `--json`.
//!
//! This file holds the arguments and the dispatch; [`edit`] the writes,
//! [`print`] the human output, [`rollout`] the rollout commands,
//! [`explain`] the question put to a proxy's admin listener and
//! [`preview`] what a write would do, asked instead of writing.

/// `println!` into a locked stdout that hands back an error (from the
/// function it is used in) instead of panicking when the reader has gone,
/// as in `ctl get | head -2`; [`run`] ends quietly on that broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `print!` as [`outln!`] does `println!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod edit;
mod explain;
mod preview;
mod print;
mod rollout;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use edgesteer_control_api::api::PatchRegion;
use edgesteer_control_api::client::{Client, ClientError, ClientTls};

/// Where the demo's config service listens; `ctl` talks to it by default.
pub const DEMO_CONTROL: &str = "http://127.0.0.1:9300";

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// Config service URL.
    #[arg(long, env = "EDGESTEER_CONTROL", default_value = DEMO_CONTROL)]
    control: String,
    /// CA (PEM) that an https:// service's certificate must chain to; only
    /// it is trusted, not the system roots.
    #[arg(long, env = "EDGESTEER_CONTROL_CA")]
    control_ca: Option<PathBuf>,
    /// The secret of a token the config service takes (the demo prints
    /// its own at start-up); prefer the environment.
    #[arg(long, global = true, env = "EDGESTEER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: CtlCommand,
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// Show the current table (regions, weights, canary, drain).
    Get {
        /// Print the whole table as TOML.
        #[arg(long)]
        toml: bool,
    },
    /// Replace the table with a file (TOML or JSON).
    Apply {
        file: PathBuf,
        #[arg(long, default_value = "")]
        reason: String,
        /// Only apply if the current version is still this one (default:
        /// the version current when ctl reads it).
        #[arg(long)]
        if_match: Option<u64>,
        /// Apply even if it resets a running rollout, without If-Match.
        #[arg(long)]
        force: bool,
        /// Show what the change would do to traffic; commit nothing.
        #[arg(long)]
        preview: bool,
    },
    /// Set one backend's weight (0 drains it).
    SetWeight {
        region: String,
        backend: String,
        weight: u32,
        #[arg(long, default_value = "")]
        reason: String,
        /// Show what the change would do to traffic; commit nothing.
        #[arg(long)]
        preview: bool,
    },
    /// Set a region's canary share in basis points (0-10000).
    SetCanary {
        region: String,
        bps: u32,
        #[arg(long, default_value = "")]
        reason: String,
        /// Show what the change would do to traffic; commit nothing.
        #[arg(long)]
        preview: bool,
    },
    /// Drain a region to its failover list (or bring it back with --undo).
    Shift {
        region: String,
        #[arg(long)]
        undo: bool,
        #[arg(long, default_value = "")]
        reason: String,
        /// Show what the change would do to traffic; commit nothing.
        #[arg(long)]
        preview: bool,
    },
    /// Change a rate-limit policy's rate/burst (of one tier with --tier).
    SetLimit(edit::SetLimit),
    /// Put an API key in a tier of a policy (or remove it with --remove).
    SetKey(edit::SetKey),
    /// Make an earlier version current again (as a new version).
    Rollback {
        version: u64,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Recent versions with who, when, what and why.
    History {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Every watching proxy and the version it runs.
    Fleet,
    /// Progressive canary rollouts: start, pause, resume, abort, status.
    Rollout {
        #[command(subcommand)]
        cmd: rollout::RolloutCmd,
    },
    /// Where a client would be routed right now, and why (asks a proxy's admin listener).
    Explain(explain::ExplainArgs),
    /// What changed between two versions (default: the last change).
    Diff {
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
    },
}

pub fn run(args: CtlArgs) -> anyhow::Result<()> {
    let token = args.token.clone().filter(|t| !t.is_empty());
    let has_token = token.is_some();
    let tls = ClientTls {
        ca: args.control_ca.clone(),
        identity: None,
    };
    let client = Client::with_tls(&args.control, token, &tls)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    match rt.block_on(exec(client, args.json, args.cmd)) {
        // The reader of our output has gone (`ctl get | head -2`): end
        // quietly, as Unix tools do.
        Err(e) if broken_pipe(&e) => Ok(()),
        Err(e) if status_is(&e, 401) => Err(e.context(if has_token {
            "the config service does not know the token in --token / EDGESTEER_TOKEN"
        } else {
            "the config service wants a token: set EDGESTEER_TOKEN (or --token)"
        })),
        done => done,
    }
}

/// Whether `e` is, or was caused by, the service answering `status`.
fn status_is(e: &anyhow::Error, status: u16) -> bool {
    e.chain().any(|c| {
        matches!(c.downcast_ref::<ClientError>(), Some(ClientError::Api { status: s, .. }) if *s == status)
    })
}

/// Whether `e` is, or was caused by, writing to a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A region change: one field of a [`PatchRegion`] and the reason.
fn patch(reason: String, change: impl FnOnce(&mut PatchRegion)) -> PatchRegion {
    let mut p = PatchRegion {
        reason,
        ..PatchRegion::default()
    };
    change(&mut p);
    p
}

async fn exec(c: Client, as_json: bool, cmd: CtlCommand) -> anyhow::Result<()> {
    match cmd {
        CtlCommand::Get { toml } => print::table(&c.get().await?, as_json, toml)?,
        CtlCommand::Apply {
            file,
            reason,
            if_match,
            force,
            preview,
        } => {
            let spec = edgesteer_config::parse::read_file(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if preview {
                return preview::table(&c, as_json, spec).await;
            }
            let if_match = match (force, if_match) {
                (true, m) => m,
                (false, Some(m)) => Some(m),
                (false, None) => {
                    let cur = c.get().await?;
                    edit::keeps_rollouts(&cur.table, &spec)?;
                    Some(cur.version)
                }
            };
            match c.put(&spec, &reason, if_match).await {
                // Applying a file twice is not an error: nothing to do.
                Err(ClientError::Api { code, message, .. }) if code == "empty_change" => {
                    if as_json {
                        print::json(&serde_json::json!({ "changed": false, "message": message }))?;
                    } else {
                        outln!("unchanged: {message}");
                    }
                }
                v => edit::written(&c, as_json, v?).await?,
            }
        }
        CtlCommand::SetWeight {
            region,
            backend,
            weight,
            reason,
            preview,
        } => {
            let change = patch(reason, |p| {
                p.weights.insert(backend, weight);
            });
            if preview {
                return preview::patch(&c, as_json, &region, change).await;
            }
            let v = c.patch_region(&region, &change).await?;
            edit::written(&c, as_json, v).await?;
        }
        CtlCommand::SetCanary {
            region,
            bps,
            reason,
            preview,
        } => {
            let change = patch(reason, |p| p.canary_bps = Some(bps));
            if preview {
                return preview::patch(&c, as_json, &region, change).await;
            }
            let v = c.patch_region(&region, &change).await?;
            edit::written(&c, as_json, v).await?;
        }
        CtlCommand::Shift {
            region,
            undo,
            reason,
            preview,
        } => {
            let change = patch(reason, |p| p.drain = Some(!undo));
            if preview {
                return preview::patch(&c, as_json, &region, change).await;
            }
            let v = c.patch_region(&region, &change).await?;
            edit::written(&c, as_json, v).await?;
        }
        CtlCommand::SetLimit(args) => edit::set_limit(&c, as_json, args).await?,
        CtlCommand::SetKey(args) => edit::set_key(&c, as_json, args).await?,
        CtlCommand::Rollback { version, reason } => {
            let v = c.rollback(version, &reason).await?;
            edit::written(&c, as_json, v).await?;
        }
        CtlCommand::History { limit } => print::history(&c.history(limit).await?, as_json)?,
        CtlCommand::Fleet => print::fleet(&c.fleet().await?, as_json)?,
        CtlCommand::Rollout { cmd } => rollout::run(&c, as_json, cmd).await?,
        CtlCommand::Explain(args) => explain::run(args, as_json).await?,
        CtlCommand::Diff { from, to } => print::diff(&c.diff(from, to).await?, as_json)?,
    }
    Ok(())
}
