use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::atomic::{AtomicU32, Ordering},
};

use axum::{
    Json, Router,
    extract::{Path as UrlPath, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::post,
};
use serde_json::json;

use super::*;
use crate::{
    BoxFuture, DynAdapter,
    conformance::{self, action},
};

const SECRET: &str = "s3cret-token-value";

/// A small account API: suspend and unsuspend users, behind a bearer token. `busy` answers
/// 429 that many times first; user `slow` never answers; user `ghost` does not exist.
#[derive(Default)]
struct Api {
    suspended: parking_lot::Mutex<BTreeSet<String>>,
    calls: AtomicU32,
    busy: AtomicU32,
    paths: parking_lot::Mutex<Vec<String>>,
}

async fn suspend(
    State(api): State<Arc<Api>>,
    UrlPath((user, verb)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> impl IntoResponse {
    api.calls.fetch_add(1, Ordering::SeqCst);
    api.paths.lock().push(format!("{verb} {user}"));
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {SECRET}"))
    {
        return (
            StatusCode::UNAUTHORIZED,
            HeaderMap::new(),
            Json(json!({"error": "bad token"})),
        );
    }
    if api.busy.load(Ordering::SeqCst) > 0 {
        api.busy.fetch_sub(1, Ordering::SeqCst);
        let mut h = HeaderMap::new();
        h.insert("retry-after", "1".parse().unwrap());
        return (
            StatusCode::TOO_MANY_REQUESTS,
            h,
            Json(json!({"error": "slow down"})),
        );
    }
    let echoed = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    match user.as_str() {
        // an API that repeats what it was sent, in the forms such APIs do
        "echo" => {
            use base64::Engine as _;
            return (
                StatusCode::OK,
                HeaderMap::new(),
                Json(json!({
                    "ticket": "T-echo",
                    "request": {"headers": {"AUTHORIZATION": echoed.to_uppercase()}},
                    "debug": base64::engine::general_purpose::STANDARD.encode(format!("x-{echoed}")),
                    "trace": format!("{}{echoed}", "·".repeat(300)),
                })),
            );
        }
        "echo-error" => {
            return (
                StatusCode::BAD_REQUEST,
                HeaderMap::new(),
                Json(json!({
                    "error": format!("{} rejected {}", "x".repeat(280), percent_encoding::utf8_percent_encode(&echoed, percent_encoding::NON_ALPHANUMERIC)),
                })),
            );
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        "ghost" => {
            return (
                StatusCode::NOT_FOUND,
                HeaderMap::new(),
                Json(json!({"error": "no such user"})),
            );
        }
        _ => {}
    }
    let ticket = format!("T-{}", api.calls.load(Ordering::SeqCst));
    match verb.as_str() {
        "suspend" => {
            let reason = body.map(|b| b["reason"].clone()).unwrap_or_default();
            assert!(reason.is_string(), "the body carries the reason: {reason}");
            api.suspended.lock().insert(user);
        }
        _ => {
            api.suspended.lock().remove(&user);
        }
    }
    (
        StatusCode::OK,
        HeaderMap::new(),
        Json(json!({"ticket": ticket})),
    )
}

async fn serve(api: Arc<Api>) -> SocketAddr {
    let app = Router::new()
        .route("/users/{user}/{verb}", post(suspend))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn config(addr: SocketAddr, secret: &Path) -> WebhookConfig {
    let text = format!(
        r#"
name = "accounts"
kinds = ["suspend_user"]
secret_file = "{secret}"
timeout = "3s"
retries = 2
[execute]
url = "http://{addr}/users/{{{{target.id}}}}/suspend"
headers = {{ Authorization = "Bearer {{{{secret}}}}" }}
body = {{ reason = "parapet intent {{{{intent_id}}}}", site = "{{{{target.attributes.site}}}}" }}
[rollback]
url = "http://{addr}/users/{{{{target.id}}}}/unsuspend?ticket={{{{response.ticket}}}}"
headers = {{ Authorization = "Bearer {{{{secret}}}}" }}
"#,
        secret = secret.display()
    );
    toml::from_str(&text).unwrap()
}

fn step(user: &str) -> Step {
    conformance::step("suspend_user", "user", user, &[("site", "fra1")])
}

struct Subject {
    api: Arc<Api>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Subject {
    async fn new() -> Self {
        let api = Arc::new(Api::default());
        let addr = serve(api.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{SECRET}\n")).unwrap();
        Self { api, addr, dir }
    }

    fn webhook(&self) -> Webhook {
        Webhook::open(
            config(self.addr, &self.dir.path().join("token")),
            &self.dir.path().join("state"),
        )
        .unwrap()
    }
}

impl conformance::Subject for Subject {
    fn open(&self) -> BoxFuture<'_, Arc<dyn DynAdapter>> {
        let w = self.webhook();
        Box::pin(async move { Arc::new(w) as Arc<dyn DynAdapter> })
    }

    fn step(&self, n: u32) -> Step {
        step(&format!("user{n}"))
    }

    fn in_force(&self, n: u32) -> BoxFuture<'_, bool> {
        let on = self.api.suspended.lock().contains(&format!("user{n}"));
        Box::pin(async move { on })
    }
}

#[tokio::test]
async fn the_webhook_adapter_passes_the_conformance_kit() {
    let s = Subject::new().await;
    conformance::run(&s).await;
    // Rule 1 and 4: repeats and a shared target sent nothing twice.
    let paths = s.api.paths.lock().clone();
    let user0: Vec<_> = paths.iter().filter(|p| p.ends_with(" user0")).collect();
    assert_eq!(user0, ["suspend user0", "unsuspend user0"]);
    let user4: Vec<_> = paths.iter().filter(|p| p.ends_with(" user4")).collect();
    assert_eq!(user4, ["suspend user4", "unsuspend user4"]);

    let w = s.webhook();
    let message = conformance::permanent(&w, &step("ghost")).await;
    assert!(
        message.contains("404 Not Found: {\"error\":\"no such user\"}"),
        "{message}"
    );
    let message = conformance::bounded(&w, &step("slow"), w.config.timeout).await;
    assert!(message.contains("no answer within 3s"), "{message}");
}

#[tokio::test]
async fn busy_answers_are_retried_after_their_retry_after_and_the_rollback_uses_the_answer() {
    let s = Subject::new().await;
    s.api.busy.store(2, Ordering::SeqCst);
    let w = s.webhook();
    let target = step("alice");
    let handle = Adapter::execute(&w, action(&target)).await.unwrap();
    assert_eq!(
        s.api.calls.load(Ordering::SeqCst),
        3,
        "two 429s, then success"
    );
    assert_eq!(handle.response["ticket"], "T-3");
    let encoded = serde_json::to_string(&handle).unwrap();
    assert!(
        !encoded.contains(SECRET),
        "the secret is in the handle: {encoded}"
    );

    Adapter::rollback(&w, handle).await.unwrap();
    assert!(s.api.suspended.lock().is_empty());

    // Too busy for the retries: transient, and the secret is in no error.
    s.api.busy.store(10, Ordering::SeqCst);
    let message = conformance::transient(&w, &step("bob")).await;
    assert!(
        message.contains("429 Too Many Requests after 3 attempts"),
        "{message}"
    );
    assert!(!message.contains(SECRET));
}

/// Whether `text` holds the secret in any form an echo could take.
fn leaks(text: &str) -> bool {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let forms = [
        SECRET.to_owned(),
        SECRET.to_uppercase(),
        percent_encoding::utf8_percent_encode(SECRET, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
        // a stretch of the base64 of `x-Bearer <secret>` that only the secret makes
        b64.encode(format!("x-Bearer {SECRET}"))[16..28].to_owned(),
        SECRET[..SECRET.len() / 2].to_owned(),
    ];
    let folded = text.to_lowercase();
    forms
        .iter()
        .any(|f| text.contains(f.as_str()) || folded.contains(&f.to_lowercase()))
}

#[tokio::test]
async fn an_answer_that_echoes_the_credential_is_kept_without_it() {
    let s = Subject::new().await;
    let w = s.webhook();
    let handle = Adapter::execute(&w, action(&step("echo"))).await.unwrap();
    let kept = serde_json::to_string(&handle).unwrap();
    assert!(!leaks(&kept), "the handle keeps the secret: {kept}");
    assert_eq!(handle.response["ticket"], "T-echo");
    assert!(kept.contains(crate::secret::REDACTED), "{kept}");
    // an error whose echo starts past the cut of an excerpt is redacted before the cut
    let message = conformance::permanent(&w, &step("echo-error")).await;
    assert!(!leaks(&message), "{message}");
    assert!(message.contains("400 Bad Request"), "{message}");
}

#[tokio::test]
async fn a_dead_endpoint_is_transient_and_a_step_missing_a_value_is_refused_at_submission() {
    let s = Subject::new().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let w = Webhook::open(config(dead, &s.dir.path().join("token")), s.dir.path()).unwrap();
    let message = conformance::transient(&w, &step("alice")).await;
    assert!(message.contains("cannot connect"), "{message}");

    let no_site = conformance::step("suspend_user", "user", "alice", &[]);
    let err = Adapter::validate(&w, &no_site).unwrap_err();
    assert_eq!(err.field, "target.attributes.site");
}

#[test]
fn templates_are_checked_when_the_config_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut c = config(addr, &token);
    c.execute.url = "http://h/{{target.nickname}}".into();
    assert!(
        c.check()
            .unwrap_err()
            .to_string()
            .contains("unknown placeholder `{{target.nickname}}`")
    );
    let mut c = config(addr, &token);
    c.execute.url = "http://h/{{secret}}".into();
    assert!(
        c.check()
            .unwrap_err()
            .to_string()
            .contains("only be used in headers")
    );
    let mut c = config(addr, &token);
    c.execute.url = "http://h/{{response.id}}".into();
    assert!(
        c.check()
            .unwrap_err()
            .to_string()
            .contains("only be used in rollback")
    );
    let mut c = config(addr, &token);
    c.secret_file = None;
    assert!(
        c.check()
            .unwrap_err()
            .to_string()
            .contains("neither `secret_file` nor `secret_env`")
    );
    let c = config(addr, &dir.path().join("missing"));
    let err = Webhook::open(c, dir.path()).err().unwrap();
    assert!(err.message.contains("secret_file"), "{err}");
    // The config's own debug form names where the secret is, never what it is.
    assert!(!format!("{:?}", config(addr, &token)).contains(SECRET));
}

#[test]
fn values_are_encoded_for_where_they_land() {
    let vars = |id: &str| Vars {
        plain: [("target.id".to_owned(), id.to_owned())].into(),
        ..Default::default()
    };
    assert_eq!(
        template::fill("http://h/u/{{target.id}}", &vars("c=d e\"f&ü"), Place::Url).unwrap(),
        "http://h/u/c%3Dd%20e%22f%26%C3%BC"
    );
    let body =
        template::fill_json(&json!({"user": "{{ target.id }}"}), &vars("a/b?c=d e\"f")).unwrap();
    assert_eq!(body.to_string(), r#"{"user":"a/b?c=d e\"f"}"#);
}

#[test]
fn a_value_in_the_url_stays_one_path_segment() {
    for id in [
        ".", "..", "a/b", "../admin", "a?b", "a#b", "a%2fb", "a%2Fb", "..%2f", "a\\b", "",
    ] {
        let filled = template::fill(
            "http://h/u/{{target.id}}/suspend",
            &Vars {
                plain: [("target.id".to_owned(), id.to_owned())].into(),
                ..Default::default()
            },
            Place::Url,
        );
        assert!(
            matches!(filled, Err(template::Unfilled::NotOneSegment(ref name, _)) if name == "target.id"),
            "{id:?}: {filled:?}"
        );
    }
    // a dot inside a name, or a percent sign that escapes nothing, is just data
    for id in ["jane.doe", "...", "100%", "a.b.c"] {
        assert!(
            template::fill(
                "http://h/u/{{target.id}}",
                &Vars {
                    plain: [("target.id".to_owned(), id.to_owned())].into(),
                    ..Default::default()
                },
                Place::Url
            )
            .is_ok(),
            "{id}"
        );
    }
}
