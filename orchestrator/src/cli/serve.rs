//! `parapet serve`

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use parapet_orchestrator::{clock::SystemClock, config::Config, server};
use tracing_subscriber::EnvFilter;

#[derive(clap::Args)]
pub struct Args {
    /// Config file (TOML); flags override it.
    #[arg(long, env = "PARAPET_CONFIG")]
    config: Option<PathBuf>,
    /// Policy file (TOML); the built-in example policy if neither this nor the config names one.
    #[arg(long, env = "PARAPET_POLICY")]
    policy: Option<PathBuf>,
    /// Where the journal, indexes and lists are kept [default: ./parapet-data]
    #[arg(long, env = "PARAPET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051]
    #[arg(long)]
    grpc_addr: Option<SocketAddr>,
    /// HTTP listen address, for EDL lists [default: 127.0.0.1:8080]
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Serve gRPC without TLS or authentication: anyone who can connect may do anything. Only
    /// allowed on a loopback address; for trying Parapet out.
    #[arg(long)]
    insecure: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = Config::default();
    if let Some(path) = &args.config {
        config = config.merge_file(path)?;
    }
    if let Some(p) = args.policy {
        config.policy = Some(p);
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(a) = args.grpc_addr {
        config.grpc_addr = a;
    }
    if let Some(a) = args.http_addr {
        config.http_addr = a;
    }
    if args.insecure {
        config.auth.insecure = true;
    }
    let traces = logs_and_traces(&config, args.log_json)?;
    let running = server::start(&config, Arc::new(SystemClock)).await?;
    let policy = running.engine().policy();
    eprintln!(
        "parapet: listening: grpc={} http={}{} policy={} ({}) data={}",
        running.grpc_addr,
        running.http_addr,
        running
            .metrics_addr
            .map(|a| format!(" metrics={a}"))
            .unwrap_or_default(),
        config
            .policy
            .as_ref()
            .map_or("built-in example".into(), |p| p.display().to_string()),
        policy.digest(),
        config.data_dir.display(),
    );
    for list in running.engine().registry().kinds() {
        tracing::debug!(kind = %list, "action kind available");
    }
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => { r?; break; }
            _ = term.recv() => break,
            _ = hup.recv() => match running.engine().reload_policy("signal:SIGHUP").await {
                Ok((_, digest)) => eprintln!("parapet: policy reloaded ({digest})"),
                Err(e) => eprintln!("parapet: {e}"),
            },
        }
    }
    eprintln!("parapet: stopping; active actions stay in force");
    let stopped = running.shutdown().await;
    if let Some(provider) = traces {
        let _ = provider.shutdown();
    }
    stopped
}

/// Logs on stderr (text or JSON lines, with the ids of the spans they happen in) and, when an
/// OTLP endpoint is configured, traces exported to it.
fn logs_and_traces(
    config: &Config,
    json: bool,
) -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};

    let filter = EnvFilter::try_from_env("PARAPET_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // colours only for a person at a terminal, not in files or the service manager's log
    let ansi = std::io::stderr().is_terminal();
    let text = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
    });
    let lines = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    let provider = match &config.telemetry.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let name = config
                .telemetry
                .service_name
                .clone()
                .unwrap_or_else(|| "parapet".into());
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(name)
                .build();
            Some(
                opentelemetry_sdk::trace::SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
        None => None,
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("parapet")));
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(lines)
        .with(otel)
        .init();
    Ok(provider)
}
