//! One shared environment for the end-to-end tests: a real Parapet server on random loopback
//! ports with its own data directory and a clock the test moves, and real gRPC and HTTP clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod falcon;
pub mod netns;
pub mod slapd;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use parapet_actions::config::AdapterConfig;
use parapet_orchestrator::{
    clock::{Clock, ManualClock},
    config::Config,
    server::{self, Running},
};
use parapet_proto::v1::{
    self as pb, admin_client::AdminClient, intents_client::IntentsClient,
    journal_client::JournalClient, rollbacks_client::RollbacksClient,
};
use tonic::transport::Channel;

pub use parapet_proto::v1;

/// A loopback address that accepts connections and never answers: a system that hangs.
pub async fn black_hole() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    addr
}

/// The start of test time: a fixed instant, so runs are alike.
pub fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// A running server and clients for it.
pub struct Parapet {
    running: Option<Running>,
    pub clock: ManualClock,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Where `/metrics` is served on its own, if configured so.
    pub metrics_addr: Option<SocketAddr>,
    pub channel: Channel,
    data_dir: PathBuf,
    policy: Option<PathBuf>,
    adapters: Vec<AdapterConfig>,
    _tmp: Arc<tempfile::TempDir>,
}

impl Parapet {
    /// A fresh server on the built-in example policy.
    pub async fn start() -> Self {
        Self::start_with_policy(None).await
    }

    /// A fresh server on the given policy text.
    pub async fn start_with_policy(policy: Option<&str>) -> Self {
        Self::start_with(policy, None).await
    }

    /// A fresh server on the given policy text, posting escalations to `webhook`.
    pub async fn start_with(policy: Option<&str>, webhook: Option<String>) -> Self {
        let (tmp, policy) = Self::prepare(policy);
        let clock = ManualClock::new(epoch());
        Self::boot(
            tmp.path().join("data"),
            policy,
            clock,
            tmp,
            webhook,
            Vec::new(),
        )
        .await
        .unwrap()
    }

    /// A fresh server on the given policy text with these adapter instances beside the EDL; the
    /// error of a start that fails.
    pub async fn start_with_adapters(
        policy: &str,
        adapters: Vec<AdapterConfig>,
    ) -> anyhow::Result<Self> {
        let (tmp, policy) = Self::prepare(Some(policy));
        let clock = ManualClock::new(epoch());
        Self::boot(tmp.path().join("data"), policy, clock, tmp, None, adapters).await
    }

    /// A fresh server on the given policy text (the example's when `None`), with its
    /// configuration changed by `configure` (limits, listeners); the error of a start that fails.
    pub async fn start_configured(
        policy: Option<&str>,
        configure: impl FnOnce(&mut Config, &Path),
    ) -> anyhow::Result<Self> {
        let (tmp, policy) = Self::prepare(policy);
        let clock = ManualClock::new(epoch());
        let mut config = Self::config(tmp.path().join("data"), policy, None, Vec::new());
        configure(&mut config, tmp.path());
        Self::boot_with(config, clock, tmp).await
    }

    fn prepare(policy: Option<&str>) -> (Arc<tempfile::TempDir>, Option<PathBuf>) {
        let tmp = Arc::new(tempfile::tempdir().unwrap());
        let policy = policy.map(|text| {
            let path = tmp.path().join("policy.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        (tmp, policy)
    }

    async fn boot(
        data_dir: PathBuf,
        policy: Option<PathBuf>,
        clock: ManualClock,
        tmp: Arc<tempfile::TempDir>,
        approvals_webhook: Option<String>,
        adapters: Vec<AdapterConfig>,
    ) -> anyhow::Result<Self> {
        let config = Self::config(data_dir, policy, approvals_webhook, adapters);
        Self::boot_with(config, clock, tmp).await
    }

    fn config(
        data_dir: PathBuf,
        policy: Option<PathBuf>,
        approvals_webhook: Option<String>,
        adapters: Vec<AdapterConfig>,
    ) -> Config {
        Config {
            approvals_webhook,
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            data_dir,
            policy,
            adapters,
            auth: parapet_orchestrator::config::AuthConfig {
                insecure: true,
                ..Default::default()
            },
            ..Config::default()
        }
    }

    async fn boot_with(
        config: Config,
        clock: ManualClock,
        tmp: Arc<tempfile::TempDir>,
    ) -> anyhow::Result<Self> {
        let (data_dir, policy, adapters) = (
            config.data_dir.clone(),
            config.policy.clone(),
            config.adapters.clone(),
        );
        let running = server::start(&config, Arc::new(clock.clone())).await?;
        let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Ok(Self {
            grpc_addr: running.grpc_addr,
            http_addr: running.http_addr,
            metrics_addr: running.metrics_addr,
            running: Some(running),
            clock,
            channel,
            data_dir,
            policy,
            adapters,
            _tmp: tmp,
        })
    }

    /// Stops the server as an operator would (nothing is rolled back).
    pub async fn stop(mut self) -> Stopped {
        self.running.take().unwrap().shutdown().await.unwrap();
        Stopped {
            data_dir: self.data_dir,
            policy: self.policy,
            adapters: self.adapters,
            clock: self.clock,
            tmp: self._tmp,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn intents(&self) -> IntentsClient<Channel> {
        IntentsClient::new(self.channel.clone())
    }

    pub fn rollbacks(&self) -> RollbacksClient<Channel> {
        RollbacksClient::new(self.channel.clone())
    }

    pub fn journal(&self) -> JournalClient<Channel> {
        JournalClient::new(self.channel.clone())
    }

    pub fn approvals(&self) -> pb::approvals_client::ApprovalsClient<Channel> {
        pb::approvals_client::ApprovalsClient::new(self.channel.clone())
    }

    pub fn verdicts(&self) -> pb::verdicts_client::VerdictsClient<Channel> {
        pb::verdicts_client::VerdictsClient::new(self.channel.clone())
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
    }

    /// Replaces the policy file the server was started with (reload it to take effect).
    pub fn write_policy(&self, text: &str) {
        std::fs::write(
            self.policy.as_ref().expect("started with a policy file"),
            text,
        )
        .unwrap();
    }

    /// Engages (or releases) a kill switch as an operator would.
    pub async fn kill_switch(&self, kind: &str, engaged: bool) -> pb::SetKillSwitchResponse {
        let req = pb::SetKillSwitchRequest {
            action_kind: kind.into(),
            engaged,
            reason: "test".into(),
            requested_by: "bob@soc".into(),
        };
        self.admin()
            .set_kill_switch(req)
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn submit(
        &self,
        req: pb::SubmitIntentRequest,
    ) -> Result<pb::SubmitIntentResponse, tonic::Status> {
        self.intents()
            .submit(req)
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn get(&self, id: &str) -> pb::Intent {
        let req = pb::GetIntentRequest {
            intent_id: id.into(),
        };
        self.intents().get(req).await.unwrap().into_inner()
    }

    pub async fn rollback(&self, id: &str, reason: &str) -> pb::RollbackResponse {
        let req = pb::RollbackRequest {
            intent_id: id.into(),
            reason: reason.into(),
            requested_by: "alice@soc".into(),
            wait: true,
        };
        self.rollbacks().rollback(req).await.unwrap().into_inner()
    }

    /// Waits, through `Watch`, until the intent is in `state`. Fails after ten seconds so a
    /// broken server cannot hang the suite; no test relies on that time.
    pub async fn wait_for(&self, id: &str, state: pb::IntentState) -> pb::Intent {
        let req = pb::WatchIntentsRequest {
            intent_id: id.into(),
        };
        let mut stream = self.intents().watch(req).await.unwrap().into_inner();
        let wait = async {
            while let Some(event) = stream.message().await.unwrap() {
                if event.state == state as i32 {
                    return event.intent.unwrap();
                }
            }
            panic!("watch of {id} ended before it reached {state:?}");
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("{id} did not reach {state:?}"))
    }

    /// Every journal entry matching the query, in order.
    pub async fn entries(&self, q: pb::QueryJournalRequest) -> Vec<pb::JournalEntry> {
        let mut stream = self.journal().query(q).await.unwrap().into_inner();
        let mut out = Vec::new();
        while let Some(e) = stream.message().await.unwrap() {
            out.push(e);
        }
        out
    }

    /// The first journal entry of an intent with this event kind.
    pub async fn entry_of(&self, id: &str, kind: &str) -> pb::JournalEntry {
        let q = pb::QueryJournalRequest {
            intent_id: id.into(),
            ..Default::default()
        };
        let entries = self.entries(q).await;
        entries
            .into_iter()
            .find(|e| e.kind == kind)
            .unwrap_or_else(|| panic!("{id} has no `{kind}` entry"))
    }

    /// The event kinds of one intent's journal entries, in order.
    pub async fn story(&self, id: &str) -> Vec<String> {
        let q = pb::QueryJournalRequest {
            intent_id: id.into(),
            ..Default::default()
        };
        self.entries(q).await.into_iter().map(|e| e.kind).collect()
    }

    /// An EDL list as a firewall fetches it.
    pub async fn edl(&self, list: &str) -> String {
        let url = format!("http://{}/edl/{list}", self.http_addr);
        let resp = reqwest::get(url).await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.text().await.unwrap()
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }
}

/// A stopped server's data, to start again.
pub struct Stopped {
    data_dir: PathBuf,
    policy: Option<PathBuf>,
    adapters: Vec<AdapterConfig>,
    pub clock: ManualClock,
    tmp: Arc<tempfile::TempDir>,
}

impl Stopped {
    /// Starts again with the configuration changed by `configure`, as `start_configured` did.
    pub async fn start_configured(self, configure: impl FnOnce(&mut Config, &Path)) -> Parapet {
        let mut config = Parapet::config(self.data_dir, self.policy, None, self.adapters);
        configure(&mut config, self.tmp.path());
        Parapet::boot_with(config, self.clock, self.tmp)
            .await
            .unwrap()
    }

    pub async fn start(self) -> Parapet {
        Parapet::boot(
            self.data_dir,
            self.policy,
            self.clock,
            self.tmp,
            None,
            self.adapters,
        )
        .await
        .unwrap()
    }
}

/// A `block_ip` intent from the example policy's `edr.c2_beacon`, which acts alone.
pub fn block(key: &str, ip: &str) -> pb::SubmitIntentRequest {
    pb::SubmitIntentRequest {
        idempotency_key: key.into(),
        source: "xdr".into(),
        detection: Some(pb::Detection {
            rule_id: "edr.c2_beacon".into(),
            severity: pb::Severity::Critical as i32,
            confidence: 0.93,
            title: "beacon to known C2".into(),
        }),
        steps: vec![step("block_ip", "ip", ip, &[])],
        ttl: None,
        reason: "C2 traffic".into(),
        wait: true,
        finding: String::new(),
    }
}

/// The finding of one guardrail in a decision; fails the test if that guardrail said nothing.
pub fn reason(resp: &pb::SubmitIntentResponse, guardrail: &str) -> pb::Reason {
    let reasons = resp
        .decision
        .as_ref()
        .map(|d| d.reasons.as_slice())
        .unwrap_or_default();
    reasons
        .iter()
        .find(|r| r.guardrail == guardrail)
        .cloned()
        .unwrap_or_else(|| panic!("no `{guardrail}` reason in {reasons:?}"))
}

pub fn step(kind: &str, target_kind: &str, id: &str, attrs: &[(&str, &str)]) -> pb::Step {
    pb::Step {
        kind: kind.into(),
        target: Some(pb::Target {
            kind: target_kind.into(),
            id: id.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect::<HashMap<_, _>>(),
        }),
        params: HashMap::new(),
    }
}

pub fn hours(h: u64) -> parapet_proto::wkt::Duration {
    parapet_proto::wkt::Duration {
        seconds: (h * 3600) as i64,
        nanos: 0,
    }
}
