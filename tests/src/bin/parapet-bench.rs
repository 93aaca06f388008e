//! `parapet-bench`: Submit throughput and latency over real gRPC, against a bare tonic echo of
//! the very same messages on the same machine, so what is measured is Parapet's own cost.
//!
//! ```sh
//! cargo run --release -p parapet-tests --bin parapet-bench -- --runs 3
//! ```
//!
//! Each run, for each mode: a fresh Parapet (or the one `--target` names) answers one probe; a
//! bare echo service answers that answer to every request, and is driven with the load first;
//! then Parapet is driven with the same load, closed-loop, for `--seconds` after `--warmup`;
//! then again open-loop at half the throughput it reached, for the latency at that load;
//! then closed-loop again with the same requests as JSON to `POST /v1/intents` on the HTTP
//! listener (HTTP/1.1, a connection per request in flight), for the JSON API's cost next to
//! gRPC's.
//! The journal's figures (entries per `fdatasync`, sync and index-write times) come from the
//! server's own `/metrics`, read before and after. After each run every intent Parapet
//! acknowledged is looked for in its journal, and a missing one fails the bench.
//! `--json FILE` writes the summary (and every run's figures) for scripts to compare.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use parapet_orchestrator::{clock::SystemClock, config::Config, server};
use parapet_proto::v1::{self as pb, intents_client::IntentsClient, journal_client::JournalClient};
use tonic::transport::Channel;

mod echo {
    tonic::include_proto!("parapet.bench");
}

/// The allocator `parapet` itself runs with, so the in-process server is the one users run.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const POLICY: &str = include_str!("../../bench-policy.toml");

#[derive(Parser)]
#[command(about = "Submit throughput and latency: Parapet against a bare gRPC echo")]
struct Args {
    /// What Parapet does with the intents
    #[arg(long, value_enum, default_value = "all")]
    mode: ModeArg,
    /// Seconds measured, after the warm-up
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of load before measuring
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Requests in flight
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// HTTP/2 connections they share
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Runs of every mode; the summary gives the median of each figure
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Submit with `wait`: answered once the action is in force, not once it is decided
    #[arg(long)]
    wait: bool,
    /// A running Parapet (`http://host:port`, plaintext) instead of a fresh one; it should run
    /// `tests/bench-policy.toml`
    #[arg(long)]
    target: Option<String>,
    /// That server's metrics (`http://host:port/metrics`), for the journal figures
    #[arg(long, requires = "target")]
    metrics: Option<String>,
    /// That server's HTTP listener (`http://host:port`), to drive `POST /v1/intents` too
    #[arg(long, requires = "target")]
    target_http: Option<String>,
    /// Keep the fresh servers' data directories under this directory
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// Write the summary and every run's figures to this file as JSON
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum ModeArg {
    All,
    Noop,
    Edl,
    Shadow,
}

/// What Parapet does with most intents of the mix.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Decided and journaled, then waiting for approval: no adapter call.
    Noop,
    /// Decided `execute`: the EDL adapter publishes each block.
    Edl,
    /// Decided `shadow`: recorded, not done.
    Shadow,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Noop => "noop",
            Mode::Edl => "edl",
            Mode::Shadow => "shadow",
        }
    }

    fn detection(self) -> &'static str {
        match self {
            Mode::Noop => "bench.triage",
            Mode::Edl => "edr.c2_beacon",
            Mode::Shadow => "bench.watch",
        }
    }
}

/// The mix: of every hundred requests, five repeat an earlier one (same idempotency key: a
/// retry, answered with the intent already there), four isolate a host (the first 20 act, the
/// rest are denied by budget), and the rest act on an address no other request names.
fn request(mode: Mode, n: u64, wait: bool, run: usize) -> pb::SubmitIntentRequest {
    let k = n % 100;
    if k < 5 && n >= 100 {
        return request(mode, n - 50, wait, run);
    }
    let (detection, kind, target) = if (5..9).contains(&k) {
        (
            "edr.c2_beacon",
            "isolate_host",
            format!("host:ws-{run}-{n}"),
        )
    } else {
        let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
        (mode.detection(), "block_ip", format!("ip:{ip}"))
    };
    let (target_kind, target_id) = target.split_once(':').unwrap();
    let mut attributes = BTreeMap::from([("site".to_owned(), "hq".to_owned())]);
    if target_kind == "host" {
        let ip = format!("172.16.{}.{}", (n >> 8) & 255, n & 255);
        attributes.insert("ip".to_owned(), ip);
    }
    pb::SubmitIntentRequest {
        idempotency_key: format!("alert-{}-{run}-{}-{n}", session(), mode.name()),
        source: "xdr".into(),
        detection: Some(pb::Detection {
            rule_id: detection.into(),
            severity: pb::Severity::Critical as i32,
            confidence: 0.93,
            title: "beacon to known C2".into(),
        }),
        steps: vec![pb::Step {
            kind: kind.into(),
            target: Some(pb::Target {
                kind: target_kind.into(),
                id: target_id.into(),
                attributes: attributes.into_iter().collect(),
            }),
            params: Default::default(),
        }],
        ttl: Some(parapet_proto::wkt::Duration {
            seconds: 4 * 3600,
            nanos: 0,
        }),
        reason: "beacon to known C2".into(),
        wait,
        finding: String::new(),
    }
}

/// This invocation, in its idempotency keys: a server given with `--target` has seen earlier
/// runs' keys, and would answer them as retries.
fn session() -> u64 {
    static SESSION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SESSION.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// The same unary call on either service.
#[derive(Clone)]
enum Client {
    Parapet(IntentsClient<Channel>),
    Echo(echo::echo_client::EchoClient<Channel>),
    /// `POST {url}/v1/intents` with the request as proto3 JSON.
    Json(reqwest::Client, String),
}

/// Which client a drive uses.
#[derive(Clone)]
enum Via {
    Echo,
    Grpc,
    Json(reqwest::Client, String),
}

impl Client {
    /// One Submit; the intent id Parapet acknowledged (none from the echo).
    async fn submit(&mut self, req: pb::SubmitIntentRequest) -> anyhow::Result<Option<String>> {
        match self {
            Client::Parapet(c) => Ok(Some(c.submit(req).await?.into_inner().intent_id)),
            Client::Echo(c) => c.submit(req).await.map(|_| None).map_err(Into::into),
            Client::Json(http, url) => {
                let body = serde_json::to_vec(&req)?;
                let answer = http
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = answer.status().as_u16();
                let body = answer.bytes().await?;
                // a denial (by the guardrails, 403; by a budget or rate, 429) is an answer,
                // as it is over gRPC, and carries the journaled intent's id too
                if (200..300).contains(&status) || status == 403 || status == 429 {
                    let answer: serde_json::Value = serde_json::from_slice(&body)?;
                    Ok(answer["intentId"].as_str().map(str::to_owned))
                } else {
                    anyhow::bail!("HTTP {status}")
                }
            }
        }
    }
}

struct Echo {
    reply: pb::SubmitIntentResponse,
}

#[tonic::async_trait]
impl echo::echo_server::Echo for Echo {
    async fn submit(
        &self,
        request: tonic::Request<pb::SubmitIntentRequest>,
    ) -> Result<tonic::Response<pb::SubmitIntentResponse>, tonic::Status> {
        drop(request.into_inner());
        Ok(tonic::Response::new(self.reply.clone()))
    }
}

/// Serves the echo on a loopback port until the returned sender is dropped.
async fn start_echo(
    reply: pb::SubmitIntentResponse,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(echo::echo_server::EchoServer::new(Echo { reply }))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );
    (addr, stop)
}

async fn channels(url: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let channel = Channel::from_shared(url.to_owned())?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        out.push(channel);
    }
    Ok(out)
}

/// How a load is offered.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// Each of the in-flight workers sends its next request as soon as the last is answered.
    Closed,
    /// Requests at this rate per second, each worker on its share of the schedule.
    Open(f64),
}

#[derive(Debug, Clone)]
struct Measured {
    rate: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    errors: u64,
    /// Every intent id acknowledged, warm-up included.
    acknowledged: Vec<String>,
}

impl Measured {
    fn json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        serde_json::json!({
            "rate": self.rate,
            "p50_ms": ms(self.p50),
            "p99_ms": ms(self.p99),
            "p999_ms": ms(self.p999),
            "errors": self.errors,
        })
    }
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "{:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms",
            self.rate,
            ms(self.p50),
            ms(self.p99),
            ms(self.p999)
        )?;
        if self.errors > 0 {
            write!(f, "  ({} errors)", self.errors)?;
        }
        Ok(())
    }
}

struct Drive<'a> {
    channels: &'a [Channel],
    via: Via,
    mode: Mode,
    wait: bool,
    run: usize,
    in_flight: usize,
    warmup: Duration,
    measure: Duration,
    /// Request numbers already used on this server: each drive goes on from there.
    next: Arc<AtomicU64>,
}

impl Drive<'_> {
    async fn run(&self, load: Load) -> Measured {
        let start = Instant::now();
        let (warmup, end) = (self.warmup, self.warmup + self.measure);
        let mut workers = tokio::task::JoinSet::new();
        let first = self.next.load(Ordering::Relaxed);
        let scheduled = Arc::new(AtomicU64::new(0));
        for w in 0..self.in_flight {
            let channel = self.channels[w % self.channels.len()].clone();
            let mut client = match &self.via {
                Via::Grpc => Client::Parapet(IntentsClient::new(channel)),
                Via::Echo => Client::Echo(echo::echo_client::EchoClient::new(channel)),
                Via::Json(http, base) => Client::Json(http.clone(), format!("{base}/v1/intents")),
            };
            let (next, scheduled) = (self.next.clone(), scheduled.clone());
            let (mode, wait, run) = (self.mode, self.wait, self.run);
            workers.spawn(async move {
                let mut latencies = Vec::new();
                let mut acknowledged = Vec::new();
                let mut errors = 0u64;
                loop {
                    if let Load::Open(rate) = load {
                        let i = scheduled.fetch_add(1, Ordering::Relaxed);
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let elapsed = start.elapsed();
                    if elapsed > end {
                        return (latencies, acknowledged, errors);
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let req = request(mode, n, wait, run);
                    let t = Instant::now();
                    let ok = client.submit(req).await;
                    if let Ok(Some(id)) = &ok {
                        acknowledged.push(id.clone());
                    }
                    if elapsed >= warmup {
                        match ok {
                            Ok(_) => latencies.push(t.elapsed()),
                            Err(e) => {
                                if errors == 0 {
                                    eprintln!("parapet-bench: Submit failed: {e}");
                                }
                                errors += 1;
                            }
                        }
                    }
                }
            });
        }
        let mut all = Vec::new();
        let mut acknowledged = Vec::new();
        let mut errors = 0;
        while let Some(done) = workers.join_next().await {
            let (l, a, e) = done.unwrap();
            all.extend(l);
            acknowledged.extend(a);
            errors += e;
        }
        if all.is_empty() {
            panic!(
                "no request answered in time ({} sent, {errors} errors)",
                self.next.load(Ordering::Relaxed) - first
            );
        }
        all.sort_unstable();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        Measured {
            rate: all.len() as f64 / self.measure.as_secs_f64(),
            p50: pct(0.50),
            p99: pct(0.99),
            p999: pct(0.999),
            errors,
            acknowledged,
        }
    }
}

/// The journal's histograms as `/metrics` shows them: name → (bucket bounds and counts, sum,
/// count), each summed over its series.
#[derive(Debug, Default, Clone)]
struct Scrape(BTreeMap<String, Histogram>);

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: BTreeMap<String, f64>,
    sum: f64,
    count: f64,
}

impl Scrape {
    async fn read(url: &str) -> anyhow::Result<Self> {
        let text = reqwest::get(url).await?.error_for_status()?.text().await?;
        let mut out = Scrape::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            let (name, part) = if let Some(n) = metric.strip_suffix("_bucket") {
                (n, "bucket")
            } else if let Some(n) = metric.strip_suffix("_sum") {
                (n, "sum")
            } else if let Some(n) = metric.strip_suffix("_count") {
                (n, "count")
            } else {
                continue;
            };
            let h = out.0.entry(name.to_owned()).or_default();
            match part {
                "bucket" => {
                    let le = labels
                        .split(',')
                        .find_map(|l| l.trim_end_matches('}').strip_prefix("le=\""))
                        .map(|l| l.trim_end_matches('"').to_owned())
                        .unwrap_or_default();
                    *h.buckets.entry(le).or_default() += value;
                }
                "sum" => h.sum += value,
                _ => h.count += value,
            }
        }
        Ok(out)
    }

    /// What happened between `before` and this scrape.
    fn since(&self, before: &Scrape) -> Scrape {
        let mut out = self.clone();
        for (name, h) in &mut out.0 {
            if let Some(b) = before.0.get(name) {
                h.sum -= b.sum;
                h.count -= b.count;
                for (le, c) in &mut h.buckets {
                    *c -= b.buckets.get(le).copied().unwrap_or_default();
                }
            }
        }
        out
    }

    fn mean(&self, name: &str) -> Option<f64> {
        let h = self.0.get(name)?;
        (h.count > 0.0).then(|| h.sum / h.count)
    }

    /// The smallest bucket bound holding at least `q` of the observations.
    fn quantile(&self, name: &str, q: f64) -> Option<f64> {
        let h = self.0.get(name)?;
        let mut bounds: Vec<(f64, f64)> = h
            .buckets
            .iter()
            .map(|(le, c)| (le.parse().unwrap_or(f64::INFINITY), *c))
            .collect();
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        bounds
            .into_iter()
            .find(|(_, c)| *c >= q * h.count)
            .map(|(le, _)| le)
    }
}

/// The journal's side of a measured stretch.
#[derive(Debug, Clone, Default)]
struct JournalFigures {
    entries_per_sync: f64,
    sync_mean: f64,
    sync_p99: f64,
    index_mean: f64,
}

impl JournalFigures {
    fn of(delta: &Scrape) -> Option<Self> {
        Some(Self {
            entries_per_sync: delta.mean("parapet_journal_group_commit_entries")?,
            sync_mean: delta.mean("parapet_journal_sync_duration_seconds")?,
            sync_p99: delta.quantile("parapet_journal_sync_duration_seconds", 0.99)?,
            index_mean: delta.mean("parapet_journal_index_duration_seconds")?,
        })
    }
}

impl std::fmt::Display for JournalFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} entries per fdatasync; log write + sync {:.3} ms mean, p99 ≤ {} ms; index write {:.3} ms mean",
            self.entries_per_sync,
            self.sync_mean * 1e3,
            self.sync_p99 * 1e3,
            self.index_mean * 1e3
        )
    }
}

/// The figures of one mode in one run.
struct Outcome {
    echo: Measured,
    parapet: Measured,
    half: Measured,
    /// The same load as JSON over HTTP, when the HTTP listener is known.
    json: Option<Measured>,
    journal: Option<JournalFigures>,
}

impl Outcome {
    fn ratio(&self) -> f64 {
        self.parapet.rate / self.echo.rate
    }

    /// JSON over HTTP's throughput against gRPC's.
    fn json_ratio(&self) -> Option<f64> {
        self.json.as_ref().map(|j| j.rate / self.parapet.rate)
    }
}

/// A Parapet to measure: started here on a fresh directory, or the one `--target` names.
struct Server {
    url: String,
    /// The HTTP listener, for the JSON API.
    http: Option<String>,
    metrics: Option<String>,
    running: Option<server::Running>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    async fn start(args: &Args, mode: Mode, run: usize) -> anyhow::Result<Self> {
        if let Some(url) = &args.target {
            return Ok(Self {
                url: url.clone(),
                http: args.target_http.clone(),
                metrics: args.metrics.clone(),
                running: None,
                _dir: None,
            });
        }
        let (dir, base) = match &args.data {
            Some(d) => (None, d.join(format!("{}-{run}", mode.name()))),
            None => {
                let d = tempfile::tempdir()?;
                let p = d.path().to_owned();
                (Some(d), p)
            }
        };
        std::fs::create_dir_all(&base)?;
        let policy = base.join("bench-policy.toml");
        std::fs::write(&policy, POLICY)?;
        let config = Config {
            grpc_addr: "127.0.0.1:0".parse()?,
            http_addr: "127.0.0.1:0".parse()?,
            data_dir: base.join("data"),
            policy: Some(policy),
            // plaintext on loopback: the network is measured, not TLS
            auth: parapet_orchestrator::config::AuthConfig {
                insecure: true,
                ..Default::default()
            },
            // the mix's budget denials come from one source at load: journal every one, as
            // the figures always have (a server given with --target keeps its own limits)
            limits: parapet_orchestrator::engine::RequestLimits {
                denials_per_minute: std::num::NonZeroU32::MAX,
                denial_burst: std::num::NonZeroU32::MAX,
                ..Default::default()
            },
            ..Config::default()
        };
        let running = server::start(&config, Arc::new(SystemClock)).await?;
        Ok(Self {
            url: format!("http://{}", running.grpc_addr),
            http: Some(format!("http://{}", running.http_addr)),
            metrics: Some(format!("http://{}/metrics", running.http_addr)),
            running: Some(running),
            _dir: dir,
        })
    }

    async fn scrape(&self) -> Option<Scrape> {
        let url = self.metrics.as_ref()?;
        match Scrape::read(url).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("parapet-bench: cannot read {url}: {e:#}");
                None
            }
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        if let Some(r) = self.running {
            r.shutdown().await?;
        }
        Ok(())
    }
}

async fn measure(args: &Args, mode: Mode, run: usize) -> anyhow::Result<Outcome> {
    let server = Server::start(args, mode, run).await?;
    let parapet = channels(&server.url, args.connections).await?;
    let next = Arc::new(AtomicU64::new(0));

    // the echo answers what Parapet answers
    let probe = request(mode, next.fetch_add(1, Ordering::Relaxed), args.wait, run);
    let reply = IntentsClient::new(parapet[0].clone())
        .submit(probe)
        .await
        .context("the probe Submit failed: does the server run tests/bench-policy.toml?")?
        .into_inner();
    let (echo_addr, echo_stop) = start_echo(reply).await;
    let echo = channels(&format!("http://{echo_addr}"), args.connections).await?;
    let drive = |channels, via, next| Drive {
        channels,
        via,
        mode,
        wait: args.wait,
        run,
        in_flight: args.in_flight,
        warmup: Duration::from_secs_f64(args.warmup),
        measure: Duration::from_secs_f64(args.seconds),
        next,
    };
    let echo_figures = drive(&echo, Via::Echo, Arc::new(AtomicU64::new(1)))
        .run(Load::Closed)
        .await;
    drop(echo_stop);

    let before = server.scrape().await;
    let full = drive(&parapet, Via::Grpc, next.clone())
        .run(Load::Closed)
        .await;
    let after = server.scrape().await;
    let half = drive(&parapet, Via::Grpc, next.clone())
        .run(Load::Open(full.rate / 2.0))
        .await;
    let json = match &server.http {
        Some(base) => {
            let http = reqwest::Client::builder()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(args.in_flight)
                .build()?;
            let via = Via::Json(http, base.clone());
            Some(drive(&parapet, via, next.clone()).run(Load::Closed).await)
        }
        None => None,
    };
    let journal = before
        .zip(after)
        .and_then(|(b, a)| JournalFigures::of(&a.since(&b)));

    let mode_name = mode.name();
    println!("run {run} mode {mode_name}:");
    println!("  echo           {echo_figures}");
    println!(
        "  parapet        {full}   ratio {:.2}",
        full.rate / echo_figures.rate
    );
    println!("  parapet @ 1/2  {half}");
    if let Some(j) = &json {
        println!("  parapet JSON   {j}   to gRPC {:.2}", j.rate / full.rate);
    }
    if let Some(j) = &journal {
        println!("  journal        {j}");
    }
    let acknowledged: Vec<&String> = [Some(&full), Some(&half), json.as_ref()]
        .into_iter()
        .flatten()
        .flat_map(|m| &m.acknowledged)
        .collect();
    let journaled = journaled(&parapet[0]).await?;
    let missing = acknowledged
        .iter()
        .filter(|id| !journaled.contains(id.as_str()))
        .count();
    if missing > 0 {
        anyhow::bail!(
            "{missing} of the {} intents acknowledged are not in the journal",
            acknowledged.len()
        );
    }
    println!(
        "  acknowledged   {} intents, every one in the journal",
        acknowledged.len()
    );
    drop(parapet);
    server.stop().await?;
    Ok(Outcome {
        echo: echo_figures,
        parapet: full,
        half,
        json,
        journal,
    })
}

/// The ids of every intent the server's journal received.
async fn journaled(channel: &Channel) -> anyhow::Result<std::collections::HashSet<String>> {
    let mut entries = JournalClient::new(channel.clone())
        .query(pb::QueryJournalRequest {
            events: vec!["received".into()],
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut ids = std::collections::HashSet::new();
    while let Some(entry) = entries.message().await? {
        ids.insert(entry.intent_id);
    }
    Ok(ids)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // reqwest (for /metrics) is built without a TLS provider of its own
    let _ = rustls::crypto::ring::default_provider().install_default();
    let modes: &[Mode] = match args.mode {
        ModeArg::All => &[Mode::Noop, Mode::Edl, Mode::Shadow],
        ModeArg::Noop => &[Mode::Noop],
        ModeArg::Edl => &[Mode::Edl],
        ModeArg::Shadow => &[Mode::Shadow],
    };
    println!(
        "parapet-bench: {} in flight over {} connections, {} s after {} s warm-up{}",
        args.in_flight,
        args.connections,
        args.seconds,
        args.warmup,
        if args.wait { ", Submit with wait" } else { "" }
    );
    let mut results: BTreeMap<&str, Vec<Outcome>> = BTreeMap::new();
    for run in 1..=args.runs.max(1) {
        for &mode in modes {
            let outcome = measure(&args, mode, run).await?;
            results.entry(mode.name()).or_default().push(outcome);
        }
    }
    println!("summary (median of {} runs):", args.runs.max(1));
    for (mode, outcomes) in &results {
        let m = |f: &dyn Fn(&Outcome) -> f64| median(outcomes.iter().map(f).collect());
        println!(
            "  {mode:<7} echo {:>7.0}/s  parapet {:>7.0}/s  ratio {:.2}  p99 {:.2} ms  p99 @ 1/2 load {:.2} ms (p50 {:.2}, p99.9 {:.2})",
            m(&|o| o.echo.rate),
            m(&|o| o.parapet.rate),
            m(&|o| o.ratio()),
            m(&|o| o.parapet.p99.as_secs_f64() * 1e3),
            m(&|o| o.half.p99.as_secs_f64() * 1e3),
            m(&|o| o.half.p50.as_secs_f64() * 1e3),
            m(&|o| o.half.p999.as_secs_f64() * 1e3),
        );
        if outcomes.iter().all(|o| o.json.is_some()) {
            let j = |f: &dyn Fn(&Measured) -> f64| {
                median(
                    outcomes
                        .iter()
                        .filter_map(|o| o.json.as_ref().map(f))
                        .collect(),
                )
            };
            println!(
                "  {:<7} JSON {:>7.0}/s  to gRPC {:.2}  p99 {:.2} ms",
                "",
                j(&|m| m.rate),
                median(outcomes.iter().filter_map(Outcome::json_ratio).collect()),
                j(&|m| m.p99.as_secs_f64() * 1e3),
            );
        }
    }
    if let Some(path) = &args.json {
        let modes: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(mode, outcomes)| (mode.to_string(), summary(outcomes)))
            .collect();
        let document = serde_json::json!({
            "settings": {
                "in_flight": args.in_flight,
                "connections": args.connections,
                "seconds": args.seconds,
                "warmup": args.warmup,
                "runs": args.runs.max(1),
                "wait": args.wait,
            },
            "modes": modes,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&document)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// One mode's figures for `--json`: the median of each over the runs, and every run's.
fn summary(outcomes: &[Outcome]) -> serde_json::Value {
    let m = |f: &dyn Fn(&Outcome) -> f64| median(outcomes.iter().map(f).collect());
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let all_json = outcomes.iter().all(|o| o.json.is_some());
    let journal = |f: &dyn Fn(&JournalFigures) -> f64| {
        let v: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| o.journal.as_ref().map(f))
            .collect();
        (v.len() == outcomes.len()).then(|| median(v))
    };
    serde_json::json!({
        "echo": m(&|o| o.echo.rate),
        "parapet": m(&|o| o.parapet.rate),
        "ratio": m(&|o| o.ratio()),
        "full_load": {
            "p50_ms": m(&|o| ms(o.parapet.p50)),
            "p99_ms": m(&|o| ms(o.parapet.p99)),
            "p999_ms": m(&|o| ms(o.parapet.p999)),
        },
        "half_load": {
            "rate": m(&|o| o.half.rate),
            "p50_ms": m(&|o| ms(o.half.p50)),
            "p99_ms": m(&|o| ms(o.half.p99)),
            "p999_ms": m(&|o| ms(o.half.p999)),
        },
        "json": all_json.then(|| serde_json::json!({
            "rate": median(outcomes.iter().filter_map(|o| o.json.as_ref().map(|j| j.rate)).collect()),
            "to_grpc": median(outcomes.iter().filter_map(Outcome::json_ratio).collect()),
            "p99_ms": median(outcomes.iter().filter_map(|o| o.json.as_ref().map(|j| ms(j.p99))).collect()),
        })),
        "entries_per_sync": journal(&|j| j.entries_per_sync),
        "sync_ms": journal(&|j| j.sync_mean * 1e3),
        "index_ms": journal(&|j| j.index_mean * 1e3),
        "runs": outcomes.iter().map(|o| serde_json::json!({
            "echo": o.echo.json(),
            "parapet": o.parapet.json(),
            "half_load": o.half.json(),
            "json": o.json.as_ref().map(Measured::json),
            "journal": o.journal.as_ref().map(|j| serde_json::json!({
                "entries_per_sync": j.entries_per_sync,
                "sync_ms": j.sync_mean * 1e3,
                "sync_p99_ms": j.sync_p99 * 1e3,
                "index_ms": j.index_mean * 1e3,
            })),
        })).collect::<Vec<_>>(),
    })
}
