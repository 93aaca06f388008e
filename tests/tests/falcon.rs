//! CrowdStrike Falcon host containment against a local server speaking the Falcon API's
//! documented shapes: the conformance kit, tokens, rate limits, a host contained before Parapet,
//! and the loop over gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{sync::Arc, time::Duration};

use parapet_actions::{
    Adapter, BoxFuture, DynAdapter,
    config::AdapterConfig,
    conformance::{self, Subject, action},
    falcon::{Falcon, FalconConfig},
};
use parapet_model::Step;
use parapet_tests::{
    Parapet, black_hole, block,
    falcon::{CLIENT_ID, CLIENT_SECRET, FakeFalcon},
    step, v1 as pb,
};

fn aid(n: u32) -> String {
    format!("{:032x}", 0xfa1c0 + n)
}

fn config(fake: &FakeFalcon, secret_file: &std::path::Path) -> FalconConfig {
    FalconConfig {
        name: "falcon".into(),
        base_url: fake.base_url(),
        client_id: CLIENT_ID.into(),
        secret_file: Some(secret_file.into()),
        secret_env: None,
        kinds: vec!["isolate_host".parse().unwrap()],
        timeout: Duration::from_secs(5),
        retries: 2,
    }
}

fn host(device: &str) -> Step {
    conformance::step(
        "isolate_host",
        "host",
        "laptop-7",
        &[("falcon_aid", device)],
    )
}

struct Env {
    fake: FakeFalcon,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Self {
        let fake = FakeFalcon::start().await;
        for n in 0..8 {
            fake.add_device(&aid(n), "normal");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), CLIENT_SECRET).unwrap();
        Self { fake, dir }
    }

    fn config(&self) -> FalconConfig {
        config(&self.fake, &self.dir.path().join("secret"))
    }

    fn falcon(&self) -> Falcon {
        Falcon::open(self.config(), &self.dir.path().join("state")).unwrap()
    }
}

impl Subject for Env {
    fn open(&self) -> BoxFuture<'_, Arc<dyn DynAdapter>> {
        let f = self.falcon();
        Box::pin(async move { Arc::new(f) as Arc<dyn DynAdapter> })
    }

    fn step(&self, n: u32) -> Step {
        host(&aid(n))
    }

    fn in_force(&self, n: u32) -> BoxFuture<'_, bool> {
        let contained = self.fake.status(&aid(n)).as_deref() == Some("contained");
        Box::pin(async move { contained })
    }
}

#[tokio::test]
async fn the_falcon_adapter_passes_the_conformance_kit() {
    let env = Env::new().await;
    conformance::run(&env).await;
    // Each host was contained and lifted once, whatever the repeats and sharing.
    let actions = env.fake.state.actions.lock().clone();
    let host4: Vec<_> = actions.iter().filter(|a| a.ends_with(&aid(4))).collect();
    assert_eq!(host4.len(), 2, "{host4:?}");

    let f = env.falcon();
    let message = conformance::permanent(&f, &host(&aid(99))).await;
    assert!(message.contains("Device not found"), "{message}");
    let err = Adapter::validate(&f, &host("laptop-7")).unwrap_err();
    assert_eq!(err.field, "target.attributes.falcon_aid");
}

#[tokio::test]
async fn a_host_contained_before_parapet_stays_contained_after_its_rollback() {
    let env = Env::new().await;
    env.fake.add_device(&aid(7), "contained");
    let f = env.falcon();
    let target = host(&aid(7));
    let handle = Adapter::execute(&f, action(&target)).await.unwrap();
    Adapter::rollback(&f, handle).await.unwrap();
    assert_eq!(env.fake.status(&aid(7)).as_deref(), Some("contained"));
    assert!(
        env.fake.state.actions.lock().is_empty(),
        "Parapet acted on a host it did not contain"
    );
}

#[tokio::test]
async fn an_expired_token_is_fetched_again_and_rate_limits_are_waited_out() {
    let env = Env::new().await;
    let f = env.falcon();
    let first = host(&aid(1));
    Adapter::execute(&f, action(&first)).await.unwrap();
    assert_eq!(
        *env.fake.state.tokens_issued.lock(),
        1,
        "the token is kept between calls"
    );

    env.fake.revoke_tokens();
    *env.fake.state.rate_limited.lock() = 1;
    let second = host(&aid(2));
    Adapter::execute(&f, action(&second)).await.unwrap();
    assert_eq!(*env.fake.state.tokens_issued.lock(), 2);
    assert_eq!(env.fake.status(&aid(2)).as_deref(), Some("contained"));

    *env.fake.state.rate_limited.lock() = 10;
    let message = conformance::transient(&f, &host(&aid(3))).await;
    assert!(message.contains("429"), "{message}");
}

#[tokio::test]
async fn an_api_that_never_answers_fails_within_the_timeout() {
    let env = Env::new().await;
    let mut c = env.config();
    c.base_url = format!("http://{}", black_hole().await);
    c.timeout = Duration::from_secs(1);
    let f = Falcon::open(c.clone(), env.dir.path()).unwrap();
    let message = conformance::bounded(&f, &host(&aid(1)), c.timeout).await;
    assert!(message.contains("no answer within 1s"), "{message}");
}

#[tokio::test]
async fn wrong_credentials_fail_permanently_without_the_secret_in_the_error() {
    let env = Env::new().await;
    std::fs::write(env.dir.path().join("secret"), "not-the-secret").unwrap();
    let f = env.falcon();
    let message = conformance::permanent(&f, &host(&aid(1))).await;
    assert!(message.contains("403"), "{message}");
    assert!(!message.contains("not-the-secret"), "{message}");

    let mut c = env.config();
    c.secret_file = None;
    let err = Falcon::open(c, env.dir.path()).err().unwrap();
    assert!(err.message.contains("secret_file"), "{err}");
}

const POLICY: &str = r#"
[[detections]]
id = "edr.c2_beacon"

[detections.actions]
isolate_host = "auto"

[routes]
isolate_host = "falcon"
"#;

#[tokio::test]
async fn an_isolation_over_grpc_contains_the_host_in_falcon_until_rollback() {
    let env = Env::new().await;
    let adapters = vec![AdapterConfig::Falcon(env.config())];
    let parapet = Parapet::start_with_adapters(POLICY, adapters)
        .await
        .unwrap();
    let req = pb::SubmitIntentRequest {
        steps: vec![step(
            "isolate_host",
            "host",
            "laptop-7",
            &[("falcon_aid", &aid(5))],
        )],
        ..block("k1", "unused")
    };
    let resp = parapet.submit(req).await.unwrap();
    let intent = resp.intent.unwrap();
    assert_eq!(intent.state, pb::IntentState::Active as i32);
    assert_eq!(env.fake.status(&aid(5)).as_deref(), Some("contained"));
    let rolled = parapet.rollback(&intent.intent_id, "false positive").await;
    assert_eq!(rolled.state, pb::IntentState::RolledBack as i32);
    assert_eq!(env.fake.status(&aid(5)).as_deref(), Some("normal"));

    // A host without a device id is refused at submission, naming the field.
    let req = pb::SubmitIntentRequest {
        steps: vec![step("isolate_host", "host", "laptop-8", &[])],
        ..block("k2", "unused")
    };
    let status = parapet.submit(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("steps[0].target.id:"),
        "{}",
        status.message()
    );
}
