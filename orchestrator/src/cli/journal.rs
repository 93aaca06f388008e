//! `parapet journal query | verify | export`

use std::time::SystemTime;

use anyhow::Context;
use parapet_proto::v1::{self as pb, journal_client::JournalClient};
use serde_json::json;

use super::{
    Conn,
    output::{self, Output},
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Journal entries matching all the filters given, in order.
    Query(Box<QueryArgs>),
    /// Walk the journal's hash chain and report the first break; fails if there is one.
    Verify(VerifyArgs),
    /// Stream the entries the filters select as JSON lines, or as OCSF Remediation Activity
    /// events, to stdout or a file.
    Export(Box<ExportArgs>),
    /// Apply the retention policy now: remove the oldest segments whose intents have all ended.
    Compact {
        /// Who; kept in the journal [default: $USER]
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    filters: Filters,
    /// jsonl: every entry, with its hashes; ocsf: a Remediation Activity event per step that
    /// acted or was undone.
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "ocsf"])]
    format: String,
    /// Write here instead of stdout (progress goes to stderr).
    #[arg(long, short)]
    output: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// SEQ:HASH printed by an earlier verify (its head) or carried by an export: the chain must
    /// still pass through it. Repeatable.
    #[arg(long, value_name = "SEQ:HASH")]
    expect: Vec<String>,
    /// Verify the journal in this data directory (a copy, or a stopped server's) without a
    /// server; nothing in it is changed.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    filters: Filters,
    /// Only entries after this sequence number: the last SEQ of the previous page.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many entries; 0 for all.
    #[arg(long, default_value_t = 1000)]
    limit: u32,
}

/// Which entries: each filter given must match.
#[derive(clap::Args)]
pub struct Filters {
    #[arg(long)]
    intent: Option<String>,
    /// KIND:ID, e.g. ip:198.51.100.7.
    #[arg(long)]
    target: Option<String>,
    #[arg(long)]
    detection: Option<String>,
    /// The platform that submitted the intents.
    #[arg(long)]
    source: Option<String>,
    /// Who caused the entries: a source, an operator, or `parapet`.
    #[arg(long)]
    actor: Option<String>,
    /// Intents with a step of this action kind.
    #[arg(long)]
    action: Option<String>,
    /// Intents decided so: execute, await_approval, shadow, deny.
    #[arg(long)]
    outcome: Option<String>,
    /// Only entries of this kind (received, decided, step_succeeded, ...); repeatable.
    #[arg(long = "event")]
    events: Vec<String>,
    /// RFC 3339 time, or a duration meaning that long ago (e.g. 1h).
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339 time, or a duration meaning that long ago.
    #[arg(long)]
    until: Option<String>,
}

impl Filters {
    fn request(self, after_seq: u64, limit: u32) -> anyhow::Result<pb::QueryJournalRequest> {
        let target = self.target.as_deref().map(super::target_arg).transpose()?;
        let outcome = match self.outcome.as_deref() {
            None => pb::Outcome::Unspecified,
            Some(o) => pb::Outcome::from_str_name(&format!("OUTCOME_{}", o.to_uppercase()))
                .filter(|o| *o != pb::Outcome::Unspecified)
                .with_context(|| {
                    format!("--outcome `{o}`: one of execute, await_approval, shadow, deny")
                })?,
        };
        Ok(pb::QueryJournalRequest {
            intent_id: self.intent.unwrap_or_default(),
            target,
            detection: self.detection.unwrap_or_default(),
            since: self.since.as_deref().map(when).transpose()?,
            until: self.until.as_deref().map(when).transpose()?,
            limit,
            after_seq,
            source: self.source.unwrap_or_default(),
            actor: self.actor.unwrap_or_default(),
            action_kind: self.action.unwrap_or_default(),
            outcome: outcome.into(),
            events: self.events,
        })
    }
}

pub(super) fn when(text: &str) -> anyhow::Result<parapet_proto::wkt::Timestamp> {
    let t = match humantime::parse_rfc3339_weak(text) {
        Ok(t) => t,
        Err(_) => {
            let ago = humantime::parse_duration(text)
                .with_context(|| format!("`{text}` is neither a time nor a duration"))?;
            SystemTime::now() - ago
        }
    };
    Ok(parapet_proto::time::timestamp(t))
}

pub async fn run(channel: &Conn, cmd: Command, out: Output) -> anyhow::Result<()> {
    match cmd {
        Command::Query(args) => query(channel, *args, out).await,
        Command::Export(args) => export(channel, *args).await,
        Command::Compact { by } => compact(channel, by, out).await,
        Command::Verify(args) => verify(channel, args, out).await,
    }
}

fn expected(args: &VerifyArgs) -> anyhow::Result<Vec<pb::ChainPoint>> {
    let mut expect = Vec::new();
    for text in &args.expect {
        let (seq, hash) = text
            .split_once(':')
            .and_then(|(s, h)| Some((s.parse().ok()?, h.to_owned())))
            .with_context(|| format!("--expect `{text}` must be SEQ:HASH"))?;
        expect.push(pb::ChainPoint { seq, hash });
    }
    Ok(expect)
}

async fn verify(channel: &Conn, args: VerifyArgs, out: Output) -> anyhow::Result<()> {
    let expect = expected(&args)?;
    let report = JournalClient::new(channel.clone())
        .verify(pb::VerifyJournalRequest { expect })
        .await?
        .into_inner();
    print_report(&report, out)
}

/// `journal verify --data-dir DIR`: the stored log alone, read as it is, with no server and no
/// lock (the directory may be a copy, or read-only).
pub fn verify_offline(args: VerifyArgs, out: Output) -> anyhow::Result<()> {
    use parapet_orchestrator::journal::{log, parse_hex, verify};
    let Some(dir) = &args.data_dir else {
        anyhow::bail!("--data-dir is required to verify offline");
    };
    let journal = dir.join("journal");
    if !journal.is_dir() {
        anyhow::bail!("`{}` holds no journal", dir.display());
    }
    let mut expect = Vec::new();
    for p in expected(&args)? {
        let hash = parse_hex(&p.hash)
            .with_context(|| format!("--expect `{}`: not a 64-digit hex hash", p.hash))?;
        expect.push((p.seq, hash));
    }
    let reader = log::read_only(&journal);
    let report = verify::verify(reader.as_ref(), None, &expect)
        .with_context(|| format!("cannot verify the journal in `{}`", journal.display()))?;
    print_report(
        &parapet_orchestrator::api::convert::verify_report(&report),
        out,
    )
}

fn print_report(report: &pb::VerifyJournalResponse, out: Output) -> anyhow::Result<()> {
    let point = |p: &Option<pb::ChainPoint>| {
        p.as_ref()
            .map_or_else(String::new, |p| format!("{}:{}", p.seq, p.hash))
    };
    if out.json {
        out.json_line(&json!({
            "ok": report.ok,
            "anchor": point(&report.anchor),
            "head": point(&report.head),
            "entries": report.entries,
            "checkpoints": report.checkpoints,
            "breaks": report.breaks.iter().map(|b| json!({
                "seq": b.seq, "kind": b.kind, "detail": b.detail,
            })).collect::<Vec<_>>(),
        }));
    } else if report.ok {
        let from = report.anchor.as_ref().map_or(0, |a| a.seq) + 1;
        outln!(
            "chain intact: entries {from} to {} ({} read), {} checkpoints matched",
            report.head.as_ref().map_or(0, |h| h.seq),
            report.entries,
            report.checkpoints
        );
        outln!("head {}", point(&report.head));
    } else {
        out.table(
            &["SEQ", "BREAK", "DETAIL"],
            report
                .breaks
                .iter()
                .map(|b| vec![b.seq.to_string(), b.kind.clone(), b.detail.clone()])
                .collect(),
        );
    }
    match report.breaks.first() {
        None => Ok(()),
        Some(b) => anyhow::bail!(
            "the journal's chain is broken: entry {} {} ({} breaks)",
            b.seq,
            b.kind,
            report.breaks.len()
        ),
    }
}

async fn compact(channel: &Conn, by: Option<String>, out: Output) -> anyhow::Result<()> {
    let r = pb::admin_client::AdminClient::new(channel.clone())
        .compact_journal(pb::CompactJournalRequest {
            requested_by: super::actor(by),
        })
        .await?
        .into_inner();
    let anchor = r
        .anchor
        .as_ref()
        .map_or_else(String::new, |a| format!("{}:{}", a.seq, a.hash));
    if out.json {
        out.json_line(&json!({
            "compacted": r.compacted, "anchor": anchor, "entries": r.entries,
            "intents": r.intents, "bytes_before": r.bytes_before, "bytes_after": r.bytes_after,
        }));
    } else if r.compacted {
        outln!(
            "removed {} entries of {} intents ({} → {} bytes); the chain now starts after {anchor}",
            r.entries,
            r.intents,
            r.bytes_before,
            r.bytes_after
        );
    } else {
        outln!("nothing may go yet");
    }
    Ok(())
}

async fn export(channel: &Conn, args: ExportArgs) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};

    let format = match args.format.as_str() {
        "ocsf" => pb::ExportFormat::Ocsf,
        _ => pb::ExportFormat::Jsonl,
    };
    let req = pb::ExportJournalRequest {
        query: Some(args.filters.request(0, 0)?),
        format: format.into(),
    };
    let mut stream = JournalClient::new(channel.clone())
        .export(req)
        .await?
        .into_inner();
    let mut sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create `{}`", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let progress = args.output.is_some() || std::io::stderr().is_terminal();
    let (mut count, mut last, mut head, mut shown) = (0u64, 0, 0, std::time::Instant::now());
    while let Some(e) = stream.message().await? {
        if let Err(err) = writeln!(sink, "{}", e.json) {
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(err.into());
        }
        (count, last, head) = (count + 1, e.seq, e.head_seq);
        if progress && shown.elapsed() >= std::time::Duration::from_secs(1) {
            eprintln!("parapet: exported {count} events, at entry {last} of {head}");
            shown = std::time::Instant::now();
        }
    }
    sink.flush()?;
    if progress {
        eprintln!("parapet: exported {count} events, through entry {last} of {head}");
    }
    Ok(())
}

async fn query(channel: &Conn, args: QueryArgs, out: Output) -> anyhow::Result<()> {
    let req = args.filters.request(args.after, args.limit)?;
    let mut stream = JournalClient::new(channel.clone())
        .query(req)
        .await?
        .into_inner();
    let (mut rows, mut count, mut last) = (Vec::new(), 0u32, 0);
    while let Some(e) = stream.message().await? {
        count += 1;
        last = e.seq;
        if out.json {
            let payload: serde_json::Value =
                serde_json::from_str(&e.payload_json).unwrap_or_default();
            out.json_line(&json!({
                "seq": e.seq,
                "time": output::time(e.time.as_ref()),
                "intent_id": e.intent_id,
                "kind": e.kind,
                "actor": e.actor,
                "payload": payload,
                "hash": e.hash,
                "prev_hash": e.prev_hash,
            }));
        } else {
            rows.push(vec![
                e.seq.to_string(),
                output::time(e.time.as_ref()),
                e.intent_id,
                e.kind,
                e.actor,
                summary(&e.payload_json),
            ]);
        }
    }
    if !out.json {
        out.table(
            &["SEQ", "TIME", "INTENT", "EVENT", "ACTOR", "DETAILS"],
            rows,
        );
    }
    if args.limit > 0 && count == args.limit {
        eprintln!("parapet: more entries may follow: --after {last}");
    }
    Ok(())
}

/// A short line from an event's payload; the full payload is in `--json`.
fn summary(payload: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let pick = |k: &str| {
        value
            .get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    if let Some(d) = value.get("decision") {
        return format!(
            "outcome={}",
            d.get("outcome").and_then(|o| o.as_str()).unwrap_or("?")
        );
    }
    if let Some(intent) = value.get("intent") {
        let steps = intent
            .get("steps")
            .and_then(|s| s.as_array())
            .map_or(0, Vec::len);
        let rule = intent
            .pointer("/detection/rule_id")
            .and_then(|r| r.as_str())
            .unwrap_or("?");
        return format!("detection={rule} steps={steps}");
    }
    ["step", "cause", "reason", "error", "expires_at"]
        .iter()
        .filter_map(|k| pick(k).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
}
