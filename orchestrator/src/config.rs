//! Server configuration: built-in defaults, then the config file, then command-line flags;
//! validated once, before anything starts.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use parapet_actions::config::AdapterConfig;

use crate::journal::retention::Retention;
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct Config {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Journal, indexes and adapter state.
    pub data_dir: PathBuf,
    /// The policy file; the built-in example policy when `None`.
    pub policy: Option<PathBuf>,
    /// How long one adapter call may take.
    pub adapter_timeout: Duration,
    /// EDL list per action kind.
    pub edl_lists: BTreeMap<String, String>,
    /// The EDL adapter's own floor: it refuses broader blocks whatever the policy allows.
    pub edl_min_prefix_v4: u8,
    pub edl_min_prefix_v6: u8,
    /// Where escalations of pending approvals are posted (JSON), if anywhere.
    pub approvals_webhook: Option<String>,
    /// Adapter instances besides the EDL (which is always there, named `edl`).
    pub adapters: Vec<AdapterConfig>,
    /// Segment size of the journal's log; retention removes whole segments.
    pub segment_bytes: u64,
    /// Free disk space below which new intents are refused.
    pub reserve_bytes: u64,
    pub retention: Retention,
    /// How often retention runs.
    pub compact_every: Duration,
    /// TLS for the gRPC listener; with `client_ca`, mutual TLS.
    pub tls: Option<TlsConfig>,
    pub auth: AuthConfig,
    pub telemetry: TelemetryConfig,
    /// What one caller may hold open or have journaled.
    pub limits: crate::engine::RequestLimits,
    pub http: HttpConfig,
    /// Webhook intakes, `POST /v1/ingest/{name}` (`[[intake]]`).
    pub intakes: Vec<crate::intake::Intake>,
    /// The OpenC2 consumer (`[openc2]`).
    pub openc2: OpenC2Config,
    /// CrowdSec (`[crowdsec]`).
    pub crowdsec: CrowdSecConfig,
    /// CrowdSec Local APIs whose decisions become intents (`[[sources.crowdsec]]`).
    pub crowdsec_sources: Vec<crate::sources::CrowdSecSource>,
    /// Who may read the lists; open to anyone who can reach the listener when unset.
    pub edl_access: EdlAccess,
}

/// The HTTP listener's limits, and where and to whom `/metrics` is served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpConfig {
    pub limits: crate::http::serve::Limits,
    /// `/metrics` on this address only, not on the main listener.
    pub metrics_addr: Option<SocketAddr>,
    /// A file holding the bearer token `/metrics` asks for.
    pub metrics_token_file: Option<PathBuf>,
    /// HTTPS for the main listener (`[http.tls]`); client certificates from `client_ca`
    /// authenticate to the JSON API as they do to gRPC.
    pub tls: Option<TlsConfig>,
}

/// What the EDL lists ask of a firewall: a bearer token, or Basic credentials (either).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdlAccess {
    /// A file holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// The Basic user name, with `password_file`.
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// Where traces and metrics go besides `/metrics`. OTLP is off unless an endpoint is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// An OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the traces [default: parapet].
    pub service_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA whose client certificates identify callers (PEM): mutual TLS.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// No TLS and no authentication: everyone may do everything. Only on a loopback address.
    #[serde(default)]
    pub insecure: bool,
    /// The token file: SHA-256 hashes of bearer tokens, each with an identity and roles.
    pub tokens: Option<PathBuf>,
    /// Roles of the identities client certificates name.
    #[serde(default)]
    pub identities: Vec<crate::auth::Identity>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("parapet-data"),
            policy: None,
            adapter_timeout: Duration::from_secs(30),
            edl_lists: [("block_ip", "block"), ("isolate_host", "quarantine")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            edl_min_prefix_v4: 16,
            edl_min_prefix_v6: 32,
            approvals_webhook: None,
            adapters: Vec::new(),
            segment_bytes: crate::journal::log::SEGMENT_BYTES,
            reserve_bytes: crate::journal::RESERVE,
            retention: Retention::default(),
            compact_every: Duration::from_secs(3600),
            tls: None,
            auth: AuthConfig::default(),
            telemetry: TelemetryConfig::default(),
            limits: crate::engine::RequestLimits::default(),
            http: HttpConfig::default(),
            intakes: Vec::new(),
            openc2: OpenC2Config::default(),
            crowdsec: CrowdSecConfig::default(),
            crowdsec_sources: Vec::new(),
            edl_access: EdlAccess::default(),
        }
    }
}

/// The config file; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    grpc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    policy: Option<PathBuf>,
    #[serde(default, with = "humantime_opt")]
    adapter_timeout: Option<Duration>,
    edl: Option<EdlFile>,
    approvals_webhook: Option<String>,
    adapters: Option<Vec<AdapterConfig>>,
    journal: Option<JournalFile>,
    tls: Option<TlsConfig>,
    auth: Option<AuthConfig>,
    telemetry: Option<TelemetryConfig>,
    limits: Option<LimitsFile>,
    http: Option<HttpFile>,
    intake: Option<Vec<crate::intake::Intake>>,
    openc2: Option<OpenC2Config>,
    crowdsec: Option<CrowdSecConfig>,
    sources: Option<SourcesFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    #[serde(default)]
    crowdsec: Vec<crate::sources::CrowdSecSource>,
}

/// CrowdSec's bouncers reading Parapet's decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrowdSecConfig {
    /// The bouncer file (`parapet bouncer add NAME --file FILE`): keys kept hashed. Without
    /// one, the bouncer API refuses every key.
    pub bouncers: Option<PathBuf>,
}

/// The OpenC2 consumer at `/.well-known/openc2`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenC2Config {
    /// The detection the intents of `deny` commands carry (it must be in the inventory).
    #[serde(default = "OpenC2Config::default_detection")]
    pub detection: String,
}

impl OpenC2Config {
    fn default_detection() -> String {
        "openc2".into()
    }
}

impl Default for OpenC2Config {
    fn default() -> Self {
        Self {
            detection: Self::default_detection(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    #[serde(default, with = "humantime_opt")]
    header_timeout: Option<Duration>,
    #[serde(default, with = "humantime_opt")]
    request_timeout: Option<Duration>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    max_body_bytes: Option<usize>,
    metrics_addr: Option<SocketAddr>,
    metrics_token_file: Option<PathBuf>,
    tls: Option<TlsConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    watches_per_caller: Option<usize>,
    watches: Option<usize>,
    denials_per_minute: Option<std::num::NonZeroU32>,
    denial_burst: Option<std::num::NonZeroU32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalFile {
    segment_bytes: Option<u64>,
    reserve_bytes: Option<u64>,
    #[serde(default, with = "humantime_opt")]
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
    #[serde(default, with = "humantime_opt")]
    compact_every: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EdlFile {
    lists: Option<BTreeMap<String, String>>,
    min_prefix_v4: Option<u8>,
    min_prefix_v6: Option<u8>,
    token_file: Option<PathBuf>,
    username: Option<String>,
    password_file: Option<PathBuf>,
}

mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(Some)
            .map_err(D::Error::custom)
    }
}

impl Config {
    /// Applies a config file over the current values. Relative paths in the file are taken
    /// relative to the file's directory, so a config works wherever Parapet is started.
    pub fn merge_file(mut self, path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config `{}`: {e}", path.display()))?;
        let file: File = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config `{}`: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let relative = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        if let Some(a) = file.grpc_addr {
            self.grpc_addr = a;
        }
        if let Some(a) = file.http_addr {
            self.http_addr = a;
        }
        if let Some(d) = file.data_dir {
            self.data_dir = relative(d);
        }
        if let Some(p) = file.policy {
            self.policy = Some(relative(p));
        }
        if let Some(t) = file.adapter_timeout {
            self.adapter_timeout = t;
        }
        if let Some(url) = file.approvals_webhook {
            self.approvals_webhook = Some(url);
        }
        if let Some(mut adapters) = file.adapters {
            for a in &mut adapters {
                a.rebase(base);
            }
            self.adapters = adapters;
        }
        if let Some(mut tls) = file.tls {
            tls.cert = relative(tls.cert);
            tls.key = relative(tls.key);
            tls.client_ca = tls.client_ca.map(relative);
            self.tls = Some(tls);
        }
        if let Some(t) = file.telemetry {
            self.telemetry = t;
        }
        if let Some(mut auth) = file.auth {
            auth.tokens = auth.tokens.map(relative);
            self.auth = auth;
        }
        if let Some(j) = file.journal {
            if let Some(bytes) = j.segment_bytes {
                anyhow::ensure!(
                    bytes >= 4096,
                    "config `{}`: journal.segment_bytes must be at least 4096",
                    path.display()
                );
                self.segment_bytes = bytes;
            }
            if let Some(bytes) = j.reserve_bytes {
                self.reserve_bytes = bytes;
            }
            if let Some(age) = j.max_age {
                self.retention.max_age = Some(age);
            }
            if let Some(bytes) = j.max_bytes {
                self.retention.max_bytes = Some(bytes);
            }
            if let Some(every) = j.compact_every {
                anyhow::ensure!(
                    !every.is_zero() && every <= Duration::from_secs(366 * 24 * 3600),
                    "config `{}`: journal.compact_every must be positive and at most a year",
                    path.display()
                );
                self.compact_every = every;
            }
        }
        if let Some(l) = file.limits {
            let limits = &mut self.limits;
            limits.watches_per_caller = l.watches_per_caller.unwrap_or(limits.watches_per_caller);
            limits.watches = l.watches.unwrap_or(limits.watches);
            limits.denials_per_minute = l.denials_per_minute.unwrap_or(limits.denials_per_minute);
            limits.denial_burst = l.denial_burst.unwrap_or(limits.denial_burst);
        }
        if let Some(h) = file.http {
            let limits = &mut self.http.limits;
            for (value, slot, name) in [
                (
                    h.header_timeout,
                    &mut limits.header_timeout,
                    "header_timeout",
                ),
                (
                    h.request_timeout,
                    &mut limits.request_timeout,
                    "request_timeout",
                ),
            ] {
                if let Some(v) = value {
                    anyhow::ensure!(
                        !v.is_zero(),
                        "config `{}`: http.{name} must be positive",
                        path.display()
                    );
                    *slot = v;
                }
            }
            for (value, slot, name) in [
                (
                    h.max_connections,
                    &mut limits.max_connections,
                    "max_connections",
                ),
                (
                    h.max_connections_per_ip,
                    &mut limits.max_connections_per_ip,
                    "max_connections_per_ip",
                ),
                (
                    h.max_body_bytes,
                    &mut limits.max_body_bytes,
                    "max_body_bytes",
                ),
            ] {
                if let Some(v) = value {
                    anyhow::ensure!(
                        v > 0,
                        "config `{}`: http.{name} must be positive",
                        path.display()
                    );
                    *slot = v;
                }
            }
            if let Some(a) = h.metrics_addr {
                self.http.metrics_addr = Some(a);
            }
            if let Some(f) = h.metrics_token_file {
                self.http.metrics_token_file = Some(relative(f));
            }
            if let Some(mut tls) = h.tls {
                tls.cert = relative(tls.cert);
                tls.key = relative(tls.key);
                tls.client_ca = tls.client_ca.map(relative);
                self.http.tls = Some(tls);
            }
        }
        if let Some(intakes) = file.intake {
            let mut names = std::collections::BTreeSet::new();
            for mut intake in intakes {
                intake
                    .check()
                    .map_err(|e| anyhow::anyhow!("config `{}`: {e}", path.display()))?;
                anyhow::ensure!(
                    names.insert(intake.name.clone()),
                    "config `{}`: intake `{}` is defined twice",
                    path.display(),
                    intake.name
                );
                intake.secret_file = intake.secret_file.map(relative);
                self.intakes.push(intake);
            }
        }
        if let Some(openc2) = file.openc2 {
            self.openc2 = openc2;
        }
        if let Some(crowdsec) = file.crowdsec {
            self.crowdsec.bouncers = crowdsec.bouncers.map(relative);
        }
        if let Some(sources) = file.sources {
            for mut source in sources.crowdsec {
                source
                    .check()
                    .map_err(|e| anyhow::anyhow!("config `{}`: {e}", path.display()))?;
                anyhow::ensure!(
                    self.crowdsec_sources.iter().all(|s| s.name != source.name),
                    "config `{}`: sources.crowdsec `{}` is defined twice",
                    path.display(),
                    source.name
                );
                source.api_key_file = source.api_key_file.map(relative);
                self.crowdsec_sources.push(source);
            }
        }
        if let Some(edl) = file.edl {
            if let Some(f) = edl.token_file {
                self.edl_access.token_file = Some(relative(f));
            }
            if let Some(u) = edl.username {
                self.edl_access.username = Some(u);
            }
            if let Some(f) = edl.password_file {
                self.edl_access.password_file = Some(relative(f));
            }
            anyhow::ensure!(
                self.edl_access.username.is_some() == self.edl_access.password_file.is_some(),
                "config `{}`: edl.username and edl.password_file go together",
                path.display()
            );
            if let Some(lists) = edl.lists {
                self.edl_lists = lists;
            }
            if let Some(v4) = edl.min_prefix_v4 {
                anyhow::ensure!(
                    v4 <= 32,
                    "config `{}`: edl.min_prefix_v4 must be at most 32",
                    path.display()
                );
                self.edl_min_prefix_v4 = v4;
            }
            if let Some(v6) = edl.min_prefix_v6 {
                anyhow::ensure!(
                    v6 <= 128,
                    "config `{}`: edl.min_prefix_v6 must be at most 128",
                    path.display()
                );
                self.edl_min_prefix_v6 = v6;
            }
        }
        self.check()
            .map_err(|e| anyhow::anyhow!("config `{}`: {e}", path.display()))?;
        Ok(self)
    }

    /// Checks the adapters' settings without building them: each one's own, and that no two
    /// share a name (`edl` is taken by the EDL adapter).
    pub fn check(&self) -> Result<(), AdaptersError> {
        let mut names = std::collections::BTreeSet::from(["edl"]);
        for a in &self.adapters {
            a.check()?;
            if !names.insert(a.name()) {
                return Err(AdaptersError::Twice(a.name().to_owned()));
            }
        }
        Ok(())
    }

    /// The list each action kind publishes to (`[edl.lists]`), by kind.
    pub fn lists(&self) -> BTreeMap<parapet_model::ActionKind, String> {
        self.edl_lists
            .iter()
            .filter_map(|(kind, list)| Some((kind.parse().ok()?, list.clone())))
            .collect()
    }

    /// Every adapter instance's name and the action kinds it performs, the EDL's included.
    pub fn adapter_kinds(&self) -> BTreeMap<String, Vec<parapet_model::ActionKind>> {
        let mut out: BTreeMap<String, Vec<parapet_model::ActionKind>> = self
            .adapters
            .iter()
            .map(|a| (a.name().to_owned(), a.kinds()))
            .collect();
        out.insert(
            "edl".into(),
            self.edl_lists
                .keys()
                .filter_map(|k| k.parse().ok())
                .collect(),
        );
        out
    }
}

/// What is wrong with the configured adapters.
#[derive(Debug, thiserror::Error)]
pub enum AdaptersError {
    #[error(transparent)]
    Adapter(#[from] parapet_actions::settings::ConfigError),
    #[error("two adapters are named `{0}`")]
    Twice(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_defaults_and_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parapet.toml");
        std::fs::write(
            &path,
            "grpc_addr = \"127.0.0.1:6000\"\ndata_dir = \"data\"\nadapter_timeout = \"5s\"\n[edl.lists]\nblock_ip = \"deny\"\n",
        )
        .unwrap();
        let config = Config::default().merge_file(&path).unwrap();
        assert_eq!(config.grpc_addr.port(), 6000);
        assert_eq!(config.http_addr.port(), 8080);
        assert_eq!(config.data_dir, dir.path().join("data"));
        assert_eq!(config.adapter_timeout, Duration::from_secs(5));
        assert_eq!(config.edl_lists.len(), 1);
    }

    /// The README's configuration examples are real: each parses as `serve` reads it.
    #[test]
    fn the_readme_config_examples_parse() {
        let readme = include_str!("../../README.md");
        let dir = tempfile::tempdir().unwrap();
        let blocks: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .filter(|b| {
                ["[tls]", "[journal]", "[telemetry]", "grpc_addr", "[limits]"]
                    .iter()
                    .any(|k| b.contains(k))
            })
            .collect();
        assert!(blocks.len() >= 3, "{}", blocks.len());
        for block in blocks {
            let path = dir.path().join("parapet.toml");
            std::fs::write(&path, block).unwrap();
            let config = Config::default()
                .merge_file(&path)
                .unwrap_or_else(|e| panic!("{e}\n{block}"));
            if block.contains("[tls]") {
                assert!(config.tls.unwrap().client_ca.is_some());
                assert_eq!(config.auth.identities.len(), 4);
                assert!(
                    config
                        .auth
                        .identities
                        .iter()
                        .any(|i| i.max_tier == Some(parapet_policy::Tier::Approval))
                );
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parapet.toml");
        std::fs::write(&path, "grpc_adr = \"127.0.0.1:6000\"\n").unwrap();
        let err = Config::default().merge_file(&path).unwrap_err().to_string();
        assert!(err.contains("grpc_adr"), "{err}");
    }
}
