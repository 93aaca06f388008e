//! `parapet pending | approve | reject | verdict | precision`

use parapet_proto::v1::{
    self as pb, approvals_client::ApprovalsClient, verdicts_client::VerdictsClient,
};
use serde_json::json;

use super::{
    Conn, actor,
    output::{self, Output},
};

#[derive(clap::Args)]
pub struct AnswerArgs {
    intent_id: String,
    /// Why; kept in the journal.
    #[arg(long)]
    reason: String,
    /// Who answers [default: $USER]
    #[arg(long = "by")]
    requested_by: Option<String>,
}

#[derive(clap::Args)]
pub struct VerdictArgs {
    intent_id: String,
    /// The detection was wrong: roll the intent back and suppress it on these targets.
    #[arg(
        long,
        conflicts_with = "true_positive",
        required_unless_present = "true_positive"
    )]
    false_positive: bool,
    /// The detection was right.
    #[arg(long)]
    true_positive: bool,
    #[arg(long, default_value = "")]
    note: String,
    #[arg(long = "by")]
    requested_by: Option<String>,
}

fn show(intent: &pb::Intent, out: Output) {
    if out.json {
        out.json_line(&output::intent_json(intent));
    } else {
        outln!("{}: {}", intent.intent_id, output::state(intent.state));
    }
}

pub async fn pending(channel: &Conn, out: Output) -> anyhow::Result<()> {
    let resp = ApprovalsClient::new(channel.clone())
        .list_pending(pb::ListPendingRequest {})
        .await?
        .into_inner();
    if out.json {
        for i in &resp.intents {
            out.json_line(&output::intent_json(i));
        }
        return Ok(());
    }
    let rows = resp
        .intents
        .iter()
        .map(|i| {
            let why: Vec<_> = i
                .decision
                .iter()
                .flat_map(|d| d.reasons.iter())
                .filter(|r| r.effect == pb::Outcome::AwaitApproval as i32)
                .map(|r| r.message.clone())
                .collect();
            vec![
                i.intent_id.clone(),
                output::time(i.created_at.as_ref()),
                i.source.clone(),
                i.detection
                    .as_ref()
                    .map(|d| d.rule_id.clone())
                    .unwrap_or_default(),
                i.steps
                    .iter()
                    .map(output::step_summary)
                    .collect::<Vec<_>>()
                    .join(", "),
                why.join("; "),
            ]
        })
        .collect();
    out.table(
        &[
            "INTENT",
            "WAITING SINCE",
            "SOURCE",
            "DETECTION",
            "STEPS",
            "WHY",
        ],
        rows,
    );
    Ok(())
}

pub async fn answer(
    channel: &Conn,
    approve: bool,
    args: AnswerArgs,
    out: Output,
) -> anyhow::Result<()> {
    let req = pb::AnswerRequest {
        intent_id: args.intent_id,
        reason: args.reason,
        requested_by: actor(args.requested_by),
    };
    let mut client = ApprovalsClient::new(channel.clone());
    let intent = if approve {
        client.approve(req).await?
    } else {
        client.reject(req).await?
    }
    .into_inner();
    show(&intent, out);
    Ok(())
}

pub async fn verdict(channel: &Conn, args: VerdictArgs, out: Output) -> anyhow::Result<()> {
    let verdict = if args.false_positive {
        pb::VerdictKind::FalsePositive
    } else {
        pb::VerdictKind::TruePositive
    };
    let req = pb::VerdictRequest {
        intent_id: args.intent_id,
        verdict: verdict.into(),
        note: args.note,
        requested_by: actor(args.requested_by),
    };
    let intent = VerdictsClient::new(channel.clone())
        .judge(req)
        .await?
        .into_inner();
    show(&intent, out);
    Ok(())
}

pub async fn precision(channel: &Conn, out: Output) -> anyhow::Result<()> {
    let resp = VerdictsClient::new(channel.clone())
        .precision(pb::PrecisionRequest {})
        .await?
        .into_inner();
    let rate = |r: &pb::PrecisionRow| {
        let all = r.true_positives + r.false_positives;
        (all > 0).then(|| f64::from(r.true_positives) / f64::from(all))
    };
    if out.json {
        for r in &resp.rows {
            out.json_line(&json!({
                "detection": r.detection, "action_kind": r.action_kind, "tier": r.tier,
                "true_positives": r.true_positives, "false_positives": r.false_positives,
                "precision": rate(r),
            }));
        }
        return Ok(());
    }
    let rows = resp
        .rows
        .iter()
        .map(|r| {
            vec![
                r.detection.clone(),
                r.action_kind.clone(),
                r.tier.clone(),
                r.true_positives.to_string(),
                r.false_positives.to_string(),
                rate(r).map_or("-".into(), |p| format!("{:.0}%", p * 100.0)),
            ]
        })
        .collect();
    out.table(
        &[
            "DETECTION",
            "ACTION",
            "TIER",
            "TRUE POS",
            "FALSE POS",
            "PRECISION",
        ],
        rows,
    );
    Ok(())
}
