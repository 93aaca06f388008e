//! Builds Parapet from its configuration and runs its listeners.

use futures::StreamExt as _;
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use parapet_actions::{
    Registry,
    edl::{Edl, EdlConfig},
};
use parapet_policy::{EXAMPLE_POLICY, Policy};
use parapet_proto::v1::{
    FILE_DESCRIPTOR_SET, admin_server::AdminServer, approvals_server::ApprovalsServer,
    intents_server::IntentsServer, journal_server::JournalServer,
    rollbacks_server::RollbacksServer, verdicts_server::VerdictsServer,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::{
    auth,
    clock::SharedClock,
    config::Config,
    engine::{Engine, EngineConfig},
    grpc,
    journal::{Journal, kv::SledKv, log::FileLog},
    service::{
        Service,
        lists::{Published, Readers},
    },
};

/// How long a stop waits for open connections to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Largest request accepted; field limits refuse most oversized input earlier, by name.
const MAX_MESSAGE: usize = 1 << 20;

/// A running Parapet.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Where `/metrics` is served on its own, if it is.
    pub metrics_addr: Option<SocketAddr>,
    engine: Engine,
    /// The journal's writer thread, joined on shutdown: then the log and the index are closed.
    writer: Option<std::thread::JoinHandle<()>>,
    health: tonic_health::server::HealthReporter,
    stop: CancellationToken,
    /// Cuts the connections still open once the stop has waited long enough.
    cut: CancellationToken,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    http: JoinHandle<std::io::Result<()>>,
    /// Released last, once the journal is closed.
    lock: crate::lock::DataLock,
}

/// Reads the policy (the built-in example when none is configured) and validates it.
pub fn load_policy(config: &Config) -> anyhow::Result<Policy> {
    let (text, name) = match &config.policy {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read policy `{}`", path.display()))?,
            path.display().to_string(),
        ),
        None => (
            EXAMPLE_POLICY.to_owned(),
            "built-in example policy".to_owned(),
        ),
    };
    Policy::from_toml(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

/// Every mistake of a configuration and a policy that can be found without starting anything
/// or changing anything: the adapters' settings, credentials, scripts and firewall tables;
/// the policy's routes and grants against the adapters; the listeners' TLS files, token files
/// and authentication. `parapet policy check --config` and `serve` both ask this one function,
/// so what one refuses the other does, in the same words. Returns the HTTP listener's
/// credentials it read, for `serve` to use.
pub async fn preflight(
    config: &Config,
    policy: &Policy,
    policy_name: &str,
) -> anyhow::Result<Readers> {
    config.check().map_err(|e| anyhow::anyhow!("config: {e}"))?;
    for adapter in &config.adapters {
        adapter
            .preflight()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let instances = config.adapter_kinds();
    policy
        .check_adapters(|kind, route| {
            parapet_actions::registry::resolve_names(&instances, kind, route).map(drop)
        })
        .map_err(|e| anyhow::anyhow!("{policy_name}: {e}"))?;
    // whether plaintext is allowed is `serve --insecure`'s to say; the files are checked here
    if let Some(tls) = &config.http.tls {
        crate::http::serve::tls(tls)?;
    }
    crate::http::intake::Intakes::from_config(&config.intakes)?;
    for source in &config.crowdsec_sources {
        parapet_actions::settings::read_secret(&source.api_key_file, &source.api_key_env)
            .map_err(|e| anyhow::anyhow!("sources.crowdsec `{}`: {e}", source.name))?;
    }
    if let Some(tls) = &config.tls {
        authenticator(config)?;
        server_tls(tls)?;
    } else if config.auth.tokens.is_some() || !config.auth.identities.is_empty() {
        auth::Authenticator::new(&config.auth.identities, config.auth.tokens.as_deref())?;
    }
    Readers::from_config(config)
}

/// The policy's name in messages: its file, or the built-in example.
pub fn policy_name(config: &Config) -> String {
    config
        .policy
        .as_ref()
        .map_or("built-in example policy".into(), |p| {
            p.display().to_string()
        })
}

/// Starts Parapet: opens the journal and replays it, resumes what was in flight, then listens.
pub async fn start(config: &Config, clock: SharedClock) -> anyhow::Result<Running> {
    // One TLS provider for every client Parapet makes (webhooks); already set is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let policy = load_policy(config)?;
    let readers = preflight(config, &policy, &policy_name(config)).await?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create data directory `{}`",
            config.data_dir.display()
        )
    })?;
    // Before any file in the directory is opened, repaired or created.
    let lock = crate::lock::DataLock::acquire(&config.data_dir)?;

    let mut edl_config = EdlConfig::with_default_lists(config.data_dir.join("edl"));
    edl_config.lists = config
        .edl_lists
        .iter()
        .map(|(kind, list)| {
            Ok((
                kind.parse()
                    .map_err(|e| anyhow::anyhow!("edl.lists: {e}"))?,
                list.clone(),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    edl_config.min_prefix_v4 = config.edl_min_prefix_v4;
    edl_config.min_prefix_v6 = config.edl_min_prefix_v6;
    let edl = Edl::open(edl_config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut registry = Registry::new();
    registry.register(Arc::new(edl.clone()))?;
    // the routes and grants were checked against these instances by `preflight`
    for adapter in &config.adapters {
        let dir = config.data_dir.join("adapters").join(adapter.name());
        let built = adapter
            .build(&dir)
            .await
            .map_err(|e| anyhow::anyhow!("adapter `{}`: {e}", adapter.name()))?;
        registry.register(built)?;
    }

    let auth = Arc::new(authenticator(config)?);
    let telemetry = Arc::new(
        crate::telemetry::Telemetry::new(config.telemetry.otlp_endpoint.as_deref())
            .context("cannot set up metrics")?,
    );
    // Listen first, so health checks are answered (NOT_SERVING) while the journal is replayed.
    let grpc_listener = TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", config.grpc_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let early = grpc_listener.into_std()?;
    let grpc_listener = TcpListener::from_std(early.try_clone()?)?;
    let starting_stop = CancellationToken::new();
    let starting = {
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &config.tls {
            builder = builder
                .tls_config(server_tls(tls)?)
                .context("the TLS settings")?;
        }
        let router = builder.add_service(health_service.clone());
        let incoming = TcpIncoming::from(TcpListener::from_std(early)?).with_nodelay(Some(true));
        tokio::spawn(
            router.serve_with_incoming_shutdown(incoming, starting_stop.clone().cancelled_owned()),
        )
    };
    tracing::info!(%grpc_addr, "starting: health checks answer NOT_SERVING until the journal is replayed");

    let opening = Instant::now();
    let log = FileLog::with_segment_bytes(&config.data_dir.join("journal"), config.segment_bytes)
        .context("cannot open the journal")?;
    let log_opened = opening.elapsed();
    let kv = SledKv::open(&config.data_dir.join("index")).context("cannot open the index")?;
    let index_opened = opening.elapsed() - log_opened;
    let journal = Journal::open_with(
        Box::new(log),
        Arc::new(kv),
        clock.clone(),
        crate::journal::Options {
            reserve: config.reserve_bytes,
        },
    )
    .context("cannot replay the journal")?;
    tracing::info!(
        log_ms = log_opened.as_millis() as u64,
        index_ms = index_opened.as_millis() as u64,
        replay_ms = (opening.elapsed() - log_opened - index_opened).as_millis() as u64,
        "journal opened"
    );
    let policy = policy.with_own_addresses(own_addresses(config));
    let writer = journal.take_writer();
    let engine = Engine::start(
        Arc::new(journal),
        Arc::new(policy),
        registry,
        clock,
        EngineConfig {
            adapter_timeout: config.adapter_timeout,
            policy_path: config.policy.clone(),
            approvals_webhook: config.approvals_webhook.clone(),
            retention: config.retention,
            compact_every: config.compact_every,
            meter: Some(telemetry.meter()),
            limits: config.limits,
            ceilings: ceilings(&config.auth.identities, &auth.token_identities()),
        },
    )
    .await?;

    // the start-up listener lets go; its connections (health checks) reconnect to the server
    starting_stop.cancel();
    let mut starting = starting;
    if tokio::time::timeout(Duration::from_secs(1), &mut starting)
        .await
        .is_err()
    {
        starting.abort();
    }
    let http_listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_addr))?;
    let http_addr = http_listener.local_addr()?;

    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    health.set_serving::<IntentsServer<grpc::Intents>>().await;
    health
        .set_serving::<RollbacksServer<grpc::Rollbacks>>()
        .await;
    health.set_serving::<JournalServer<grpc::Journal>>().await;
    health.set_serving::<AdminServer<grpc::Admin>>().await;
    health
        .set_serving::<ApprovalsServer<grpc::Approvals>>()
        .await;
    health.set_serving::<VerdictsServer<grpc::Verdicts>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let stop = CancellationToken::new();
    let cut = CancellationToken::new();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder
            .tls_config(server_tls(tls)?)
            .context("the TLS settings")?;
    }
    let bouncers = match &config.crowdsec.bouncers {
        Some(file) => Some(crate::service::bouncers::Bouncers::new(
            Some(file.clone()),
            config.lists(),
            &config.data_dir,
        )?),
        None => None,
    };
    let service = Service::new(engine.clone()).publishing(Published {
        edl,
        telemetry: telemetry.clone(),
        readers,
        bouncers,
        upstream: config
            .crowdsec_sources
            .iter()
            .map(|s| s.name.clone())
            .collect(),
    });
    let grpc = builder
        .layer(grpc::auth::AuthLayer::new(auth.clone(), service.clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            IntentsServer::new(grpc::Intents(service.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            RollbacksServer::new(grpc::Rollbacks(service.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            JournalServer::new(grpc::Journal(service.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            AdminServer::new(grpc::Admin(service.clone())).max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            ApprovalsServer::new(grpc::Approvals(service.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            VerdictsServer::new(grpc::Verdicts(service.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(
            // Nagle's algorithm would hold small answers back for the peer's delayed ACK.
            {
                let cut = cut.clone();
                TcpIncoming::from(grpc_listener)
                    .with_nodelay(Some(true))
                    .map(move |s| s.map(|s| crate::severable::Severable::new(s, &cut)))
            },
            stop.clone().cancelled_owned(),
        );
    engine.observe(&telemetry.meter());
    tokio::spawn(watch_journal(engine.clone(), health.clone()));
    tokio::spawn(watch_tokens(
        engine.clone(),
        auth.clone(),
        config.auth.identities.clone(),
    ));
    for source in &config.crowdsec_sources {
        let puller = crate::sources::Puller::new(source.clone(), service.clone())?;
        tokio::spawn(puller.run());
    }
    let metrics_listener = match config.http.metrics_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?,
        ),
        None => None,
    };
    let front = crate::http::api::Front {
        service: service.clone(),
        auth,
        intakes: Arc::new(crate::http::intake::Intakes::from_config(&config.intakes)?),
        openc2: Arc::new(config.openc2.clone()),
    };
    let router = crate::http::router(front, metrics_listener.is_none());
    let counted = |engine: &Engine| {
        let metrics = engine.metrics().clone();
        move |cause| metrics.refused_call("Unavailable", cause)
    };
    let limits = config.http.limits;
    let http_tls = config
        .http
        .tls
        .as_ref()
        .map(crate::http::serve::tls)
        .transpose()?;
    let main = crate::http::serve::serve(
        http_listener,
        router,
        http_tls,
        limits,
        stop.clone(),
        cut.clone(),
        counted(&engine),
    );
    let metrics_addr = metrics_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let metrics_only = metrics_listener.map(|listener| {
        crate::http::serve::serve(
            listener,
            crate::http::metrics_router(service),
            None,
            limits,
            stop.clone(),
            cut.clone(),
            counted(&engine),
        )
    });
    let http = async move {
        match metrics_only {
            Some(m) => futures::future::try_join(main, m).await.map(drop),
            None => main.await,
        }
    };

    Ok(Running {
        grpc_addr,
        http_addr,
        metrics_addr,
        engine,
        writer,
        health,
        stop,
        cut,
        grpc: tokio::spawn(grpc),
        http: tokio::spawn(http),
        lock,
    })
}

impl Running {
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Stops listening, lets executions and rollbacks in progress finish, and closes the
    /// journal. Nothing is rolled back: blocks stay in force while Parapet is down.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        // Draining: health checks say so, and new intents are refused (UNAVAILABLE).
        self.health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        self.health
            .set_not_serving::<IntentsServer<grpc::Intents>>()
            .await;
        // New intents are refused from here on, streams (watch) end, and the adapter calls in
        // flight finish (each within the adapter timeout) while health says NOT_SERVING.
        // Nothing is rolled back: what is in force stays in force while Parapet is down.
        self.engine.shutdown_token().cancel();
        self.engine.stop().await;
        self.stop.cancel();
        // Connections get a while to finish their requests; a client that never closes its
        // connection must not keep Parapet from stopping.
        let (mut grpc, mut http) = (Some(self.grpc), Some(self.http));
        let drained = tokio::time::timeout(DRAIN, async {
            if let Some(r) = ended(&mut grpc).await {
                r?.context("gRPC server")?;
            }
            if let Some(r) = ended(&mut http).await {
                r?.context("HTTP server")?;
            }
            anyhow::Ok(())
        })
        .await;
        match drained {
            Ok(result) => result?,
            Err(_) => {
                tracing::warn!("connections still open after {DRAIN:?}; cutting them");
                // every read and write on them fails: their tasks end and let go of the engine
                self.cut.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    ended(&mut grpc).await;
                    ended(&mut http).await;
                })
                .await;
                // Wait for the aborted listeners to drop what they hold (the engine, the journal).
                if let Some(grpc) = grpc {
                    grpc.abort();
                    let _ = grpc.await;
                }
                if let Some(http) = http {
                    http.abort();
                    let _ = http.await;
                }
            }
        }
        let writer = self.writer;
        let lock = self.lock;
        drop(self.engine);
        if let Some(writer) = writer {
            let joined = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::task::spawn_blocking(move || writer.join()),
            )
            .await;
            match joined {
                Ok(Ok(Ok(()))) => {}
                Ok(_) => bail!("the journal writer failed"),
                Err(_) => {
                    bail!("the journal writer did not stop; something still holds the journal")
                }
            }
        }
        drop(lock);
        Ok(())
    }
}

/// The end of a task still running, once; `None` if it was seen to end before.
async fn ended<T>(handle: &mut Option<JoinHandle<T>>) -> Option<Result<T, tokio::task::JoinError>> {
    let result = handle.as_mut()?.await;
    *handle = None;
    Some(result)
}

/// Where Parapet listens, never to be blocked or isolated by it: the listeners' addresses, or
/// every interface's when a listener takes all of them.
fn own_addresses(config: &Config) -> Vec<(ipnet::IpNet, String)> {
    let listeners = [
        (config.grpc_addr.ip(), "the gRPC listener"),
        (config.http_addr.ip(), "the HTTP listener"),
    ];
    let mut own: Vec<_> = listeners
        .iter()
        .filter(|(addr, _)| !addr.is_unspecified())
        .map(|(addr, what)| (ipnet::IpNet::from(*addr), (*what).to_owned()))
        .collect();
    if listeners.iter().any(|(addr, _)| addr.is_unspecified()) {
        match if_addrs::get_if_addrs() {
            Ok(interfaces) => own.extend(interfaces.into_iter().map(|i| {
                let what = format!(
                    "this host's, on interface {}, where a listener takes all",
                    i.name
                );
                (ipnet::IpNet::from(i.ip()), what)
            })),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list this host's addresses; the guardrails know only the listeners'")
            }
        }
    }
    own
}

/// Health follows the journal: NOT_SERVING while it cannot take new intents (a disk almost
/// full, a write the disk refused, a failed sync), SERVING again once it can, without a
/// restart (except after a failed sync). Ends when a shutdown begins.
async fn watch_journal(engine: Engine, health: tonic_health::server::HealthReporter) {
    use crate::journal::Condition;
    let stop = engine.shutdown_token();
    let mut was = Condition::Writing;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let store = engine.store().clone();
        let Ok(now) = tokio::task::spawn_blocking(move || store.condition()).await else {
            return;
        };
        if now == was || stop.is_cancelled() {
            continue;
        }
        let status = if now == Condition::Writing {
            tracing::info!("the journal can be written again: serving");
            tonic_health::ServingStatus::Serving
        } else {
            tracing::error!(condition = ?now, "the journal cannot take new intents: not serving");
            tonic_health::ServingStatus::NotServing
        };
        health.set_service_status("", status).await;
        health
            .set_service_status(
                <IntentsServer<grpc::Intents> as tonic::server::NamedService>::NAME,
                status,
            )
            .await;
        was = now;
    }
}

/// The sources held to less autonomy: each identity's `max_tier`, from the config and the
/// token file (a detector submits under its own name, so its name is its source).
fn ceilings(
    configured: &[crate::service::Identity],
    tokens: &[crate::service::Identity],
) -> std::collections::BTreeMap<String, parapet_policy::Tier> {
    let mut out = std::collections::BTreeMap::new();
    for id in configured.iter().chain(tokens) {
        // one name under several identities: the strictest ceiling holds
        if let Some(tier) = id.max_tier {
            let held = out.entry(id.name.clone()).or_insert(tier);
            *held = (*held).max(tier);
        }
    }
    out
}

/// The token file is read again when it changes (looked at every second): a token removed
/// stops working, one added works, a ceiling changed holds the next decision, without a
/// restart; what changed is journaled. A file that does not read keeps the tokens as they
/// were, and says why.
async fn watch_tokens(
    engine: Engine,
    auth: Arc<auth::Authenticator>,
    configured: Vec<crate::service::Identity>,
) {
    let stop = engine.shutdown_token();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let reader = auth.clone();
        let Ok(read) = tokio::task::spawn_blocking(move || reader.reload_tokens()).await else {
            return;
        };
        match read {
            Ok(None) => {}
            Ok(Some(change)) if change.is_empty() => {}
            Ok(Some(change)) => {
                tracing::info!(
                    added = change.added.len(),
                    removed = change.removed.len(),
                    changed = change.changed.len(),
                    "the token file changed: read again"
                );
                engine.set_ceilings(ceilings(&configured, &change.identities));
                // who may call, and as what, is the auditors' business: journaled
                let event = crate::lifecycle::SystemEvent::TokensChanged {
                    added: change.added,
                    removed: change.removed,
                    changed: change.changed,
                };
                if let Err(e) = engine
                    .store()
                    .append_system(crate::engine::SYSTEM_ACTOR, event)
                    .await
                {
                    tracing::error!(error = %e, "the token file's change could not be journaled");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the token file changed but cannot be read; the tokens stay as they were");
            }
        }
    }
}

/// How callers are authenticated; refuses a listener that would be open to anyone beyond
/// this machine.
fn authenticator(config: &Config) -> anyhow::Result<auth::Authenticator> {
    let a = &config.auth;
    match (&config.tls, a.insecure) {
        (Some(_), true) => bail!(
            "`[auth] insecure` and `[tls]` are both set: choose TLS with authentication, or neither"
        ),
        (None, true) if !config.grpc_addr.ip().is_loopback() => bail!(
            "gRPC on {} without TLS or authentication would let anyone who can reach it act: \
             use a loopback address, or configure [tls]",
            config.grpc_addr
        ),
        (None, true) => Ok(auth::Authenticator::insecure()),
        (None, false) => bail!(
            "gRPC needs [tls] (with client_ca for mutual TLS, or a token file in [auth]), or \
             `--insecure` (`[auth] insecure = true`) on a loopback address to run without authentication"
        ),
        (Some(tls), false) => {
            if tls.client_ca.is_none() && a.tokens.is_none() {
                bail!(
                    "[tls] without client_ca and without [auth] tokens: nobody could authenticate"
                );
            }
            auth::Authenticator::new(&a.identities, a.tokens.as_deref())
        }
    }
}

fn server_tls(tls: &crate::config::TlsConfig) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("cannot read `{}`", p.display()))
    };
    let identity = tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
    let mut server = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca {
        // optional: a caller with a token needs no certificate
        server = server
            .client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?))
            .client_auth_optional(true);
    }
    Ok(server)
}
