//! Calling HTTP APIs for the adapters that do (webhook, EDR): one deadline for all attempts,
//! retries with backoff on 429 and 5xx honouring `Retry-After`, and errors that say whether a
//! retry can help. Nothing of the request (headers with credentials) goes into an error, and
//! an answer is redacted of the caller's [`Secrets`] as it is read, before anything keeps or
//! cuts it.

use std::time::{Duration, SystemTime};

use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::{Error, Result, secret::Secrets};

/// Longest pause this side of a `Retry-After`; a longer one ends the attempts.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts after the first.
    pub retries: u32,
    /// All attempts together end by then.
    pub deadline: Duration,
}

/// A client for adapters: rustls, no proxy from the environment, no redirects (a redirect of a
/// request with credentials is not followed blindly).
pub fn client() -> Result<reqwest::Client> {
    // One TLS provider for the whole process (the server installs the same); set already is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| Error::permanent(format!("cannot build an HTTP client: {e}")))
}

/// What came back: the status and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

/// Sends the request `make` builds, again while the answer is 429, 5xx or no answer, until
/// `retry` runs out. A 2xx is the answer; any other status is a permanent error with the
/// body's first bytes.
pub async fn send(
    what: &str,
    retry: Retry,
    secrets: &Secrets,
    make: impl FnMut() -> reqwest::RequestBuilder,
) -> Result<Answer> {
    let answer = call(what, retry, secrets, make).await?;
    if answer.status.is_success() {
        Ok(answer)
    } else {
        Err(refused(what, &answer))
    }
}

/// The permanent error of an answer that is not a success.
pub fn refused(what: &str, answer: &Answer) -> Error {
    Error::permanent(format!(
        "{what}: {}: {}",
        answer.status,
        excerpt(&answer.text)
    ))
}

/// As [`send`], but any answer that is not retried is returned, for callers that handle some
/// statuses themselves (a 401 that calls for a new token).
pub async fn call(
    what: &str,
    retry: Retry,
    secrets: &Secrets,
    mut make: impl FnMut() -> reqwest::RequestBuilder,
) -> Result<Answer> {
    let attempts = async {
        let mut attempt = 0;
        loop {
            let result = make().send().await;
            let pause = match result {
                Ok(resp) if !retryable(resp.status()) => return answer(resp, secrets).await,
                Ok(resp) => {
                    let pause = retry_after(&resp).unwrap_or_else(|| backoff(attempt));
                    let status = resp.status();
                    if attempt >= retry.retries || pause > MAX_PAUSE {
                        let a = answer(resp, secrets).await?;
                        return Err(Error::transient(format!(
                            "{what}: {status} after {} attempts: {}",
                            attempt + 1,
                            excerpt(&a.text)
                        )));
                    }
                    pause
                }
                Err(e) => {
                    if attempt >= retry.retries {
                        let why = secrets.redact(&without_url(&e));
                        return Err(Error::transient(format!("{what}: {why}")));
                    }
                    backoff(attempt)
                }
            };
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    };
    tokio::time::timeout(retry.deadline, attempts)
        .await
        .unwrap_or_else(|_| {
            Err(Error::transient(format!(
                "{what}: no answer within {}",
                humantime::format_duration(retry.deadline)
            )))
        })
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(8)))
}

/// `Retry-After` in seconds or as an HTTP date.
fn retry_after(resp: &Response) -> Option<Duration> {
    let value = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Largest answer read; a larger one is cut here (after which its JSON does not parse).
const MAX_ANSWER: usize = 1 << 20;

/// Reads an answer, redacted of `secrets` in its text and in every string of its JSON.
async fn answer(mut resp: Response, secrets: &Secrets) -> Result<Answer> {
    let status = resp.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        Error::transient(format!(
            "reading the answer: {}",
            secrets.redact(&without_url(&e))
        ))
    })? {
        let room = MAX_ANSWER.saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    // a JSON answer is kept as parsed and written again, so an escape (`\u0053...`) cannot
    // hide a secret from the redaction
    let (body, text) = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => {
            let v = secrets.redact_json(&v);
            let text = v.to_string();
            (v, text)
        }
        Err(_) => (
            Value::Null,
            secrets.redact(&String::from_utf8_lossy(&bytes)),
        ),
    };
    Ok(Answer { status, body, text })
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// reqwest puts the URL in its errors; URLs may carry what was templated into them.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}
