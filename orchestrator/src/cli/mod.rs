//! The command line. Data goes to stdout (a table, or JSON lines with `--json`); messages and
//! errors go to stderr.
//!
//! One file per noun: `serve`, `intent` (submit, get, list, watch), `rollback`, `journal`,
//! `policy`, `admin` (kill switch, status, reload); `output` renders what they print.

/// `println!` for data: a closed stdout (`parapet journal query | head`) ends the program
/// quietly instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod admin;
mod intent;
mod journal;
mod output;
mod people;
mod policy;
mod rollback;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tonic::transport::{Channel, Endpoint};

#[derive(Parser)]
#[command(
    name = "parapet",
    version,
    about = "Closed-loop security response with guardrails"
)]
struct Cli {
    /// The Parapet server to talk to.
    #[arg(
        long,
        global = true,
        env = "PARAPET_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Print JSON lines instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::Args),
    /// Submit a response intent.
    Submit(intent::SubmitArgs),
    /// Show one intent.
    Get(intent::GetArgs),
    /// List intents, newest first.
    List(intent::ListArgs),
    /// Follow state changes of one intent, or of all.
    Watch(intent::WatchArgs),
    /// Roll back an intent's actions.
    Rollback(rollback::Args),
    /// Read the journal.
    #[command(subcommand)]
    Journal(journal::Command),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Intents waiting for approval.
    Pending,
    /// Approve a waiting intent (the guardrails are checked again now).
    Approve(people::AnswerArgs),
    /// Reject a waiting intent.
    Reject(people::AnswerArgs),
    /// Judge an intent's detection: --true-positive or --false-positive.
    Verdict(people::VerdictArgs),
    /// True and false positives per detection and action kind.
    Precision,
    /// Engage or release the kill switch.
    #[command(subcommand)]
    KillSwitch(admin::KillSwitch),
    /// What the guardrails hold now: policy, kill switches, budgets, rate limits.
    Status,
    /// Let a detection demoted for too many false positives act alone again.
    RestoreDetection(admin::RestoreArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parapet: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = output::Output { json: cli.json };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Submit(args) => intent::submit(&connect(&cli.server).await?, args, out).await,
            Command::Get(args) => intent::get(&connect(&cli.server).await?, args, out).await,
            Command::List(args) => intent::list(&connect(&cli.server).await?, args, out).await,
            Command::Watch(args) => intent::watch(&connect(&cli.server).await?, args, out).await,
            Command::Rollback(args) => rollback::run(&connect(&cli.server).await?, args, out).await,
            Command::Journal(cmd) => journal::run(&connect(&cli.server).await?, cmd, out).await,
            Command::Policy(policy::Command::Reload { by }) => {
                admin::reload(&connect(&cli.server).await?, by, out).await
            }
            Command::Policy(policy::Command::Replay(args)) => {
                policy::replay(&connect(&cli.server).await?, args, out).await
            }
            Command::Policy(cmd) => policy::run(cmd, out),
            Command::KillSwitch(cmd) => {
                admin::kill_switch(&connect(&cli.server).await?, cmd, out).await
            }
            Command::Status => admin::status(&connect(&cli.server).await?, out).await,
            Command::RestoreDetection(a) => {
                admin::restore(&connect(&cli.server).await?, a, out).await
            }
            Command::Pending => people::pending(&connect(&cli.server).await?, out).await,
            Command::Approve(a) => people::answer(&connect(&cli.server).await?, true, a, out).await,
            Command::Reject(a) => people::answer(&connect(&cli.server).await?, false, a, out).await,
            Command::Verdict(a) => people::verdict(&connect(&cli.server).await?, a, out).await,
            Command::Precision => people::precision(&connect(&cli.server).await?, out).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parapet: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

async fn connect(server: &str) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|e| anyhow::anyhow!("`{server}` is not a server address: {e}"))?;
    endpoint
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach Parapet at {server}: {e}"))
}

/// Who the journal records for a command: `--by`, else the login name.
fn actor(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into())
}

/// A `KIND:ID` target given on the command line.
fn target_arg(text: &str) -> anyhow::Result<parapet_proto::v1::Target> {
    match text.split_once(':') {
        Some((kind, id)) => Ok(parapet_proto::v1::Target {
            kind: kind.into(),
            id: id.into(),
            attributes: Default::default(),
        }),
        None => Err(anyhow::anyhow!("--target `{text}` must be KIND:ID")),
    }
}

/// A gRPC error as a person wants to read it: the code and the server's message.
fn describe(e: &anyhow::Error) -> String {
    match e.downcast_ref::<tonic::Status>() {
        Some(status) => format!("{:?}: {}", status.code(), status.message()),
        None => format!("{e:#}"),
    }
}
