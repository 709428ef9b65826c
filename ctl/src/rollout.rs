//! `ctl rollout`: start, pause, resume or abort a region's canary rollout,
//! and the status of every rollout with its gate figures.

use anyhow::Context;
use clap::Subcommand;
use edgesteer_config::model::RolloutState;
use edgesteer_config::wire::RolloutStep;
use edgesteer_control_api::api::{
    RolloutAction, RolloutChange, RolloutCommand, RolloutStatus, Rollouts,
};
use edgesteer_control_api::client::Client;

use super::print::{json, json_text};

#[derive(Subcommand, Debug)]
pub(super) enum RolloutCmd {
    /// Start a rollout; default plan 5% -> 10% -> 25% -> 50% -> 100%, 60 s each.
    Start {
        region: String,
        /// Steps as BPS:SECONDS, comma-separated (e.g. 500:60,1000:60,10000:60).
        #[arg(long)]
        steps: Option<String>,
        #[arg(long)]
        max_error_rate: Option<f64>,
        #[arg(long)]
        max_p99_ratio: Option<f64>,
        #[arg(long)]
        min_requests: Option<u64>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Pause {
        region: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Resume {
        region: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Stop and set the canary share to 0 at once.
    Abort {
        region: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Step, gate figures and time to the next step of every rollout.
    Status,
}

fn parse_steps(s: &str) -> anyhow::Result<Vec<RolloutStep>> {
    s.split(',')
        .map(|part| {
            let (bps, secs) = part
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("step `{part}` is not BPS:SECONDS"))?;
            let canary_bps: u32 = bps
                .trim()
                .parse()
                .with_context(|| format!("step `{part}`: canary share"))?;
            let secs: f64 = secs
                .trim()
                .parse()
                .with_context(|| format!("step `{part}`: hold seconds"))?;
            Ok(RolloutStep {
                canary_bps,
                hold_ms: (secs * 1000.0) as u64,
            })
        })
        .collect()
}

/// The region and command of a rollout subcommand other than `status`.
fn command(cmd: RolloutCmd) -> anyhow::Result<Option<(String, RolloutCommand)>> {
    Ok(Some(match cmd {
        RolloutCmd::Status => return Ok(None),
        RolloutCmd::Start {
            region,
            steps,
            max_error_rate,
            max_p99_ratio,
            min_requests,
            reason,
        } => {
            let command = RolloutCommand {
                steps: steps.as_deref().map(parse_steps).transpose()?,
                max_error_rate,
                max_p99_ratio,
                min_requests,
                ..RolloutCommand::new(RolloutAction::Start, reason)
            };
            (region, command)
        }
        RolloutCmd::Pause { region, reason } => {
            (region, RolloutCommand::new(RolloutAction::Pause, reason))
        }
        RolloutCmd::Resume { region, reason } => {
            (region, RolloutCommand::new(RolloutAction::Resume, reason))
        }
        RolloutCmd::Abort { region, reason } => {
            (region, RolloutCommand::new(RolloutAction::Abort, reason))
        }
    }))
}

pub(super) async fn run(c: &Client, as_json: bool, cmd: RolloutCmd) -> anyhow::Result<()> {
    let Some((region, command)) = command(cmd)? else {
        return status(&c.rollouts().await?, as_json);
    };
    let r = c.rollout(&region, &command).await?;
    if as_json {
        return json(&r);
    }
    outln!("{}", changed(&region, &r));
    Ok(())
}

/// The line printed after a rollout command: steps counted from 1, as
/// `rollout status` and the audit count them, and the share in force
/// (0 once aborted or rolled back).
fn changed(region: &str, r: &RolloutChange) -> String {
    let Some(ro) = r.rollout.as_ref() else {
        return format!("version {}: {region} has no rollout", r.version);
    };
    let state = RolloutState::of(ro);
    let bps = match state {
        RolloutState::Aborted | RolloutState::RolledBack | RolloutState::Idle => 0,
        _ => ro.steps.get(ro.step).map_or(0, |s| s.canary_bps),
    };
    format!(
        "version {}: rollout of {region} is {} at step {}/{} (canary {:.1}%)",
        r.version,
        state.as_str(),
        ro.step + 1,
        ro.steps.len(),
        f64::from(bps) / 100.0
    )
}

fn status(s: &Rollouts, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(s);
    }
    if s.rollouts.is_empty() {
        outln!("no rollouts");
    }
    for r in &s.rollouts {
        print_status(r)?;
    }
    Ok(())
}

fn print_status(r: &RolloutStatus) -> anyhow::Result<()> {
    outln!(
        "{}: {} at step {}/{} (canary {:.1}%){}",
        r.region,
        r.state.as_str(),
        r.step + 1,
        r.steps.len(),
        f64::from(r.canary_bps) / 100.0,
        r.next_step_in_ms
            .map(|ms| format!(", next step in {:.1} s", ms as f64 / 1000.0))
            .unwrap_or_default()
    );
    outln!(
        "  gates: 5xx <= {:.2}%, p99 <= {}x stable, >= {} canary requests",
        r.gates.max_error_rate * 100.0,
        json_text(&r.gates.max_p99_ratio),
        r.gates.min_requests
    );
    if let Some(f) = &r.figures {
        outln!(
            "  this step: {} canary requests, 5xx {:.2}%, p99 {} ms (stable {} ms over {}), unhealthy canary backends {}",
            f.canary_requests,
            f.canary_error_rate * 100.0,
            json_text(&f.canary_p99_ms),
            json_text(&f.stable_p99_ms),
            f.stable_requests,
            f.unhealthy_canary_backends
        );
    }
    if let Some(reason) = &r.reason {
        outln!("  reason: {reason}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgesteer_config::wire::RolloutSpec;

    fn change(state: &str, step: usize) -> RolloutChange {
        RolloutChange {
            version: 7,
            rollout: Some(RolloutSpec {
                state: state.into(),
                step,
                steps: parse_steps("500:60,1000:60,10000:60").unwrap(),
                ..RolloutSpec::default()
            }),
        }
    }

    #[test]
    fn the_change_line_counts_steps_from_one_and_shows_the_share_in_force() {
        assert_eq!(
            changed("us-east", &change("running", 0)),
            "version 7: rollout of us-east is running at step 1/3 (canary 5.0%)"
        );
        assert_eq!(
            changed("us-east", &change("paused", 1)),
            "version 7: rollout of us-east is paused at step 2/3 (canary 10.0%)"
        );
        assert_eq!(
            changed("us-east", &change("aborted", 0)),
            "version 7: rollout of us-east is aborted at step 1/3 (canary 0.0%)"
        );
        assert_eq!(
            changed("us-east", &change("rolled_back", 2)),
            "version 7: rollout of us-east is rolled_back at step 3/3 (canary 0.0%)"
        );
    }
}
