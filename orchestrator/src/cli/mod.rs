//! The command line. Data goes to stdout (a table, or JSON lines with `--json`); messages and
//! errors go to stderr.
//!
//! One file per noun: `serve`, `intent` (submit, get, list, watch), `rollback`, `journal`,
//! `policy`, `admin` (kill switch, status, reload), `mcp` (the MCP server on stdio); `output`
//! renders what they print.

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
mod bouncer;
mod intent;
mod journal;
mod mcp;
mod output;
mod people;
mod policy;
mod rollback;
mod serve;
mod token;

use std::process::ExitCode;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
pub use parapet_orchestrator::grpc::client::{Bearer, Conn};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::interceptor::InterceptedService,
    transport::{Certificate, ClientTlsConfig, Endpoint, Identity},
};

/// How the CLI proves who it is: a client certificate, a token, or neither.
#[derive(clap::Args, Clone)]
struct Credentials {
    /// The CA that signed the server's certificate (PEM), for `https://` servers.
    #[arg(long, global = true, env = "PARAPET_CA")]
    ca: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS, with --cert-key.
    #[arg(long, global = true, env = "PARAPET_CERT", requires = "cert_key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "PARAPET_CERT_KEY")]
    cert_key: Option<PathBuf>,
    /// A file holding a bearer token (or the token in $PARAPET_TOKEN).
    #[arg(long, global = true, env = "PARAPET_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

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
    #[command(flatten)]
    credentials: Credentials,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::Args),
    /// Submit a response intent.
    Submit(intent::SubmitArgs),
    /// The decision a submission would get now, with its reasons; nothing is done.
    WhatIf(intent::SubmitArgs),
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
    /// Bearer tokens for callers without client certificates.
    #[command(subcommand)]
    Token(token::Command),
    /// Keys of the CrowdSec bouncers that enforce Parapet's decisions.
    #[command(subcommand)]
    Bouncer(bouncer::Command),
    /// Serve MCP on stdin/stdout for an AI agent: its tools call the server as these
    /// credentials, through the guardrails.
    Mcp,
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
            Command::WhatIf(args) => {
                intent::what_if(&connect(&cli.server, &cli.credentials).await?, args, out).await
            }
            Command::Submit(args) => {
                intent::submit(&connect(&cli.server, &cli.credentials).await?, args, out).await
            }
            Command::Get(args) => {
                intent::get(&connect(&cli.server, &cli.credentials).await?, args, out).await
            }
            Command::List(args) => {
                intent::list(&connect(&cli.server, &cli.credentials).await?, args, out).await
            }
            Command::Watch(args) => {
                intent::watch(&connect(&cli.server, &cli.credentials).await?, args, out).await
            }
            Command::Rollback(args) => {
                rollback::run(&connect(&cli.server, &cli.credentials).await?, args, out).await
            }
            Command::Journal(journal::Command::Verify(args)) if args.data_dir.is_some() => {
                journal::verify_offline(args, out)
            }
            Command::Journal(cmd) => {
                journal::run(&connect(&cli.server, &cli.credentials).await?, cmd, out).await
            }
            Command::Policy(policy::Command::Reload { by }) => {
                admin::reload(&connect(&cli.server, &cli.credentials).await?, by, out).await
            }
            Command::Policy(policy::Command::Replay(args)) => {
                policy::replay(&connect(&cli.server, &cli.credentials).await?, args, out).await
            }
            Command::Policy(cmd) => policy::run(cmd, out).await,
            Command::Token(cmd) => token::run(cmd),
            Command::Bouncer(bouncer::Command::List { file }) => {
                bouncer::list(&connect(&cli.server, &cli.credentials).await?, &file, out).await
            }
            Command::Bouncer(cmd) => bouncer::edit(&cmd),
            Command::KillSwitch(cmd) => {
                admin::kill_switch(&connect(&cli.server, &cli.credentials).await?, cmd, out).await
            }
            Command::Status => {
                admin::status(&connect(&cli.server, &cli.credentials).await?, out).await
            }
            Command::RestoreDetection(a) => {
                admin::restore(&connect(&cli.server, &cli.credentials).await?, a, out).await
            }
            Command::Pending => {
                people::pending(&connect(&cli.server, &cli.credentials).await?, out).await
            }
            Command::Approve(a) => {
                people::answer(&connect(&cli.server, &cli.credentials).await?, true, a, out).await
            }
            Command::Reject(a) => {
                people::answer(
                    &connect(&cli.server, &cli.credentials).await?,
                    false,
                    a,
                    out,
                )
                .await
            }
            Command::Verdict(a) => {
                people::verdict(&connect(&cli.server, &cli.credentials).await?, a, out).await
            }
            Command::Mcp => mcp::run(connect(&cli.server, &cli.credentials).await?).await,
            Command::Precision => {
                people::precision(&connect(&cli.server, &cli.credentials).await?, out).await
            }
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

async fn connect(server: &str, creds: &Credentials) -> anyhow::Result<Conn> {
    let read =
        |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read `{}`", p.display()));
    let mut endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|e| anyhow::anyhow!("`{server}` is not a server address: {e}"))?;
    if server.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &creds.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&creds.cert, &creds.cert_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint.tls_config(tls).context("the TLS settings")?;
    }
    let token = match (&creds.token_file, std::env::var("PARAPET_TOKEN")) {
        (Some(path), _) => Some(String::from_utf8(read(path)?).context("the token file")?),
        (None, Ok(token)) => Some(token),
        (None, Err(_)) => None,
    };
    let bearer = token
        .map(|t| format!("Bearer {}", t.trim()).parse::<MetadataValue<Ascii>>())
        .transpose()
        .map_err(|_| anyhow::anyhow!("the token has characters a header cannot carry"))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach Parapet at {server}: {e}"))?;
    Ok(InterceptedService::new(channel, Bearer(bearer)))
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
