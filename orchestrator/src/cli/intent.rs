//! `parapet submit | get | list | watch`

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use parapet_proto::v1::{self as pb, intents_client::IntentsClient};
use serde::Deserialize;
use serde_json::json;

use super::{
    Conn,
    output::{self, Output},
};

#[derive(clap::Args)]
pub struct SubmitArgs {
    /// Read the whole intent from a JSON file (`-` for stdin) instead of flags.
    #[arg(long, conflicts_with_all = ["detection", "action"])]
    file: Option<PathBuf>,
    /// Idempotency key; a repeat with the same key returns the first intent. Generated if absent.
    #[arg(long)]
    key: Option<String>,
    /// Who submits.
    #[arg(long, default_value = "cli")]
    source: String,
    /// Detection rule id, as in the policy's inventory.
    #[arg(long, required_unless_present = "file")]
    detection: Option<String>,
    /// informational, low, medium, high or critical.
    #[arg(long, default_value = "high")]
    severity: String,
    /// How sure the detection is, 0 to 1.
    #[arg(long, default_value_t = 1.0)]
    confidence: f64,
    #[arg(long, default_value = "")]
    title: String,
    /// Action kind, e.g. block_ip.
    #[arg(long, required_unless_present = "file")]
    action: Option<String>,
    /// Target as KIND:ID, e.g. ip:198.51.100.7 or host:web-1.
    #[arg(long, required_unless_present = "file")]
    target: Option<String>,
    /// Target attribute KEY=VALUE (repeatable), e.g. ip=192.0.2.10.
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    attrs: Vec<String>,
    /// Step parameter KEY=VALUE (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Roll back this long after acting, e.g. 4h or 30m.
    #[arg(long)]
    ttl: Option<humantime::Duration>,
    #[arg(long, default_value = "")]
    reason: String,
    /// Wait until execution has finished.
    #[arg(long)]
    wait: bool,
    /// An OCSF Detection Finding (JSON file, `-` for stdin) to keep with the intent as evidence.
    #[arg(long, value_name = "FILE")]
    finding: Option<PathBuf>,
}

/// The JSON form of an intent for `--file`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntentFile {
    idempotency_key: Option<String>,
    source: String,
    detection: DetectionFile,
    steps: Vec<StepFile>,
    ttl: Option<String>,
    #[serde(default)]
    reason: String,
    /// An OCSF Detection Finding, as evidence.
    finding: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectionFile {
    rule_id: String,
    severity: String,
    confidence: f64,
    #[serde(default)]
    title: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    kind: String,
    target: TargetFile,
    #[serde(default)]
    params: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    kind: String,
    id: String,
    #[serde(default)]
    attributes: HashMap<String, String>,
}

fn severity(name: &str) -> anyhow::Result<i32> {
    let wanted = format!("SEVERITY_{}", name.to_uppercase());
    match pb::Severity::from_str_name(&wanted) {
        Some(s) if s != pb::Severity::Unspecified => Ok(s.into()),
        _ => bail!("severity `{name}` is not one of informational, low, medium, high, critical"),
    }
}

fn pairs(items: &[String], flag: &str) -> anyhow::Result<HashMap<String, String>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => bail!("{flag} `{item}` must be KEY=VALUE"),
        })
        .collect()
}

fn ttl(d: Duration) -> parapet_proto::wkt::Duration {
    d.into()
}

/// A file's text, or stdin's for `-`.
fn read_arg(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        Ok(std::io::read_to_string(std::io::stdin())?)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
    }
}

fn request(args: SubmitArgs) -> anyhow::Result<pb::SubmitIntentRequest> {
    let new_key = || uuid::Uuid::now_v7().to_string();
    // the server checks it; sent as read
    let finding = args
        .finding
        .as_deref()
        .map(read_arg)
        .transpose()?
        .unwrap_or_default();
    if let Some(path) = args.file {
        let text = read_arg(&path)?;
        let f: IntentFile = serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not an intent", path.display()))?;
        let ttl_value = f
            .ttl
            .map(|t| humantime::parse_duration(&t).with_context(|| format!("ttl `{t}`")))
            .transpose()?;
        return Ok(pb::SubmitIntentRequest {
            idempotency_key: f.idempotency_key.or(args.key).unwrap_or_else(new_key),
            source: f.source,
            detection: Some(pb::Detection {
                rule_id: f.detection.rule_id,
                severity: severity(&f.detection.severity)?,
                confidence: f.detection.confidence,
                title: f.detection.title,
            }),
            steps: f
                .steps
                .into_iter()
                .map(|s| pb::Step {
                    kind: s.kind,
                    target: Some(pb::Target {
                        kind: s.target.kind,
                        id: s.target.id,
                        attributes: s.target.attributes,
                    }),
                    params: s.params,
                })
                .collect(),
            ttl: ttl_value.map(ttl),
            reason: f.reason,
            wait: args.wait,
            finding: match (f.finding, finding) {
                (Some(inline), _) => inline.to_string(),
                (None, from_flag) => from_flag,
            },
        });
    }
    let target = args.target.unwrap_or_default();
    let Some((kind, id)) = target.split_once(':') else {
        bail!("--target `{target}` must be KIND:ID, e.g. ip:198.51.100.7");
    };
    Ok(pb::SubmitIntentRequest {
        idempotency_key: args.key.unwrap_or_else(new_key),
        source: args.source,
        detection: Some(pb::Detection {
            rule_id: args.detection.unwrap_or_default(),
            severity: severity(&args.severity)?,
            confidence: args.confidence,
            title: args.title,
        }),
        steps: vec![pb::Step {
            kind: args.action.unwrap_or_default(),
            target: Some(pb::Target {
                kind: kind.to_owned(),
                id: id.to_owned(),
                attributes: pairs(&args.attrs, "--attr")?,
            }),
            params: pairs(&args.params, "--param")?,
        }],
        ttl: args.ttl.map(|d| ttl(d.into())),
        reason: args.reason,
        wait: args.wait,
        finding,
    })
}

pub async fn submit(channel: &Conn, args: SubmitArgs, out: Output) -> anyhow::Result<()> {
    let req = request(args)?;
    let resp = IntentsClient::new(channel.clone())
        .submit(req)
        .await?
        .into_inner();
    let intent = resp.intent.unwrap_or_default();
    if out.json {
        let mut value = output::intent_json(&intent);
        value["duplicate"] = resp.duplicate.into();
        out.json_line(&value);
    } else {
        if resp.duplicate {
            eprintln!("parapet: a repeat of an earlier submission; showing that intent");
        }
        output::print_intent(&intent);
    }
    Ok(())
}

/// `what-if`: the decision a submission would get now, with nothing done.
pub async fn what_if(channel: &Conn, args: SubmitArgs, out: Output) -> anyhow::Result<()> {
    let req = request(args)?;
    let decision = IntentsClient::new(channel.clone())
        .what_if(req)
        .await?
        .into_inner();
    let outcome = output::outcome(decision.outcome);
    if out.json {
        out.json_line(&serde_json::json!({
            "outcome": outcome,
            "reasons": decision.reasons.iter().map(|r| serde_json::json!({
                "guardrail": r.guardrail, "effect": output::outcome(r.effect), "message": r.message,
            })).collect::<Vec<_>>(),
            "policy_digest": decision.policy_digest,
            "retry_after_s": decision.retry_after.map(|d| d.seconds),
        }));
    } else {
        outln!("would {outcome} (nothing was done)");
        for r in &decision.reasons {
            outln!(
                "  {:<16} {:<8} {}",
                r.guardrail,
                output::outcome(r.effect),
                r.message
            );
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct GetArgs {
    intent_id: String,
}

pub async fn get(channel: &Conn, args: GetArgs, out: Output) -> anyhow::Result<()> {
    let req = pb::GetIntentRequest {
        intent_id: args.intent_id,
    };
    let intent = IntentsClient::new(channel.clone())
        .get(req)
        .await?
        .into_inner();
    if out.json {
        out.json_line(&output::intent_json(&intent));
    } else {
        output::print_intent(&intent);
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only intents in this state (repeatable): active, denied, rolled_back, ...
    #[arg(long = "state")]
    states: Vec<String>,
    #[arg(long, default_value = "")]
    detection: String,
    #[arg(long, default_value = "")]
    source: String,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub async fn list(channel: &Conn, args: ListArgs, out: Output) -> anyhow::Result<()> {
    let states = args
        .states
        .iter()
        .map(|s| {
            pb::IntentState::from_str_name(&format!("INTENT_STATE_{}", s.to_uppercase()))
                .map(i32::from)
                .ok_or_else(|| anyhow::anyhow!("--state `{s}` is not an intent state"))
        })
        .collect::<anyhow::Result<_>>()?;
    let req = pb::ListIntentsRequest {
        states,
        detection: args.detection,
        source: args.source,
        page_size: args.limit,
        page_token: String::new(),
    };
    let resp = IntentsClient::new(channel.clone())
        .list(req)
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
            vec![
                i.intent_id.clone(),
                output::state(i.state),
                i.detection
                    .as_ref()
                    .map(|d| d.rule_id.clone())
                    .unwrap_or_default(),
                i.steps
                    .iter()
                    .map(output::step_summary)
                    .collect::<Vec<_>>()
                    .join(", "),
                output::time(i.created_at.as_ref()),
                output::time(i.expires_at.as_ref()),
            ]
        })
        .collect();
    out.table(
        &[
            "INTENT",
            "STATE",
            "DETECTION",
            "STEPS",
            "CREATED",
            "EXPIRES",
        ],
        rows,
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct WatchArgs {
    /// One intent (the watch ends when it does), or every intent when omitted.
    intent_id: Option<String>,
}

pub async fn watch(channel: &Conn, args: WatchArgs, out: Output) -> anyhow::Result<()> {
    let req = pb::WatchIntentsRequest {
        intent_id: args.intent_id.unwrap_or_default(),
    };
    let mut stream = IntentsClient::new(channel.clone())
        .watch(req)
        .await?
        .into_inner();
    while let Some(event) = stream.message().await? {
        if out.json {
            out.json_line(&json!({
                "intent_id": event.intent_id,
                "seq": event.seq,
                "time": output::time(event.time.as_ref()),
                "event": event.event,
                "state": output::state(event.state),
            }));
        } else {
            outln!(
                "{}  {:>6}  {}  {:<20} {}",
                output::time(event.time.as_ref()),
                event.seq,
                event.intent_id,
                event.event,
                output::state(event.state)
            );
        }
    }
    Ok(())
}
