//! `parapet kill-switch`, `parapet status`, `parapet policy reload`

use parapet_proto::v1::{self as pb, admin_client::AdminClient};
use serde_json::json;

use super::{
    Conn, actor,
    output::{self, Output},
};

#[derive(clap::Subcommand)]
pub enum KillSwitch {
    /// Stop new executions at once, globally or for one action kind; rollbacks still run.
    Engage(SwitchArgs),
    /// Let executions run again (also resets a tripped circuit breaker).
    Release(SwitchArgs),
}

#[derive(clap::Args)]
pub struct SwitchArgs {
    /// One action kind; every kind when omitted.
    #[arg(long)]
    kind: Option<String>,
    /// Why; kept in the journal.
    #[arg(long)]
    reason: String,
    /// Who; kept in the journal [default: $USER]
    #[arg(long = "by")]
    requested_by: Option<String>,
}

fn print_switches(switches: &[pb::KillSwitch], out: Output) {
    if out.json {
        for k in switches {
            out.json_line(&json!({
                "action_kind": if k.action_kind.is_empty() { "*" } else { &k.action_kind },
                "reason": k.reason,
                "engaged_by": k.engaged_by,
                "since": output::time(k.since.as_ref()),
                "seq": k.seq,
            }));
        }
        return;
    }
    if switches.is_empty() {
        outln!("no kill switch is engaged");
        return;
    }
    let rows = switches
        .iter()
        .map(|k| {
            vec![
                if k.action_kind.is_empty() {
                    "* (all)".into()
                } else {
                    k.action_kind.clone()
                },
                output::time(k.since.as_ref()),
                k.engaged_by.clone(),
                k.reason.clone(),
            ]
        })
        .collect();
    out.table(&["KILL SWITCH", "SINCE", "BY", "REASON"], rows);
}

pub async fn kill_switch(channel: &Conn, cmd: KillSwitch, out: Output) -> anyhow::Result<()> {
    let (engaged, args) = match cmd {
        KillSwitch::Engage(a) => (true, a),
        KillSwitch::Release(a) => (false, a),
    };
    let req = pb::SetKillSwitchRequest {
        action_kind: args.kind.unwrap_or_default(),
        engaged,
        reason: args.reason,
        requested_by: actor(args.requested_by),
    };
    let resp = AdminClient::new(channel.clone())
        .set_kill_switch(req)
        .await?
        .into_inner();
    print_switches(&resp.engaged, out);
    Ok(())
}

pub async fn reload(channel: &Conn, by: Option<String>, out: Output) -> anyhow::Result<()> {
    let req = pb::ReloadPolicyRequest {
        requested_by: actor(by),
    };
    let resp = AdminClient::new(channel.clone())
        .reload_policy(req)
        .await?
        .into_inner();
    if out.json {
        out.json_line(
            &json!({"previous_digest": resp.previous_digest, "policy_digest": resp.policy_digest}),
        );
    } else if resp.previous_digest == resp.policy_digest {
        outln!("policy reloaded, unchanged ({})", resp.policy_digest);
    } else {
        outln!(
            "policy {} replaces {}",
            resp.policy_digest,
            resp.previous_digest
        );
    }
    Ok(())
}

pub async fn status(channel: &Conn, out: Output) -> anyhow::Result<()> {
    let s = AdminClient::new(channel.clone())
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    let oldest = s
        .oldest_pending
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .map(|d| {
            humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
        });
    if out.json {
        out.json_line(&json!({
            "policy_digest": s.policy_digest, "shadow": s.shadow,
            "active_by_kind": s.active_by_kind, "pending_approvals": s.pending_approvals,
            "oldest_pending": oldest,
            "adapters": s.adapters.iter().map(|a| json!({"name": a.name, "kinds": a.kinds})).collect::<Vec<_>>(),
            "recent_errors": s.recent_errors.iter().map(|e| json!({
                "seq": e.seq, "time": output::time(e.time.as_ref()), "intent_id": e.intent_id,
                "kind": e.kind, "payload": serde_json::from_str::<serde_json::Value>(&e.payload_json).unwrap_or_default(),
            })).collect::<Vec<_>>(),
        }));
        print_switches(&s.kill_switches, out);
        for b in &s.budgets {
            out.json_line(&json!({
                "budget": b.budget, "scope": b.scope, "scope_value": b.scope_value,
                "active": b.active, "max_active": b.max_active,
                "used_in_window": b.used_in_window, "max_per_window": b.max_per_window,
                "max_active_from_percent": b.max_active_from_percent,
                "utilisation": b.utilisation,
            }));
        }
        for r in &s.refused_upstream {
            out.json_line(&json!({
                "refused_upstream": r.intent_id, "source": r.source,
                "target": r.steps.first().and_then(|s| s.target.as_ref()).map(|t| t.id.clone()),
                "reasons": r.decision.as_ref().map(parapet_orchestrator::api::convert::objections),
            }));
        }
        return Ok(());
    }
    if !s.demoted_detections.is_empty() {
        outln!("demoted to approval: {}", s.demoted_detections.join(", "));
    }
    outln!(
        "policy  {}{}",
        s.policy_digest,
        if s.shadow {
            " (shadow mode: nothing acts)"
        } else {
            ""
        }
    );
    let active: Vec<String> = s
        .active_by_kind
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    outln!(
        "active  {}",
        if active.is_empty() {
            "nothing".to_owned()
        } else {
            active.join(", ")
        }
    );
    outln!(
        "pending {} approval{}{}",
        s.pending_approvals,
        if s.pending_approvals == 1 { "" } else { "s" },
        oldest
            .map(|o| format!(", the oldest waiting {o}"))
            .unwrap_or_default()
    );
    let adapters: Vec<String> = s
        .adapters
        .iter()
        .map(|a| format!("{} ({})", a.name, a.kinds.join(", ")))
        .collect();
    outln!("adapters {}", adapters.join("; "));
    for r in &s.refused_upstream {
        let target = r.steps.first().and_then(|s| s.target.as_ref());
        outln!(
            "refused upstream ({}) {}: {}",
            r.source,
            target.map(|t| t.id.as_str()).unwrap_or_default(),
            r.decision
                .as_ref()
                .map(parapet_orchestrator::api::convert::objections)
                .unwrap_or_default()
        );
    }
    outln!();
    print_switches(&s.kill_switches, out);
    if !s.budgets.is_empty() {
        outln!();
        let limit =
            |used: u32, max: Option<u32>| max.map_or("-".to_owned(), |m| format!("{used}/{m}"));
        let rows = s
            .budgets
            .iter()
            .map(|b| {
                let scope = if b.scope_value.is_empty() {
                    b.scope.clone()
                } else {
                    format!("{}={}", b.scope, b.scope_value)
                };
                let window = b
                    .window
                    .and_then(|w| std::time::Duration::try_from(w).ok())
                    .map(humantime::format_duration);
                vec![
                    b.budget.clone(),
                    scope,
                    limit(
                        b.active,
                        b.max_active.or(b.max_active_from_percent.map(|m| m as u32)),
                    ),
                    match (b.used_in_window, b.max_per_window, window) {
                        (Some(used), Some(max), Some(w)) => format!("{used}/{max} per {w}"),
                        _ => "-".into(),
                    },
                    match b.utilisation {
                        Some(u) if u >= 0.8 => format!("{:.0}% NEAR LIMIT", u * 100.0),
                        Some(u) => format!("{:.0}%", u * 100.0),
                        None => "-".into(),
                    },
                ]
            })
            .collect();
        out.table(&["BUDGET", "SCOPE", "ACTIVE", "WINDOW", "USE"], rows);
    }
    if !s.recent_errors.is_empty() {
        outln!();
        let rows = s
            .recent_errors
            .iter()
            .map(|e| {
                let payload: serde_json::Value =
                    serde_json::from_str(&e.payload_json).unwrap_or_default();
                vec![
                    output::time(e.time.as_ref()),
                    e.intent_id.clone(),
                    e.kind.clone(),
                    payload["error"].as_str().unwrap_or_default().to_owned(),
                ]
            })
            .collect();
        out.table(&["LAST ERRORS", "INTENT", "EVENT", "ERROR"], rows);
    }
    if !s.rate_limits.is_empty() {
        outln!();
        let rows = s
            .rate_limits
            .iter()
            .map(|r| {
                let per = r
                    .per
                    .and_then(|p| std::time::Duration::try_from(p).ok())
                    .map(humantime::format_duration);
                vec![
                    r.name.clone(),
                    r.key.clone(),
                    format!(
                        "{} per {}",
                        r.max,
                        per.map(|p| p.to_string()).unwrap_or_default()
                    ),
                    r.burst.to_string(),
                ]
            })
            .collect();
        out.table(&["RATE LIMIT", "BY", "RATE", "BURST"], rows);
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The detection rule id.
    detection: String,
    /// Why; kept in the journal.
    #[arg(long)]
    reason: String,
    #[arg(long = "by")]
    requested_by: Option<String>,
}

/// Lets a demoted detection act alone again.
pub async fn restore(channel: &Conn, args: RestoreArgs, out: Output) -> anyhow::Result<()> {
    let req = pb::SetDemotionRequest {
        detection: args.detection,
        demoted: false,
        reason: args.reason,
        requested_by: actor(args.requested_by),
    };
    let resp = AdminClient::new(channel.clone())
        .set_demotion(req)
        .await?
        .into_inner();
    if out.json {
        out.json_line(&json!({"demoted_detections": resp.demoted_detections}));
    } else if resp.demoted_detections.is_empty() {
        outln!("no detection is demoted");
    } else {
        outln!("still demoted: {}", resp.demoted_detections.join(", "));
    }
    Ok(())
}
